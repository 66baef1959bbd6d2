"""The API server binds in its owner's thread (``api.limits.ServerThread``): a port in use is
an error before any work, and a server that ends unasked is seen by its owner (a validator
process stops rather than run on with no API)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gridledger.api.limits import ServeError, ServerThread


def _app() -> Starlette:
    return Starlette(routes=[Route("/", lambda _r: PlainTextResponse("ok"))])


def test_a_port_in_use_is_refused_in_the_callers_thread():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        threads = threading.active_count()
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            ServerThread(_app(), "127.0.0.1", port)
        assert threading.active_count() == threads  # no server thread left behind


def test_port_zero_serves_on_the_bound_port_and_stops():
    api = ServerThread(_app(), "127.0.0.1", 0)
    try:
        assert api.port != 0 and api.alive
        assert httpx.get(f"http://127.0.0.1:{api.port}/", timeout=5).text == "ok"
    finally:
        api.stop()
    assert not api.alive and not api.failed  # asked to stop: not a failure
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{api.port}/", timeout=2)


def test_a_server_that_ends_unasked_is_a_failure_its_owner_sees():
    api = ServerThread(_app(), "127.0.0.1", 0)
    api.server.should_exit = True  # ended from inside, as a crash of its loop would
    api.thread.join(timeout=10)
    assert api.failed


def test_a_validator_process_stops_when_its_api_stops(tmp_path):
    """Before: the API thread could end (a bind lost after the CLI's check, a crash) and the
    validator ran on with no API. Now its block loop raises, naming the address."""
    from gridledger.node.network_files import init_network
    from gridledger.node.orderer import LocalOrderer
    from gridledger.node.process import ProcessConfig, ValidatorProcess

    dirs = init_network(tmp_path / "net", 4, 1, "srv", "pw-srv", scrypt_n=2**12)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = ValidatorProcess(ProcessConfig(dirs[0], [], "127.0.0.1", port, tick_s=0.2,
                                          replicas=1), "pw-srv", orderer=LocalOrderer())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            proc.run()
        except BaseException as exc:  # recorded for the assertion
            errors.append(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 120  # opening the store and importing the API stack
        while proc.api is None or not proc.api.server.started:  # (slow on a loaded machine)
            assert th.is_alive(), f"the validator ended before serving: {errors!r}"
            assert time.monotonic() < deadline, "the API did not start"
            th.join(timeout=0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=30).status_code == 200
        proc.api.server.should_exit = True  # ended from inside its loop, as a crash would
        th.join(timeout=60)
        assert not th.is_alive(), "the validator ran on without its API"
        assert errors and isinstance(errors[0], RuntimeError)
        assert f"its API on 127.0.0.1:{port} stopped" in str(errors[0])
    finally:
        proc.stop.set()
        th.join(timeout=10)
