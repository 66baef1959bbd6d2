"""A bit flipped anywhere in a stored block, transaction or certificate is found."""

import os
import shutil
import sqlite3

import pytest
from typer.testing import CliRunner

from gridledger.cli.main import app as cli
from gridledger.node.verify import verify_store
from tests.node.chains import five_block_chain


@pytest.fixture(scope="module")
def good_store(tmp_path_factory):
    return five_block_chain(tmp_path_factory.mktemp("chain")) / "validator-1.sqlite"


def _flip(path, column, height, byte_index):
    db = sqlite3.connect(path)
    (blob,) = db.execute(f"SELECT {column} FROM blocks WHERE height=?", (height,)).fetchone()
    b = bytearray(blob)
    b[byte_index % len(b)] ^= 0x01
    db.execute(f"UPDATE blocks SET {column}=? WHERE height=?", (bytes(b), height))
    db.commit()
    db.close()


def test_clean_store_verifies(good_store):
    r = verify_store(good_store)
    assert r.ok and r.blocks == 5


@pytest.mark.parametrize("column", ["header", "txs", "cert", "receipts"])
@pytest.mark.parametrize("offset", [3, 40, 500, 2000])
def test_any_flipped_bit_is_found_at_its_block(tmp_path, good_store, column, offset):
    p = tmp_path / "v.sqlite"
    shutil.copy(good_store, p)
    _flip(p, column, 3, offset)
    r = verify_store(p)
    assert not r.ok and r.bad_height == 3, r


def test_tampered_snapshot_is_found(tmp_path, good_store):
    p = tmp_path / "v.sqlite"
    shutil.copy(good_store, p)
    db = sqlite3.connect(p)
    h, blob = db.execute("SELECT height, state FROM snapshots ORDER BY height DESC LIMIT 1").fetchone()
    b = bytearray(blob)
    b[-1] ^= 1
    db.execute("UPDATE snapshots SET state=? WHERE height=?", (bytes(b), h))
    db.commit()
    db.close()
    r = verify_store(p)
    assert not r.ok and "snapshot" in r.reason


def test_deleted_block_is_named(tmp_path, good_store):
    p = tmp_path / "v.sqlite"
    shutil.copy(good_store, p)
    db = sqlite3.connect(p)
    db.execute("DELETE FROM blocks WHERE height=2")
    db.commit()
    db.close()
    r = verify_store(p)
    assert r.bad_height == 2 and "missing" in r.reason


def test_cli_exit_codes_name_store_and_block(tmp_path, good_store):
    d = tmp_path / "out"
    d.mkdir()
    shutil.copy(good_store, d / "a.sqlite")
    runner = CliRunner()
    res = runner.invoke(cli, ["verify-chain", str(d)])
    assert res.exit_code == 0, res.output
    shutil.copy(good_store, d / "b.sqlite")
    _flip(d / "b.sqlite", "txs", 4, 100)
    res = runner.invoke(cli, ["verify-chain", str(d)], terminal_width=200)
    assert res.exit_code == 1
    assert "b.sqlite" in res.output and "first bad block 4" in res.output
    res = runner.invoke(cli, ["verify-chain", str(tmp_path / "nope")])
    assert res.exit_code == 2


def _edit(path, sql, *args):
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()


@pytest.mark.parametrize("which", ["oldest", "latest"])
def test_a_flipped_byte_in_any_snapshot_is_named_by_table_row_and_height(tmp_path, good_store, which):
    """Issue 18.7: an older snapshot (not the one restart reads) is checked too."""
    p = tmp_path / "v.sqlite"
    shutil.copy(good_store, p)
    db = sqlite3.connect(p)
    order = "ASC" if which == "oldest" else "DESC"
    h, blob = db.execute(f"SELECT height, state FROM snapshots ORDER BY height {order} LIMIT 1").fetchone()
    db.close()
    b = bytearray(blob)
    b[len(b) // 2] ^= 1
    _edit(p, "UPDATE snapshots SET state=? WHERE height=?", bytes(b), h)
    r = verify_store(p)
    assert not r.ok and r.bad_height == h and r.table == "snapshots"
    assert f"snapshots row height {h}" in r.reason


def test_a_snapshot_without_its_block_and_a_forged_index_row_are_found(tmp_path, good_store):
    p = tmp_path / "v.sqlite"
    shutil.copy(good_store, p)
    _edit(p, "INSERT INTO snapshots VALUES (?, ?)", 99, b"\x80")
    r = verify_store(p)
    assert r.table == "snapshots" and r.bad_height == 99
    shutil.copy(good_store, p)
    _edit(p, "UPDATE txindex SET height=height+1 WHERE tx=(SELECT MIN(tx) FROM txindex)")
    assert verify_store(p).table == "txindex"
    shutil.copy(good_store, p)
    _edit(p, "INSERT INTO txindex VALUES (?, 2, 1)", b"\x00" * 32)
    assert verify_store(p).table == "txindex"


def test_evidence_rows_are_checked(tmp_path, good_store):
    from gridledger.ledger import codec

    p = tmp_path / "v.sqlite"
    shutil.copy(good_store, p)
    forged = {"validator": 1, "height": 2, "header_hashes": [b"\x01" * 32, b"\x02" * 32],
              "sigs": [b"\x00" * 3309, b"\x00" * 3309]}
    _edit(p, "INSERT INTO evidence (height, kind, body) VALUES (2, 'equivocation', ?)", codec.encode(forged))
    r = verify_store(p)
    assert r.table == "evidence" and r.bad_height == 2 and "does not verify" in r.reason


def test_verify_never_writes_to_what_it_checks(tmp_path, good_store):
    p = tmp_path / "v.sqlite"
    shutil.copy(good_store, p)
    before = p.read_bytes()
    assert verify_store(p).ok and p.read_bytes() == before
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    r = verify_store(empty)
    assert not r.ok and "not a ledger store" in r.reason and empty.read_bytes() == b""
    text = tmp_path / "notes.sqlite"
    text.write_text("hello")
    assert not verify_store(text).ok and text.read_text() == "hello"


def test_stores_replayed_in_processes_report_like_one_by_one(tmp_path, good_store, monkeypatch):
    """verify_stores with a worker process gives each store's own report, in order: a
    bad store among good ones is named at its block, exactly as replaying them here does."""
    from gridledger.node import verify

    paths = []
    for i in range(3):
        p = tmp_path / f"validator-{i}.sqlite"
        shutil.copy(good_store, p)
        paths.append(p)
    _flip(paths[1], "txs", 3, 40)
    seen: list[tuple[int, int]] = []
    here = verify.verify_stores(paths, workers=1, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]        # the demo's progress bar
    monkeypatch.setattr(verify, "PARALLEL_FROM_BYTES", 0)  # small stores: force a worker
    seen.clear()
    pooled = verify.verify_stores(paths, workers=2, progress=lambda d, n: seen.append((d, n)))
    assert pooled == here and seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert verify.verify_workers(paths, 2) == min(2, os.cpu_count() or 1)
    assert [r.ok for r in pooled] == [True, False, True] and pooled[1].bad_height == 3
    # a worker that dies without reporting: its stores are replayed here, nothing is lost
    monkeypatch.setattr(verify, "_WORKER", "import sys; sys.exit(3)")
    assert verify.verify_stores(paths, workers=2) == here
