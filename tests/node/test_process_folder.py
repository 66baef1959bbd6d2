"""A validator folder is run by one process at a time, and a store that refuses a write
stops its validator instead of wedging it (found operating a 4-validator network: a second
`node start` on validator-0's folder made the first fail on `UNIQUE constraint failed:
blocks.height` and then print "retrying after BlockError('no pending block')" every 0.3 s,
serving a stale height for good)."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from gridledger.files import FolderInUse
from gridledger.node.network_files import init_network
from gridledger.node.orderer import LocalOrderer
from gridledger.node.process import ProcessConfig, ValidatorProcess

PASS = "folder-test"


def _stop(p: ValidatorProcess) -> None:
    p.stop.set()
    p.run()  # returns at once with ``stop`` set, closing everything


def test_one_process_per_validator_folder(tmp_path):
    dirs = init_network(tmp_path / "net", 4, 1, "folder", PASS, scrypt_n=2**12)
    cfg = ProcessConfig(dirs[0], [], tick_s=0.2, replicas=1)
    first = ValidatorProcess(cfg, PASS, orderer=LocalOrderer())
    try:
        with pytest.raises(FolderInUse, match=rf"in use by another validator process \(pid {os.getpid()}\)"):
            ValidatorProcess(cfg, PASS, orderer=LocalOrderer())
    finally:
        _stop(first)
    _stop(ValidatorProcess(cfg, PASS, orderer=LocalOrderer()))  # stopped: the folder is free


def test_a_store_that_refuses_a_write_stops_the_validator(tmp_path):
    dirs = init_network(tmp_path / "net", 4, 1, "folder", PASS, scrypt_n=2**12)
    log = LocalOrderer()
    procs = [ValidatorProcess(ProcessConfig(d, [], tick_s=0.2, replicas=1), PASS, orderer=log)
             for d in dirs]
    failing = procs[0]

    def full(*_a: object, **_k: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    failing.validator.store.append_block = full  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def run(p: ValidatorProcess) -> None:
        try:
            p.run()
        except BaseException as exc:  # recorded for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in procs]
    for th in threads:
        th.start()
    try:
        threads[0].join(timeout=60)
        assert not threads[0].is_alive(), "the validator spun on a store that refuses writes"
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
        assert "database or disk is full" in str(errors[0]) and "stopped" in str(errors[0])
    finally:
        for p in procs:
            p.stop.set()
        for th in threads:
            th.join(timeout=10)


def test_a_repeated_error_is_said_once_with_its_count(tmp_path, capsys):
    """A NATS outage printed "retrying after NoStreamResponseError()" every 0.3 s."""
    dirs = init_network(tmp_path / "net", 4, 1, "folder", PASS, scrypt_n=2**12)
    p = ValidatorProcess(ProcessConfig(dirs[0], [], tick_s=0.2, replicas=1), PASS,
                         orderer=LocalOrderer())
    fails = iter([TimeoutError("no stream")] * 5 + [ConnectionError("gone")] * 2)

    def step() -> bool:
        exc = next(fails, None)
        if exc is None:
            p.stop.set()
            return False
        raise exc

    p.step = step  # type: ignore[method-assign]
    p.run()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("validator 0:")]
    assert lines == [
        "validator 0: retrying after TimeoutError('no stream')",
        "validator 0: retrying after ConnectionError('gone') (the previous one 4 more times)",
        "validator 0: going again after ConnectionError('gone'), 1 more times",
    ], lines
