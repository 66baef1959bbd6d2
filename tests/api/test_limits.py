"""Issue 18.5: unbounded inputs. A node API in its own process (production server settings)
is flooded with a 400 MB body (declared and streamed), 500 idle connections, slow-loris
clients, out-of-range parameters and too many event streams. Every one is refused or closed
by the server, and the process's memory stays bounded (resident set measured from /proc).

Bounded: every wait has a deadline and the server is killed in teardown.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gridledger.node.nats_cluster import free_port

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 2.0  # the server's deadline for a complete request
MiB = 1024 * 1024


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _start(tmp_path_factory, *mode: str):
    port = free_port()
    data = tmp_path_factory.mktemp("flood")
    proc = subprocess.Popen([sys.executable, "-m", "tests.api.flood_server", str(port), str(data),
                             str(TIMEOUT_S), *mode], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/v1/status", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.2)
        yield proc, port, base
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _start(tmp_path_factory)


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(min(0.5, left))  # a short window is a short wait, not half a second
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def _response_status(sock: socket.socket, within_s: float = 10.0) -> int | None:
    sock.settimeout(within_s)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1") else None


def test_flood_is_refused_and_memory_stays_bounded(server):
    proc, port, base = server
    for _ in range(20):  # warm up: every route once, so the baseline includes its code
        httpx.get(f"{base}/v1/status")
        httpx.get(f"{base}/v1/blocks/1")
    baseline = _rss(proc.pid)

    # 1. a 400 MB body declared up front: refused from its Content-Length, nothing read
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/tx HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\n"
              b"Content-Length: 400000000\r\n\r\n" + b"\0" * 65536)
    assert _response_status(s) == 413
    s.close()

    # 2. a 400 MB body streamed without a length: refused once past the limit, connection closed
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % MiB + b"\0" * MiB + b"\r\n"
    sent = 0
    s.settimeout(5)
    try:
        while sent < 400 * MiB:
            s.sendall(chunk)
            sent += MiB
    except OSError:
        pass  # the server stopped reading and closed: what we want
    assert sent < 400 * MiB, "the server read a 400 MB body"
    assert _response_status(s) in (413, None)  # 413, or the reset that follows it
    s.close()

    # 3. 500 idle connections that never send a byte, and 20 slow-loris clients
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(500)]
    slow = []
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(c)
    for _ in range(3):  # the slow clients keep trickling bytes
        time.sleep(TIMEOUT_S / 2)
        for c in slow:
            try:
                c.sendall(b"a")
            except OSError:
                pass
    assert all(_closed_by_server(c, 10 * TIMEOUT_S) for c in idle + slow)
    for c in idle + slow:
        c.close()
    # the server still serves, and honest clients were never starved for long
    assert httpx.get(f"{base}/v1/status", timeout=10).status_code == 200

    # 4. parameters out of their documented range are refused, not parsed
    for path in ("/v1/events?limit=" + "9" * 40, "/v1/blocks/" + "9" * 40, "/v1/accounts/" + "a" * 10_000):
        r = httpx.get(base + path, timeout=10)
        assert r.status_code in (422, 414, 431) or r.status_code == 404 and "a" * 10_000 in path, path

    # 5. event streams are capped; the 33rd is told to come back later
    streams = [httpx.Client(base_url=base, timeout=30) for _ in range(33)]
    responses = []
    try:
        for c in streams:
            req = c.build_request("GET", "/v1/events")
            responses.append(c.send(req, stream=True))
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 32 and statuses[-1] == 429
    finally:
        for r in responses:
            r.close()
        for c in streams:
            c.close()

    # the process's memory after all of it: bounded by the body budget, not by the input
    grown = _rss(proc.pid) - baseline
    assert grown < 96 * MiB, f"resident memory grew by {grown / MiB:.0f} MiB"
    assert proc.poll() is None


def test_without_the_request_deadline_idle_connections_are_held(tmp_path_factory):
    """Removal test: with uvicorn's defaults (no deadline for a first request), idle and
    slow-loris connections stay open as long as their clients like."""
    for _proc, port, _base in _start(tmp_path_factory, "unguarded"):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        try:
            assert not any(_closed_by_server(c, 0.2) for c in idle[:-1])
            # held three times as long as the guarded server's deadline
            assert not _closed_by_server(idle[-1], 3 * TIMEOUT_S)
        finally:
            for c in idle:
                c.close()
