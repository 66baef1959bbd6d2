"""``Scoped`` invariants: inside a block they run only when the block wrote a key they read;
outside a block, and in a block that activates an upgrade, they always run."""

from __future__ import annotations

import pytest

from gridledger.errors import InvariantViolation
from gridledger.ledger import codec
from gridledger.ledger.app import Application
from gridledger.ledger.execute import run_invariants
from gridledger.ledger.module import Module, Scoped
from gridledger.ledger.modules.disputes import keeper as disputes
from gridledger.ledger.modules.surveillance import keeper as surveillance
from gridledger.ledger.state import State
from tests.conftest import make_chain


def _counting(reads: tuple[bytes, ...]) -> tuple[Scoped, list[int]]:
    calls: list[int] = []
    return Scoped(reads, lambda state: calls.append(len(state))), calls


def test_a_scoped_invariant_runs_only_after_a_write_it_reads() -> None:
    inv, calls = _counting((b"a/", b"b/"))
    modules = [Module(name="t", version=1, invariants=(inv,))]
    s = State({b"a/1": b"x"})
    run_invariants(s, modules)          # outside a block: runs
    s.begin()
    s.set(b"c/1", b"y")
    run_invariants(s, modules)          # wrote nothing it reads: skipped
    assert len(calls) == 1
    s.set(b"b/1", b"z")
    run_invariants(s, modules)          # wrote b/1: runs
    run_invariants(s, modules, scoped=False)   # an upgrade's block: always runs
    assert len(calls) == 3
    s.rollback()
    s.begin()
    s.delete(b"a/1")                    # a deletion is a write too
    run_invariants(s, modules)
    assert len(calls) == 4


@pytest.mark.parametrize("key, bad", [
    (surveillance.SUBJECT + bytes(40), b"\x01"),   # an index entry without its finding
    (surveillance.COUNT, 3),                          # a count without findings
    (surveillance.WATCH + bytes(8), {"entries": [{"owner": bytes(32), "side": "buy",
                                                   "energy_wh": 5, "peak_wh": 1,
                                                   "withdrawn_wh": 0}],
                                     "peak_buy_wh": 1, "peak_sell_wh": 1}),
    (disputes.CLAIM + bytes(12) + b"x", {"claimant": bytes(32), "respondent": bytes(32),
                                         "outcome": "maybe", "evidence": {
                                             "energy_wh": 1, "delivered_wh": 1, "received_wh": 1,
                                             "seller_export_wh": None, "buyer_import_wh": None},
                                         "fee_micro": 0,
                                         "remedy_micro": 0, "decided_at": 0}),
])
def test_the_surveillance_and_disputes_invariants_catch_a_break_inside_a_block(key, bad) -> None:
    """Each scoped module invariant reads the prefix its break writes: a break made inside a
    block is caught there, as the full scan catches it."""
    app = Application(make_chain(4).genesis)
    state = app.state
    run_invariants(state, app.modules)
    state.begin()
    state.set(key, codec.encode(bad))
    with pytest.raises(InvariantViolation):
        run_invariants(state, app.modules)
    state.rollback()
    state.set(key, codec.encode(bad))   # and outside a block, by the full scan
    with pytest.raises(InvariantViolation):
        run_invariants(state, app.modules)
