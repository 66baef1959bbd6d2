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


def test_a_transaction_accepted_but_never_committed_is_no_internal_error(
        tmp_path: Path, monkeypatch) -> None:
    """`tx transfer` to a network without a quorum said "internal error: TimeoutError", as
    for a defect. Now: accepted, not committed yet, where to look and why it may be."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from gridledger.client import Client
    from gridledger.crypto.keystore import KDF_FLOOR, save_key
    from gridledger.crypto.sig import SigningKey

    class NoQuorum(BaseHTTPRequestHandler):  # admits, never commits
        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v1/status":
                self._json(200, {"chain_id": "c"})
            elif self.path.startswith("/v1/accounts/"):
                self._json(200, {"nonce": 0})
            else:
                self._json(404, {"rule": "unknown-tx", "detail": "not committed"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self._json(202, {"tx_hash": "ab" * 32, "sender": "cd" * 32, "nonce": 0,
                             "kind": "bank/transfer"})

        def log_message(self, *_a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NoQuorum)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = Client.transfer
    monkeypatch.setattr(Client, "transfer", lambda self, to, amount, wait=False, timeout_s=30.0:
                        real(self, to, amount, wait=wait, timeout_s=0.5))
    path = save_key(tmp_path, "k", SigningKey.generate("ml-dsa-44"), "pw-operator", kdf=KDF_FLOOR)
    node = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        res = run(["tx", "transfer", "--key", str(path), "--to", "ef" * 32,
                   "--amount-micro", "5", "--node", node])
    finally:
        server.shutdown()
    out = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    assert "internal error" not in out, res.output
    assert f"transaction {'ab' * 32} accepted but not committed in 0.5 s" in out, res.output
    assert f"GET {node}/v1/tx/{'ab' * 32}" in out and "quorum" in out, res.output
