"""The granular-certificate archive (issue 17, "RSS stays flat after day 1"): a closed hour's
records leave live state a market dispute window after its close, for one Merkle root in
``cert/arch/<hour>``; they stay provable (record -> archive root -> certified state root)
and readable through the views (the node's stored block events). Every block here passes
every invariant (``tests.conftest.apply``), ``archive-accounted`` included."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.errors import InvariantViolation
from gridledger.ledger.app import Application
from gridledger.ledger.modules.certificates import issuance, keeper
from gridledger.ledger.modules.certificates.archive import (
    RecordProof,
    archive_root,
    prove_record,
)
from gridledger.ledger.modules.certificates.invariants import archive_accounted
from gridledger.ledger.modules.certificates.types import Archive, Bundle
from gridledger.ledger.state import verify_membership
from tests.conftest import apply
from tests.ledger.modules.test_certificates import SLOT, cancel, mine, register, traded_slot
from tests.ledger.modules.world import SETTLE, World, make_world, t_settle

HOUR = SLOT // 4
DAY = 86_400
CLOSE = (HOUR + 1) * 3600 + SETTLE + 3600          # hour 2 closes (claim window 1 h)
ARCHIVE_AT = CLOSE + DAY                          # ... and is archived a dispute window later
RECORD_PREFIXES = (b"cert/s/", b"cert/i/", b"cert/b/", b"cert/sr/", b"cert/m/", b"cert/h/")


class ResultsHistory:
    """``History`` over a test world's block results (a node reads its store)."""

    def __init__(self, w: World) -> None:
        self.w = w

    def block_events(self, height: int) -> list[dict[str, Any]] | None:
        rs = self.w.results
        return list(rs[height - 1].block_events) if 0 < height <= len(rs) else None


def _world() -> World:
    w = make_world(4, consumers=(1,))
    w.ok([register(w, ["cp0", 8_000, 0, 0, 100])], 100)
    w.app.history = ResultsHistory(w)
    return w


def _live_records(app: Application) -> int:
    return sum(len(app.state.keys_with_prefix(p)) for p in RECORD_PREFIXES)


def _cancelled_hour(w: World) -> int:
    """Slot SLOT traded, user 1 cancels its 600 Wh; returns the bundle's start."""
    traded_slot(w)
    (start, _), = mine(w, 1)
    w.ok([cancel(w, 1, (SLOT, start, 600))], t_settle(SLOT) + 10)
    return start


def test_a_closed_hour_is_archived_a_dispute_window_after_its_close() -> None:
    w = _world()
    start = _cancelled_hour(w)
    w.ok([], CLOSE)
    before = {k: w.app.state.get(k) for p in RECORD_PREFIXES for k in w.app.state.keys_with_prefix(p)}
    views_before = {v: w.app.query(f"certificates/{v}")
                    for v in ("matching", "slots", "bundles", f"issuances/{SLOT}", f"hour/{HOUR}")}
    totals = w.app.query("certificates/totals")
    w.ok([], ARCHIVE_AT - 1)
    assert keeper.archive(w.app.state, HOUR) is None and _live_records(w.app) == len(before)
    w.ok([], ARCHIVE_AT)
    st = w.app.state
    assert _live_records(w.app) == 0            # every record of the hour left live state
    entry = keeper.archive(st, HOUR)
    assert entry is not None and entry.records == len(before)
    ev, = w.events("certificates_archived")
    pairs = [(bytes(k), bytes(v)) for k, v in ev["records"]]
    assert pairs == sorted(before.items()) and archive_root(pairs) == entry.root == ev["root"]
    assert (entry.issued_wh, entry.consumption_wh, entry.cancelled_wh, entry.expired_wh,
            entry.residual_wh) == (1_000, 800, 600, 400, 200)
    assert keeper.archive_totals(st).records == len(before)
    # the views show the same records, marked archived; totals unchanged
    assert w.app.query("certificates/totals") == totals
    b = w.app.query(f"certificates/bundle/{SLOT}:{start}")
    assert b["status"] == "cancelled" and b["owner"] == w.addr(1) and b["archived"] == HOUR
    for v, old in views_before.items():
        new = w.app.query(f"certificates/{v}")
        if isinstance(new, list):
            assert [{k: x for k, x in r.items() if k != "archived"} for r in new] == old, v
    hour = w.app.query(f"certificates/hour/{HOUR}")
    assert hour["archived"] and hour["closed"] == views_before[f"hour/{HOUR}"]["closed"]
    assert w.app.query("certificates/hours")["closed"][0]["residual_wh"] == 200
    # without a store to read from, an archived record is not shown (nothing invented)
    w.app.history = None
    assert w.app.query(f"certificates/bundle/{SLOT}:{start}") is None


