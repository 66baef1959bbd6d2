"""Surveillance invariants (run after every block by every node and test)."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.module import Scoped
from gridledger.ledger.modules.surveillance import keeper
from gridledger.ledger.modules.surveillance.types import KINDS
from gridledger.ledger.state import State


def findings_indexed(state: State) -> None:
    """Invariant surveillance-findings: ids run 0..count-1; each finding has a known kind and
    sorted, distinct subjects, each indexed under the subject (and nothing else is)."""
    found = keeper.findings(state)
    if [f.id for f in found] != list(range(keeper.count(state))):
        raise InvariantViolation("surveillance-findings: ids are not 0..count-1")
    n = 0
    for f in found:
        if f.kind not in KINDS or not f.subjects or list(f.subjects) != sorted(set(f.subjects)):
            raise InvariantViolation(f"surveillance-findings: finding {f.id} malformed")
        n += len(f.subjects)
    if keeper.subject_index_size(state) != n:
        raise InvariantViolation("surveillance-findings: subject index differs from findings")


def watch_consistent(state: State) -> None:
    """Invariant surveillance-watch: every watched owner's visible volume is within its
    peak and its side's peak, and nothing is negative."""
    for slot in keeper.watched_slots(state):
        w = keeper.watch(state, slot)
        if w is None:
            continue
        for v in w.entries:
            side_peak = w.peak_buy_wh if v.side == "buy" else w.peak_sell_wh
            if not (0 <= v.energy_wh <= v.peak_wh <= side_peak and v.withdrawn_wh >= 0):
                raise InvariantViolation(f"surveillance-watch: slot {slot} entry out of range")


INVARIANTS = (Scoped((keeper.FINDING, keeper.SUBJECT, keeper.COUNT), findings_indexed),
              Scoped((keeper.WATCH,), watch_consistent))
"""Both read the module's own keys only (``Scoped``: skipped in a block that wrote none)."""
