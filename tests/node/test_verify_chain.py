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
    bad store among good ones is named at its block, exactly as replaying them here does.
    Chains are what is shared out: a second chain's stores go to the worker."""
    from gridledger.node import verify

    other = five_block_chain(tmp_path / "other", seed=2)
    paths = []
    for i in range(3):
        p = tmp_path / f"validator-{i}.sqlite"
        shutil.copy(good_store, p)
        paths.append(p)
    _flip(paths[1], "txs", 3, 40)
    paths += [other / "validator-0.sqlite", other / "validator-2.sqlite"]
    seen: list[tuple[int, int]] = []
    here = verify.verify_stores(paths, workers=1, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(i, 5) for i in range(6)]              # the demo's progress bar
    assert here == [verify.verify_store(p) for p in paths]
    monkeypatch.setattr(verify, "PARALLEL_FROM_BYTES", 0)  # small stores: force a worker
    assert verify.verify_workers(paths, 2) == min(2, os.cpu_count() or 1)
    assert verify.verify_workers(paths[:3], 2) == 1        # one chain: one replay, here
    seen.clear()
    pooled = verify.verify_stores(paths, workers=2, progress=lambda d, n: seen.append((d, n)))
    assert pooled == here and seen == [(i, 5) for i in range(6)]
    assert [r.ok for r in pooled] == [True, False, True, True, True] and pooled[1].bad_height == 3
    # a worker that dies without reporting: its stores are replayed here, nothing is lost
    monkeypatch.setattr(verify, "_WORKER", "import sys; sys.exit(3)")
    assert verify.verify_stores(paths, workers=2) == here


def _count_replays(monkeypatch):
    from gridledger.node import verify

    calls = []
    real = verify.replay_block

    def counted(app, header, txs, receipts):
        calls.append(header.height)
        return real(app, header, txs, receipts)

    monkeypatch.setattr(verify, "replay_block", counted)
    return calls


def test_a_chain_is_replayed_once_however_many_stores_hold_it(tmp_path, monkeypatch):
    """Issue 17: the four validators' stores of a run hold the same blocks; their blocks are
    re-executed once, and every store still gets its own full report."""
    from gridledger.node import verify

    d = five_block_chain(tmp_path / "c")
    paths = verify.find_stores(d)
    calls = _count_replays(monkeypatch)
    reports = verify.verify_stores(paths, workers=1)
    assert [r.ok for r in reports] == [True] * 4 and len({r.state_root for r in reports}) == 1
    assert calls == [1, 2, 3, 4, 5]                         # not 4 x 5
    assert [r.replayed for r in reports] == [True, False, False, False]


def _truncate(path, height):
    _edit(path, "DELETE FROM blocks WHERE height>?", height)
    _edit(path, "DELETE FROM snapshots WHERE height>?", height)
    _edit(path, "DELETE FROM txindex WHERE height>?", height)


TAMPER = {
    "flipped tx": lambda p: _flip(p, "txs", 3, 40),
    "flipped receipts": lambda p: _flip(p, "receipts", 5, 500),
    "flipped snapshot": lambda p: _edit(
        p, "UPDATE snapshots SET state=substr(state, 1, length(state) - 1) || x'00' "
           "WHERE height=2"),
    "extra snapshot": lambda p: _edit(p, "INSERT INTO snapshots VALUES (?, ?)", 99, b"\x80"),
    "index row moved": lambda p: _edit(
        p, "UPDATE txindex SET height=height+1 WHERE tx=(SELECT MIN(tx) FROM txindex)"),
    "index row added": lambda p: _edit(p, "INSERT INTO txindex VALUES (?, 2, 1)", b"\x00" * 32),
    "negative log position": lambda p: _edit(p, "UPDATE blocks SET log_end=-1 WHERE height=4"),
    "block deleted": lambda p: _edit(p, "DELETE FROM blocks WHERE height=2"),
    "unknown meta": lambda p: _edit(p, "INSERT INTO meta VALUES ('x', x'00')"),
    "shorter (a lagging node)": lambda p: _truncate(p, 3),
}