def test_an_archived_record_is_proven_in_two_levels_and_a_tampered_one_refused() -> None:
    w = _world()
    start = _cancelled_hour(w)
    w.ok([], ARCHIVE_AT)
    key = keeper.bundle_key(SLOT, start)
    got = w.app.query(f"certificates/record_proof/{key.hex()}")
    assert got is not None
    rec = RecordProof.from_json(got["record"])
    # level 2: the archive entry is in the certified state
    entry_proof = w.app.query(f"proof/{got['entry_key']}")
    root = w.app.state.root()
    assert verify_membership(root, entry_proof) and entry_proof.key == keeper.archive_key(HOUR)
    entry = Archive.decode(entry_proof.value)
    # level 1: the record is under the entry's root
    assert rec.key == key and rec.verify(entry.root)
    assert Bundle.decode(rec.value).status == "cancelled"
    # tampered: another owner, another position, another key, another archive root
    forged = Bundle.decode(rec.value)
    forged = Bundle.from_obj({**forged.to_obj(), "owner": w.addr(2)})
    assert not RecordProof(rec.hour, rec.key, forged.encode(), rec.index, rec.size,
                           rec.path).verify(entry.root)
    assert not RecordProof(rec.hour, rec.key, rec.value, rec.index ^ 1, rec.size, rec.path).verify(entry.root)
    assert not RecordProof(rec.hour, keeper.bundle_key(SLOT, start + 1), rec.value, rec.index,
                           rec.size, rec.path).verify(entry.root)
    assert not rec.verify(bytes(32))
    # a live key has no archive proof; a key never issued has none either
    assert w.app.query(f"certificates/record_proof/{keeper.archive_key(HOUR).hex()}") is None
    assert w.app.query(f"certificates/record_proof/{keeper.bundle_key(SLOT, 999_999).hex()}") is None


def test_an_archived_bundle_is_refused_as_closed() -> None:
    w = _world()
    start = _cancelled_hour(w)
    w.ok([], ARCHIVE_AT)
    res = w.block([cancel(w, 0, (SLOT, start + 600, 1))], ARCHIVE_AT + 10)
    assert res.receipts[0].rule == "claim-window-closed"


def _days(archive: bool, monkeypatch: pytest.MonkeyPatch, days: int = 4) -> list[int]:
    """Live certificate records at the end of each day of a traded slot a day."""
    if not archive:
        monkeypatch.setattr(issuance, "archive_hour", lambda *a, **k: None)
    w = _world()
    out = []
    for d in range(days):
        slot = SLOT + 96 * d
        traded_slot(w, slot=slot)
        w.ok([], (d + 1) * DAY)
        out.append(_live_records(w.app))
    monkeypatch.undo()
    return out


def test_without_the_archive_the_live_records_grow_by_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """Removal test: with the archive a day's records leave live state a dispute window
    after their hour closed (by the next day's end), so the count stays at one day's;
    without it they add up day by day."""
    kept = _days(True, monkeypatch)
    grown = _days(False, monkeypatch)
    assert grown == [grown[0] * (d + 1) for d in range(4)]         # every day's, for good
    assert kept == [grown[0]] * 4 and grown[3] == 4 * kept[3]


def test_without_the_archive_totals_the_invariant_refuses_the_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Removal test for ``archive-accounted``: an archive that removes records without
    counting them breaks the running totals' accounting."""
    w = _world()
    _cancelled_hour(w)
    w.ok([], CLOSE)
    monkeypatch.setattr(keeper, "put_archive_totals", lambda *a, **k: None)
    with pytest.raises(InvariantViolation, match="archive-accounted"):
        w.block([], ARCHIVE_AT)


def test_a_record_dropped_from_live_state_breaks_the_accounting() -> None:
    w = _world()
    _cancelled_hour(w)
    w.app.state.delete(keeper.SLOT + keeper.k8(SLOT))
    with pytest.raises(InvariantViolation, match="archive-accounted"):
        archive_accounted(w.app.state)


def test_two_validators_replaying_the_same_blocks_reach_the_same_root(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Determinism: a second validator fed the same blocks archives the same records into
    the same state, byte for byte, block by block."""
    blocks: list[tuple[list[bytes], int, bytes]] = []
    real_block = World.block

    def recorded(self: World, txs: list[bytes], at: int) -> Any:
        result = real_block(self, txs, at)
        blocks.append((txs, at, self.app.state.root()))
        return result

    monkeypatch.setattr(World, "block", recorded)
    w = _world()
    _cancelled_hour(w)
    w.ok([], CLOSE)
    w.ok([], ARCHIVE_AT)
    assert keeper.archive(w.app.state, HOUR) is not None
    other = Application(w.app.genesis)
    for txs, at, root in blocks:
        apply(other, txs, at)
        assert other.state.root() == root
    assert dict(other.state.items_with_prefix(b"")) == dict(w.app.state.items_with_prefix(b""))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=40), st.binary(max_size=60),
                       min_size=1, max_size=40), st.data())
def test_every_archived_record_proves_and_no_altered_one_does(
        records: dict[bytes, bytes], data: st.DataObject) -> None:
    pairs = sorted(records.items())
    root = archive_root(pairs)
    key, value = data.draw(st.sampled_from(pairs))
    proof = prove_record(7, pairs, key)
    assert proof is not None and proof.verify(root)
    assert RecordProof.from_json(proof.to_json()) == proof
    flip = data.draw(st.integers(0, len(key) + max(len(value), 1) - 1))
    if flip < len(key):
        bad_key = key[:flip] + bytes([key[flip] ^ 1]) + key[flip + 1:]
        assert not RecordProof(7, bad_key, value, proof.index, proof.size, proof.path).verify(root)
    else:
        bad = value + b"\x00" if not value else (
            value[:flip - len(key)] + bytes([value[flip - len(key)] ^ 1]) + value[flip - len(key) + 1:])
        assert not RecordProof(7, key, bad, proof.index, proof.size, proof.path).verify(root)
