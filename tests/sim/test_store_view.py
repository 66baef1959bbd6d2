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