@pytest.mark.parametrize("how", sorted(TAMPER))
def test_a_store_checked_against_anothers_replay_reports_as_its_own_replay(tmp_path, how):
    """A store that differs from the replayed one anywhere is reported exactly as replaying
    it alone reports it (same table, row, height and reason); a shorter prefix of the
    chain verifies with its own tip and root."""
    from gridledger.node import verify

    d = five_block_chain(tmp_path / "c")
    paths = verify.find_stores(d)
    TAMPER[how](paths[2])
    alone = [verify.verify_store(p) for p in paths]
    assert verify.verify_stores(paths, workers=1) == alone
    assert alone[2].ok == (how == "shorter (a lagging node)")


def test_forged_evidence_in_a_store_of_a_replayed_chain_is_found(tmp_path):
    from gridledger.ledger import codec
    from gridledger.node import verify

    d = five_block_chain(tmp_path / "c")
    paths = verify.find_stores(d)
    forged = {"validator": 1, "height": 2, "header_hashes": [b"\x01" * 32, b"\x02" * 32],
              "sigs": [b"\x00" * 3309, b"\x00" * 3309]}
    _edit(paths[3], "INSERT INTO evidence (height, kind, body) VALUES (2, 'equivocation', ?)",
          codec.encode(forged))
    r = verify.verify_stores(paths, workers=1)
    assert [x.ok for x in r] == [True, True, True, False]
    assert r[3] == verify.verify_store(paths[3]) and r[3].table == "evidence"


def test_a_follower_checks_stores_while_they_are_written(tmp_path, monkeypatch):
    """StoreFollower replays validator 0's store as the network writes it and, once the
    writer is done, reports every store as verify_stores does afterwards."""
    from gridledger.node import verify
    from gridledger.node.embedded import EmbeddedNetwork
    from tests.conftest import make_chain

    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, snapshot_every=3)
    paths = verify.find_stores(tmp_path)
    follower = verify.StoreFollower(paths)
    for b in range(7):
        net.submit(chain.transfer(b % 6, (b + 2) % 6, 100 + b), now_s=b)
        net.tick(900 * (b + 1))
    net.crash(2)
    net.tick(900 * 8)
    net.restart(2)
    net.tick(900 * 9)
    net.close()
    seen: list[tuple[int, int]] = []
    follower.writer_done()   # the writer closed the stores: the worker finishes meanwhile
    follower.writer_done()   # (once is enough; ``reports`` tells it too)
    got = follower.reports(progress=lambda d, n: seen.append((d, n)))
    assert got == verify.verify_stores(paths, workers=1)
    assert [r.ok for r in got] == [True] * 4 and {r.blocks for r in got} == {9}
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert not list(tmp_path.glob("*-wal")) and not list(tmp_path.glob("*-shm"))
    # a follower that dies reports nothing: every store is checked here instead
    monkeypatch.setattr(verify, "_FOLLOW_WORKER", "import sys; sys.exit(3)")
    dead = verify.StoreFollower(paths)
    assert dead.reports() == got
    verify.StoreFollower(paths).close()   # a failed run: the worker is stopped, no reports


def test_the_follower_is_nicer_than_the_run_until_the_run_ends():
    """The follower process lowers its priority by FOLLOW_NICE while the run writes the stores
    (it must not stretch the run's block phase on the second core) and raises it back once
    told the run is over, where that is permitted (daywall, issue 17)."""
    import subprocess
    import sys

    from gridledger.node import verify

    probe = ("import os, sys, gridledger.node.verify as v\n"
             "base = v._renice(v.FOLLOW_NICE, relative=True)\n"
             "during = os.getpriority(os.PRIO_PROCESS, 0)\n"
             "back = v._renice(base) if base is not None else None\n"
             "print(base, during, os.getpriority(os.PRIO_PROCESS, 0), back == during)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    base, during, after, back = out.stdout.split()
    assert int(during) == min(19, int(base) + verify.FOLLOW_NICE)
    if os.geteuid() == 0:   # raising a priority back needs the privilege
        assert int(after) == int(base) and back == "True"
    else:
        assert int(after) in (int(base), int(during))
