"""The privacy scans read a validator's store while other processes may still hold it (the
store follower replays it on the other core while the scan runs beside the attacks'
analyses): the scan reads through SQLite's locks and write-ahead log. Regression: an
immutable read ignored the -wal file — what a writer committed while another connection
held the store was missing, and a make test run found the file "malformed"."""

from __future__ import annotations

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
