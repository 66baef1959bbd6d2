"""One day with and without operating envelopes (the comparison the simulator reports).

The *naive* schedule is what prosumers do without a DSO signal: every connection point
injects its forecast net injection (PV exports its full surplus, every EV charges when it is
plugged in). The *enveloped* schedule clips each cp to its envelope for the slot. Both go
through ``verify_schedule`` (pandapower); the claim under test is that the naive day breaks
limits and the enveloped day never does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gridledger.errors import GridError
from gridledger.grid.envelopes import Envelope, EnvelopeConfig, compute_envelopes
from gridledger.grid.model import SLOTS_PER_DAY, GridModel
from gridledger.grid.powerflow import FlowReport, verify_schedule


def clip_to_envelopes(
    net_injection_wh_by_cp: Mapping[str, int], envelopes: Mapping[str, Envelope]
) -> dict[str, int]:
    """Each cp's net injection clipped into its envelope (cps without an envelope: error)."""
    missing = sorted(set(net_injection_wh_by_cp) - set(envelopes))
    if missing:
        raise GridError(f"no envelope for connection points {missing[:3]}")
    return {cp: envelopes[cp].clip(int(v)) for cp, v in net_injection_wh_by_cp.items()}


@dataclass(frozen=True)
class SlotComparison:
    slot: int
    naive: FlowReport
    enveloped: FlowReport
    clipped_wh: int
    """Energy (Wh, sum of |change|) removed from the naive schedule by the envelopes."""


@dataclass(frozen=True)
class DayComparison:
    """Naive vs enveloped schedules over one day."""

    network: str
    day: int
    slots: tuple[SlotComparison, ...]

    @property
    def naive_violation_slots(self) -> int:
        return sum(1 for s in self.slots if s.naive.violations)

    @property
    def enveloped_violation_slots(self) -> int:
        return sum(1 for s in self.slots if s.enveloped.violations)

    @property
    def naive_violations(self) -> int:
        return sum(len(s.naive.violations) for s in self.slots)

    @property
    def enveloped_violations(self) -> int:
        return sum(len(s.enveloped.violations) for s in self.slots)

    @property
    def clipped_wh(self) -> int:
        return sum(s.clipped_wh for s in self.slots)

    def summary(self) -> dict[str, float | int | str]:
        """Headline numbers (worst voltages and loadings of each schedule)."""
        return {
            "network": self.network,
            "day": self.day,
            "slots": len(self.slots),
            "naive_violation_slots": self.naive_violation_slots,
            "naive_violations": self.naive_violations,
            "naive_max_vm_pu": max(s.naive.max_vm_pu for s in self.slots),
            "naive_min_vm_pu": min(s.naive.min_vm_pu for s in self.slots),
            "naive_max_loading_pct": max(s.naive.max_loading_pct for s in self.slots),
            "enveloped_violation_slots": self.enveloped_violation_slots,
            "enveloped_violations": self.enveloped_violations,
            "enveloped_max_vm_pu": max(s.enveloped.max_vm_pu for s in self.slots),
            "enveloped_min_vm_pu": min(s.enveloped.min_vm_pu for s in self.slots),
            "enveloped_max_loading_pct": max(s.enveloped.max_loading_pct for s in self.slots),
            "clipped_wh": self.clipped_wh,
        }


def compare_day(
    model: GridModel,
    day: int,
    *,
    slots_of_day: Sequence[int] | None = None,
    config: EnvelopeConfig = EnvelopeConfig(),
) -> DayComparison:
    """Run the naive and the enveloped schedule of ``day`` through pandapower.

    ``slots_of_day`` restricts the comparison to some slots (0..95); default: all 96.
    """
    offs = range(SLOTS_PER_DAY) if slots_of_day is None else slots_of_day
    out: list[SlotComparison] = []
    for off in offs:
        if not 0 <= off < SLOTS_PER_DAY:
            raise GridError(f"slot of day {off} outside 0..{SLOTS_PER_DAY - 1}")
        slot = model.check_slot(day * SLOTS_PER_DAY + off)
        naive = model.forecast_wh_by_cp(slot)
        env = compute_envelopes(model, slot, forecast_wh_by_cp=naive, config=config)
        clipped = clip_to_envelopes(naive, env)
        out.append(
            SlotComparison(
                slot=slot,
                naive=verify_schedule(model, slot, naive, limits=config.limits),
                enveloped=verify_schedule(model, slot, clipped, limits=config.limits),
                clipped_wh=sum(abs(naive[cp] - clipped[cp]) for cp in naive),
            )
        )
    return DayComparison(network=model.name, day=day, slots=tuple(out))
