"""Command-line bad input (issue 18 item 11), as a kind: every command checks its arguments
before any work, names the flag or file at fault, exits 2 (usage) or 1 (failure) without a
traceback, and never writes to what it only reads."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gridledger.cli.main import app
from gridledger.crypto.keystore import KDF_FLOOR, save_key
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.nats_cluster import free_port
from tests.conftest import make_chain

ADDR = "ab" * 32


def run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, args, env=env)


def assert_clean(res: Result, code: int, *needles: str) -> None:
    """Exit ``code`` through ``typer.Exit`` (no traceback), message naming ``needles``."""
    out = " ".join(res.output.split())  # rich wraps long lines
    assert res.exit_code == code, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    for n in needles:
        assert n in out, (n, res.output)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- demo


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--seed", "-1"], "--seed must be between 0 and"),
        (["--days", "0"], "--days must be between 1 and 366, got 0"),
        (["--days", "400"], "--days must be between 1 and 366"),
        (["--hours", "0"], "--hours must be between 1 and 8784, got 0"),
        (["--hours", "2", "--days", "1"], "give --hours or --days, not both"),
        (["--validators", "0"], "--validators must be between 1 and 31"),
        (["--prosumers", "1"], "--prosumers must be between 2 and 2000"),
        (["--workload", "bogus"], "--workload must be 'community' or 'transfers'"),
        (["--network", "no-such-grid"], "--network 'no-such-grid'"),
        (["--attacks", "no-such-attack"], "unknown attack 'no-such-attack'"),
        (["--prosumers", "500"], "--prosumers 500 exceeds the"),
        (["--privacy", "maybe"], "--privacy must be 'on' or 'off', got 'maybe'"),
        (["--privacy", "on", "--attacks", "balance-escape"],
         "balance-escape needs --privacy off"),
        (["--scenario", "rush-hour"], "--scenario must be 'default' or 'evening-peak'"),
        (["--flexibility", "maybe"], "--flexibility must be 'on' or 'off'"),
    ],
)
def test_demo_flags_are_checked_before_any_work(in_tmp: Path, args: list[str], needle: str) -> None:
    res = run(["demo", *args])
    assert_clean(res, 2, needle)
    if needle.startswith("--days"):
        assert "--hours" not in res.output  # the flag given is the one blamed
    assert not (in_tmp / "gridledger-out").exists()  # nothing created or touched


def test_demo_out_naming_a_file(in_tmp: Path) -> None:
    f = in_tmp / "results.txt"
    f.write_text("mine\n")
    assert_clean(run(["demo", "--out", str(f)]), 2, f"--out {f} exists and is not a folder")
    assert f.read_text() == "mine\n"


# --------------------------------------------------------------------------- verify-chain


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chain = make_chain(n_validators=4)
    d = tmp_path_factory.mktemp("ledger")
    net = EmbeddedNetwork(chain.genesis, chain.validators, d)
    try:
        net.submit(chain.transfer(0, 1, 5))
        net.tick(900)
    finally:
        net.close()
    return d


def test_verify_chain_never_writes_to_a_good_store(ledger_dir: Path) -> None:
    store = ledger_dir / "validator-0.sqlite"
    before = {p.name: digest(p) for p in ledger_dir.iterdir()}
    res = run(["verify-chain", str(store)])
    assert res.exit_code == 0, res.output
    assert "ok" in res.output
    assert {p.name: digest(p) for p in ledger_dir.iterdir()} == before  # no byte, no side file


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "is empty: not a ledger store"),
        (b"just some text\n", "is not an SQLite database: not a ledger store"),
        (None, "is an SQLite database but not a GridLedger ledger store (no meta, blocks table)"),
    ],
    ids=["empty", "text", "other-sqlite"],
)
def test_verify_chain_refuses_what_is_not_a_ledger(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "thing.sqlite"
    if content is None:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE customers (name TEXT)")
        db.commit()
        db.close()
    else:
        path.write_bytes(content)
    before = digest(path)
    assert_clean(run(["verify-chain", str(path)]), 2, str(path), needle)
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == ["thing.sqlite"]  # no -wal/-shm left behind


def test_verify_chain_names_the_bad_file_in_a_folder(tmp_path: Path, ledger_dir: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "good.sqlite").write_bytes((ledger_dir / "validator-0.sqlite").read_bytes())
    (d / "notes.sqlite").write_text("hello")
    assert_clean(run(["verify-chain", str(d)]), 2, "notes.sqlite", "not an SQLite database")


def test_verify_chain_missing_or_empty_folder(tmp_path: Path) -> None:
    assert_clean(run(["verify-chain", str(tmp_path / "nope")]), 2, "does not exist")
    assert_clean(run(["verify-chain", str(tmp_path)]), 2, "no ledger store")


def test_verify_chain_reports_an_altered_store_as_a_failure(tmp_path: Path, ledger_dir: Path) -> None:
    store = tmp_path / "v.sqlite"
    store.write_bytes((ledger_dir / "validator-0.sqlite").read_bytes())
    db = sqlite3.connect(store)
    db.execute("UPDATE blocks SET txs = X'80' WHERE height = 1")
    db.commit()
    db.close()
    res = run(["verify-chain", str(store)])
    assert res.exit_code == 1 and "BAD" in res.output and "Traceback" not in res.output


def test_node_evidence_opens_read_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    assert_clean(run(["node", "evidence", str(empty)]), 2, "is empty")
    assert empty.read_bytes() == b""
    assert_clean(run(["node", "evidence", str(tmp_path / "none.sqlite")]), 2, "no such file")


# --------------------------------------------------------------------------- keys


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chain = make_chain()
    d = tmp_path_factory.mktemp("keys")
    return save_key(d, "p0", chain.users[0], "pw", kdf=KDF_FLOOR)


def test_keys_commands(tmp_path: Path, keyfile: Path) -> None:
    # No passphrase in the environment: a prompt would abort (exit 1); 2 proves the check
    # came first.
    assert_clean(run(["keys", "new", ".hidden", "--dir", str(tmp_path)]), 2, "invalid key name")
    assert_clean(run(["keys", "new", "k", "--alg", "rsa", "--dir", str(tmp_path)]), 2, "--alg must be one of")
    assert_clean(run(["keys", "new", "p0", "--dir", str(keyfile.parent)]), 2, "already exists")
    assert_clean(run(["keys", "list", "--dir", str(tmp_path / "nope")]), 2, "does not exist")
    assert_clean(run(["keys", "show", "ghost", "--dir", str(tmp_path)]), 2, "ghost.key.json does not exist")
    res = run(["keys", "show", "p0", "--dir", str(keyfile.parent)], env={"GRIDLEDGER_PASSPHRASE": "no"})
    assert_clean(res, 1, "wrong passphrase")
    res = run(["keys", "list", "--dir", str(keyfile.parent)])
    assert res.exit_code == 0 and "argon2id" in res.output


# --------------------------------------------------------------------------- tx / node API


def test_tx_transfer_flags(tmp_path: Path, keyfile: Path) -> None:
    base = ["tx", "transfer", "--key", str(keyfile), "--amount-micro", "5"]
    assert_clean(run([*base, "--to", "zz"]), 2, "--to must be a hex address")
    assert_clean(run([*base, "--to", "abcd"]), 2, "--to must be a 32-byte address")
    assert_clean(run(["tx", "transfer", "--key", str(keyfile), "--to", ADDR, "--amount-micro", "0"]),
                 2, "--amount-micro must be between 1 and")
    assert_clean(run([*base, "--to", ADDR, "--node", "localhost:8080"]), 2, "--node must be an http")
    assert_clean(run(["tx", "transfer", "--key", str(tmp_path / "k.json"), "--to", ADDR,
                      "--amount-micro", "5"]), 2, "--key", "does not exist")
    junk = tmp_path / "junk.key.json"
    junk.write_text("{}")
    assert_clean(run(["tx", "transfer", "--key", str(junk), "--to", ADDR, "--amount-micro", "5"],
                     env={"GRIDLEDGER_PASSPHRASE": "pw"}), 2, "--key", "not a GridLedger keystore")
    assert_clean(run([*base, "--to", ADDR], env={"GRIDLEDGER_PASSPHRASE": "wrong"}), 1, "wrong passphrase")


def test_a_node_that_is_down_is_a_failure_not_a_traceback(keyfile: Path) -> None:
    node = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"GRIDLEDGER_PASSPHRASE": "pw"}
    res = run(["tx", "transfer", "--key", str(keyfile), "--to", ADDR, "--amount-micro", "5",
               "--node", node], env=env)
    assert_clean(res, 1, f"cannot reach the node at {node}")
    assert_clean(run(["node", "validators", "--node", node]), 1, "cannot reach the node")
    assert_clean(run(["tx", "vote-validator", "--key", str(keyfile), "--proposal", "0", "--node", node],
                     env=env), 1, "cannot reach the node")


def test_validator_set_flags(tmp_path: Path, keyfile: Path) -> None:
    base = ["tx", "propose-validator", "--key", str(keyfile)]
    assert_clean(run(base), 2, "give exactly one of --add")
    assert_clean(run([*base, "--add", str(tmp_path / "join.json")]), 2, "--add", "does not exist")
    bad = tmp_path / "join.json"
    bad.write_text('{"alg": 1}')
    assert_clean(run([*base, "--add", str(bad)]), 2, "is not a join.json")
    assert_clean(run([*base, "--remove", "xyz"]), 2, "--remove must be a hex address")
    assert_clean(run(["tx", "vote-validator", "--key", str(keyfile), "--proposal", "-1"]), 2,
                 "--proposal must be between 0 and")


def test_node_commands_check_their_folders_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert_clean(run(["node", "init", str(f)]), 2, "exists and is not a folder")
    assert_clean(run(["node", "init", str(tmp_path / "n"), "--chain-id", "bad id!"]), 2, "--chain-id")
    assert_clean(run(["node", "init", str(tmp_path / "n"), "--validators", "40"]), 2, "--validators")
    net = tmp_path / "net"
    (net / "validator-0").mkdir(parents=True)
    (net / "genesis.cbor").write_bytes(b"\x00")
    assert_clean(run(["node", "init", str(net)]), 2, "already holds a network")
    v0 = net / "validator-0"
    assert_clean(run(["node", "start", str(v0)]), 2, "no node.json")
    (v0 / "node.json").write_text("{}")
    assert_clean(run(["node", "start", str(v0)]), 2, "validator.key.json is missing")
    (v0 / "validator.key.json").write_text("{}")
    for args, needle in (
        (["--nats", "localhost:4222"], "--nats must be comma-separated nats:// URLs"),
        (["--http-port", "70000"], "--http-port must be between 0 and 65535"),
        (["--tick-s", "0"], "--tick-s must be between"),
        (["--fault", "evil"], "--fault: unknown evil; choose from"),
        (["--replicas", "9"], "--replicas must be between 1 and 5"),
        (["--network", "cigre-lv"], "--network draws the dashboard's network panel: it needs "
                                    "--http-port"),
        (["--http-port", "8080", "--network", "no-such-grid"], "--network: unknown grid spec"),
    ):
        assert_clean(run(["node", "start", str(v0), *args]), 2, needle)
    assert_clean(run(["node", "new-validator", str(net), "--alg", "ecdsa"]), 2, "--alg must be one of")
    assert_clean(run(["node", "cluster", str(f)]), 2, "exists and is not a folder")
    assert_clean(run(["bench", "nope"]), 2, "unknown benchmark 'nope'")


# --------------------------------------------------------------------------- a live node


@pytest.fixture
def live_node(tmp_path: Path) -> Iterator[tuple[str, object]]:
    """The HTTP API of an embedded 4-validator network on loopback, ticking every 50 ms."""
    import uvicorn

    from gridledger.api import create_app
    from gridledger.node.service import EmbeddedService

    chain = make_chain(n_validators=4)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "ledger")
    clock = [0.0]
    svc = EmbeddedService(net, clock=lambda: clock[0])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    stop = threading.Event()

    def ticker() -> None:
        t = 0
        while not stop.is_set():
            t += 900
            clock[0] = float(t)
            svc.tick(t)
            stop.wait(0.05)

    threads = [threading.Thread(target=server.run, daemon=True), threading.Thread(target=ticker, daemon=True)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", chain
    finally:
        stop.set()
        server.should_exit = True
        for th in threads:
            th.join(timeout=5)
        net.close()


def test_transfer_to_an_unregistered_address_blames_the_recipient(
    tmp_path: Path, live_node: tuple[str, object]
) -> None:
    node, chain = live_node
    key = save_key(tmp_path, "u0", chain.users[0], "pw", kdf=KDF_FLOOR)  # type: ignore[attr-defined]
    res = run(["tx", "transfer", "--key", str(key), "--to", ADDR, "--amount-micro", "5", "--node", node],
              env={"GRIDLEDGER_PASSPHRASE": "pw"})
    assert_clean(res, 1, "unknown-recipient")
    assert "unknown-sender" not in res.output
