"""Single point of failure (docs/threat-model.md row 7): a validator is killed mid-slot and restarts
some slots later.

The crash comes between a slot's order block and its clearing block (block B), so the slot
clears and later settles without that validator. It restarts ``DOWN_SLOTS`` slots later from
its own SQLite store and catches up from its peers' certified blocks. Measured from the
network: blocks certified without its vote (the outage the quorum absorbed), slots cleared
and settled while it was down, and its root against the others' after restart. (The DSO's
nodes are a k-of-n committee; stopping one of them is the ``dso-crash`` scenario.)

One fault at a time: with n = 3f + 1 validators a second faulty validator halts the chain by
design, so the outage is planned clear of every slot ``byzantine-validator`` is faulty in (its
windows scale with the run: in a run of a few slots they would otherwise meet). A run too
short to keep the two apart leaves the crash out, saying why.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

from gridledger.errors import NotApplicable
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.attack_base import Attack
from gridledger.sim.attacks.network import ByzantineValidator
from gridledger.sim.clock import SLOT_S, T_CLEAR, RunClock, step_slot


def faulty_slots(clock: RunClock, attacks: Collection[str]) -> frozenset[int]:
    """The run's slots in which ``byzantine-validator`` makes a validator faulty (empty when
    the run has no such scenario)."""
    if ByzantineValidator.name not in attacks:
        return frozenset()
    return frozenset(s for s in clock.trading_slots()
                     if any(clock.in_window(s, *w) for w, _ in ByzantineValidator.windows))


def crash_slot(clock: RunClock, window: tuple[float, float], busy: Collection[int]) -> int | None:
    """The first trading slot in ``window`` at whose block B a validator may be crashed: that
    slot and the next (it is down for at least one slot) are free of ``busy`` (slots another
    validator is faulty in). None when the run has no such slot."""
    return next((s for s in clock.trading_slots()
                 if clock.in_window(s, *window) and s not in busy and s + 1 not in busy), None)


class Crash(Attack):
    name: ClassVar[str] = "crash"
    threat: ClassVar[str] = "7 single point of failure"
    defence: ClassVar[str] = (
        "BFT quorum (2f+1 of n votes): blocks are certified without the crashed validator; "
        "restarted, it replays its own store and catches up from peers' certified blocks "
        "(each verified and re-executed)")
    window = (0.47, 0.55)    # clear of the byzantine-validator windows (one fault at a time)
    BACK_BY = 0.58           # back up before byzantine-validator's next window (0.60)
    DOWN_SLOTS = 4
    """Slots it stays down (fewer in a short run: it is back by ``BACK_BY`` of the run)."""

    def setup(self) -> None:
        n = len(self.eng.net.validators)
        self.victim = n - 2 if n >= 4 else None   # not the entry (0), not byzantine's (n-1)
        clock = self.eng.clock
        self.busy = faulty_slots(clock, self.eng.sc.attacks)
        self.plan = crash_slot(clock, self.window, self.busy)
        if self.victim is not None and self.plan is None:
            lo, hi = (clock.label(s) for s in (clock.first, clock.first + clock.slots - 1))
            raise NotApplicable(
                f"a run of {clock.slots} slots ({lo} to {hi}) has no slot in the crash window "
                "clear of byzantine-validator's faulty slots (two faulty validators of four "
                "halt the chain by design: n >= 3f + 1 tolerates one)")
        self.crashed_slot: int | None = None
        self.crash_height = 0
        self.restarted_slot: int | None = None
        self.caught_up = 0
        self.blocks_without = 0
        self.cleared: list[int] = []
        self.settled: list[int] = []

    def before_tick(self, time_s: int) -> None:
        eng, v = self.eng, self.victim
        if v is None:
            return
        slot = step_slot(time_s)
        net = eng.net
        if self.crashed_slot is not None and self.restarted_slot is None \
                and (slot >= self.crashed_slot + self.DOWN_SLOTS
                     or not eng.in_window(slot, 0.0, self.BACK_BY)
                     or slot in self.busy or slot + 1 in self.busy):
            # back after DOWN_SLOTS, and in any case a slot before another validator turns
            # faulty (two faults of four would halt the chain, by design)
            net.restart(v)
            self.caught_up = net.validators[v].height - self.crash_height
            self.restarted_slot = slot
        elif self.crashed_slot is None and time_s == slot * SLOT_S + T_CLEAR \
                and slot == self.plan:
            # at block B (the slot's clearing), after its orders are in
            self.crash_height = net.validators[v].height
            net.crash(v)
            self.crashed_slot = slot

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        if self.crashed_slot is None or self.restarted_slot is not None or self.victim is None:
            return
        if self.victim not in dict(fb.cert.votes):
            self.blocks_without += 1
        self.cleared += [e["slot"] for e in events if e["type"] == "slot_cleared"]
        self.settled += [e["slot"] for e in events if e["type"] == "slot_settled"]

    def result(self) -> dict[str, Any]:
        eng = self.eng
        injected = 1 if self.crashed_slot is not None else 0
        down = (range(self.crashed_slot, self.restarted_slot)
                if self.crashed_slot is not None and self.restarted_slot else range(0))
        lost = [s for s in down if s in eng.trading_slots() and s not in self.cleared]
        # the final roots of every running validator (the restarted one among them)
        agree = eng.validators_agree and self.restarted_slot is not None
        # a run too short to reach the window crashes nothing, and so loses nothing
        ok = injected == 0 or (self.blocks_without > 0 and not lost and agree)
        return self.record(injected, self.blocks_without, ok, len(lost), loss_unit="slots",
                           victim=self.victim, crashed_at=eng.label(self.crashed_slot)
                           if self.crashed_slot is not None else None,
                           down_slots=len(down), blocks_certified_without_it=self.blocks_without,
                           slots_cleared_while_down=len(self.cleared),
                           slots_settled_while_down=len(self.settled),
                           blocks_caught_up=self.caught_up, roots_agree=agree,
                           note="loss = trading slots that did not clear while the "
                                "validator was down")
