"""Metering handlers: typed message -> keeper calls + events."""

from __future__ import annotations

from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.metering import keeper
from gridledger.ledger.modules.metering.errors import (
    FlagWindow,
    NotAMeter,
    OneFlagPerSlot,
    UnknownCp,
)
from gridledger.ledger.modules.metering.expected import Firmware, Registry, Reputation
from gridledger.ledger.modules.metering.types import Flag, FlagReading, MeterReading, Reading, reading_window
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State


class Handlers:
    """Metering's message handlers; ``registry``, ``reputation`` and ``firmware`` wired by
    the catalog."""

    def __init__(self, registry: Registry, reputation: Reputation, firmware: Firmware) -> None:
        self.registry = registry
        self.reputation = reputation
        self.firmware = firmware

    def reading(self, state: State, ctx: TxContext, msg: MeterReading) -> None:
        """``metering/reading`` signed by a meter key (or, for a pseudonym's stand-in cp, by
        the reading key its meter holds). Rules ``not-a-meter``, ``pseudonym-slot``
        (registry), ``reading-early``, ``reading-late``, ``one-reading-per-slot``.

        The envelope signature is the device signature: the sender is the meter identity
        registered for the cp by the DSO's attestation, so a reading cannot be forged by the
        household's trading key or anyone else. The attested firmware hash is checked
        against the firmware registry first: a reading from a quarantined meter is kept,
        marked ``quarantine``, and settles only on the DSO's estimate.
        """
        meter = self.registry.participant(state, ctx.sender)
        cp = meter.meter_of if meter is not None else None
        if not cp:
            raise NotAMeter("the sender is not bound to a connection point")
        # a pseudonym's stand-in cp reports only in the pseudonym's slots
        holder = self.registry.cp_holder(state, cp)
        if holder is not None:
            self.registry.require_in_slot(state, holder, msg.slot)
        quarantine = self.firmware.check_reading(state, ctx, cp, ctx.sender, msg.firmware)
        keeper.accept_reading(state, Reading(msg.slot, cp, msg.import_wh, msg.export_wh,
                                             msg.firmware, ctx.sender, quarantine),
                              ctx.block.slot_time)
        marked = {"quarantine": quarantine} if quarantine is not None else {}
        ctx.emit("reading", slot=msg.slot, cp=cp, import_wh=msg.import_wh,
                 export_wh=msg.export_wh, firmware=msg.firmware, **marked)

    def flag(self, state: State, ctx: TxContext, msg: FlagReading) -> None:
        """``metering/flag`` by the DSO. Rules ``unknown-cp``, ``flag-window``,
        ``one-flag-per-slot``.

        The DSO's bad-data detection (WLS state estimation, residual tests, protected
        measurements, feeder energy balance; ``gridledger.grid.fdi``) found that ``cp``'s
        reading for ``slot`` cannot be trusted. The flag carries the network's estimate of
        the true energy, which settlement and disputes then use instead of the meter
        (documented fallback), and the hash of the detection report as evidence. One flag
        per cp per slot, within the same window as readings, so settlement never runs on a
        half-flagged slot. The holder loses reputation (``missing_reading``), unless the
        reading came from a quarantined meter: then the flag is the estimate the firmware
        registry asks for, and the household did nothing wrong.
        """
        slot, cp = msg.slot, msg.cp
        holder = self.registry.cp_holder(state, cp)
        if holder is None:
            raise UnknownCp(f"no participant holds connection point {cp!r}")
        p = load_params(state)
        first, last = reading_window(slot, p.slot_seconds, p.settle_window_s)
        if not first <= ctx.block.slot_time < last:
            raise FlagWindow(f"flags for slot {slot} are accepted in [{first}, {last})")
        if keeper.flag_of(state, slot, cp) is not None:
            raise OneFlagPerSlot(f"cp {cp!r} slot {slot} is already flagged")
        keeper.record_flag(state, slot, cp, Flag(msg.import_wh, msg.export_wh, msg.evidence,
                                                 ctx.sender))
        raw = keeper.reading_of(state, slot, cp)
        quarantine = raw.quarantine if raw is not None else None
        marked = {"quarantine": quarantine} if quarantine is not None else {}
        ctx.emit("reading_flagged", slot=slot, cp=cp, holder=holder,
                 reported_import_wh=raw.import_wh if raw else None,
                 reported_export_wh=raw.export_wh if raw else None,
                 estimate_import_wh=msg.import_wh, estimate_export_wh=msg.export_wh,
                 evidence=msg.evidence, **marked)
        if quarantine is None:
            ctx.events.append(self.reputation.adjust(state, holder, "missing_reading", slot))
