"""The privacy scans read a validator's store while other processes may still hold it (the
store follower replays it on the other core while the scan runs beside the attacks'
analyses): the scan reads through SQLite's locks and write-ahead log. Regression: an
immutable read ignored the -wal file — what a writer committed while another connection
held the store was missing, and a make test run found the file "malformed"."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from gridledger.node.store import BlockStore
from gridledger.sim.privacy_view import StoreView


def test_what_is_still_in_the_write_ahead_log_is_read(tmp_path: Path) -> None:
    path = tmp_path / "validator-1.sqlite"
    writer = BlockStore(path)
    follower = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    follower.execute("SELECT count(*) FROM blocks").fetchone()   # holds the store open
    writer.set_meta("genesis", b"the genesis document")
    writer.close()              # not the last connection: no checkpoint, the row stays in -wal
    assert Path(f"{path}-wal").stat().st_size > 0
    with StoreView(path) as view:
        assert view.genesis() == b"the genesis document"
        assert list(view.blocks()) == []
    follower.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "-wal" not in p.name
                  and "-shm" not in p.name) == ["validator-1.sqlite"]


def test_the_curious_validators_node_reads_its_store_in_place(tmp_path: Path,
                                                              monkeypatch) -> None:
    """Issue 17: the curious validator's restarted node copied its whole store to the temp
    directory (at 1,000 members that filled /tmp). It opens the store itself, read-only:
    nothing is written to the temp directory, the store's bytes do not change, and the node
    serves the stored tip."""
    import hashlib
    import tempfile

    import pytest

    from gridledger.node.embedded import EmbeddedNetwork
    from gridledger.node.validator import Validator
    from gridledger.sim.privacy_view import node_api
    from tests.conftest import make_chain

    chain = make_chain()
    data = tmp_path / "ledger"
    net = EmbeddedNetwork(chain.genesis, chain.validators, data)
    for b in range(3):
        net.submit(chain.transfer(b, b + 1, 10 + b), now_s=b)
        net.tick(900 * (b + 1))
    root, height = net.entry.state_root(), net.height
    net.close()
    path = data / "validator-1.sqlite"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    files = sorted(p.name for p in data.iterdir())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with node_api(path, 1, chain.validators[1]) as api:
        status = api.get("/v1/status").json()
        assert os.listdir(scratch) == []
    assert status["state_root"] == root.hex() and status["height"] == height
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in data.iterdir()) == files
    ro = Validator(1, chain.validators[1], chain.genesis, path, readonly=True)
    try:
        assert ro.state_root() == root
        with pytest.raises(sqlite3.OperationalError):  # it cannot store a block
            ro.store.set_meta("x", b"y")
    finally:
        ro.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def _sum_of_scans(paths: list[Path], owners: dict, out_of: dict) -> dict:
    """``count_clear_in``'s figures from scanning every store itself (no rows shared)."""
    from gridledger.sim.privacy_view import _count_store

    readings = {"pooled": 0, "out": 0}
    orders = {"pooled": 0, "out": 0}
    for p in paths:
        got = _count_store(p, owners, frozenset(), out_of)
        for side in readings:
            readings[side] += got.count.readings[side]
            orders[side] += got.count.orders[side]
    return {"readings": readings, "orders": orders}


def test_the_clear_scan_decodes_equal_stores_once_and_counts_each(default_day, tmp_path: Path,
                                                                  monkeypatch) -> None:
    """Issue 17 (thirteenth session): the demo's four stores hold the same certified blocks,
    so ``count_clear_in`` decodes one of them and counts it four times; a store whose block
    rows differ anywhere is scanned itself. The figures are those of four scans."""
    import shutil

    from gridledger.sim import privacy_view
    from gridledger.sim.privacy_view import block_rows_digest, count_clear_in, genesis_owners

    paths = sorted((default_day.out / "ledger").glob("*.sqlite"))
    owners = genesis_owners(paths[0])
    # privacy mode: no household is named in clear, so counts would be 0 on every side;
    # name the senders of the first orders as households (one of them kept out of the pool)
    with StoreView(paths[0]) as view:
        senders = sorted({st.tx.sender for _h, txs, _e in view.blocks()
                          for st in txs if st.tx.kind == "market/order"})[:40]
    owners |= {a: f"hh{i % 8}" for i, a in enumerate(senders)}
    cp = "hh0"
    out_of = {e: frozenset({cp}) for e in range(0, 400)}
    scans: list[Path] = []
    real = privacy_view._count_store
    monkeypatch.setattr(privacy_view, "_count_store",
                        lambda p, *a: scans.append(p) or real(p, *a))
    got = count_clear_in(paths, owners, frozenset(), out_of)
    assert len({block_rows_digest(p) for p in paths}) == 1 and scans == paths[:1]
    want = _sum_of_scans(paths, owners, out_of)
    split = got["clear_by_pool"]
    assert [split["pooled"]["readings"], split["out_of_pool"]["readings"]] == \
        [want["readings"]["pooled"], want["readings"]["out"]]
    assert [split["pooled"]["orders"], split["out_of_pool"]["orders"]] == \
        [want["orders"]["pooled"], want["orders"]["out"]]
    assert split["out_of_pool"]["orders"] > 0 and split["pooled"]["orders"] > 0
    assert got["stores_scanned"] == 4

    # one altered row (a later block's receipts): that store is scanned on its own
    other = tmp_path / "validator-9.sqlite"
    shutil.copyfile(paths[0], other)
    for side in ("-wal", "-shm"):
        if Path(f"{paths[0]}{side}").exists():
            shutil.copyfile(f"{paths[0]}{side}", f"{other}{side}")
    db = sqlite3.connect(other)
    tip = db.execute("SELECT MAX(height) FROM blocks").fetchone()[0]
    db.execute("DELETE FROM blocks WHERE height > ?", (tip // 2,))
    db.commit()
    db.close()
    scans.clear()
    mixed = count_clear_in([paths[0], other, paths[1]], owners, frozenset(), out_of)
    assert scans == [paths[0], other]
    want = _sum_of_scans([paths[0], other, paths[1]], owners, out_of)
    assert mixed["clear_by_pool"]["out_of_pool"]["orders"] == want["orders"]["out"]
    assert mixed["clear_household_readings"] == sum(want["readings"].values())
    assert mixed["clear_household_orders"] == sum(want["orders"].values())
    one = got["clear_household_orders"] // 4
    assert mixed["clear_household_orders"] < 3 * one   # the cut store counted its own, fewer
