"""`node start` as an operator meets it on a live network (eyes2, sixteenth session)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gridledger.cli.main import app

ENV = {"GRIDLEDGER_PASSPHRASE": "pw-operator", "COLUMNS": "200"}


def run(args: list[str]) -> Result:
    return CliRunner().invoke(app, args, env=ENV)


@pytest.fixture
def net(tmp_path: Path) -> Path:
    res = run(["node", "init", str(tmp_path / "net"), "--validators", "1", "--participants", "0"])
    assert res.exit_code == 0, res.output
    return tmp_path / "net"


def test_unreachable_nats_is_said_soon_naming_the_urls(net: Path, monkeypatch) -> None:
    """A mistyped --nats (or no cluster yet): 84 s of silence, then "cannot start the
    validator: " with nothing after it. Now a bounded wait and the URLs named."""
    from gridledger.node import nats_orderer

    monkeypatch.setattr(nats_orderer, "FIRST_CONNECT_S", 1.0, raising=False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    res = run(["node", "start", str(net / "validator-0"), "--replicas", "1",
               "--nats", f"nats://127.0.0.1:{port}"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"cannot reach NATS at nats://127.0.0.1:{port} within 1 s" in out, res.output
    assert time.monotonic() - t0 < 30
    assert "Traceback" not in res.output


def test_a_start_failure_without_a_message_names_its_kind(net: Path, monkeypatch) -> None:
    from gridledger.node import process

    def fails(*_a: object, **_k: object) -> None:
        raise TimeoutError

    monkeypatch.setattr(process, "ValidatorProcess", fails)
    res = run(["node", "start", str(net / "validator-0"), "--nats", "nats://127.0.0.1:1"])
    assert res.exit_code == 1, res.output
    assert "cannot start the validator: TimeoutError" in res.output, res.output
