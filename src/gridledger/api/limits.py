"""Bounded inputs for the HTTP API: body sizes enforced while streaming, a memory budget for
bodies in flight, and connections that must deliver their request in time.

``BodyLimit`` (ASGI middleware) reads a request body chunk by chunk and answers 413 the
moment it passes the route's limit (or at once, from ``Content-Length``), so a 400 MB POST
costs at most the limit in memory, never the body. All bodies in flight share one budget;
past it, new bodies get 503 until memory is released.

``GuardedH11Protocol`` (uvicorn's h11 protocol) closes a connection that has not delivered a
complete request within ``request_timeout_s`` of opening (or of its previous response): idle
TCP connections and slow-loris clients hold nothing for long. Uvicorn itself closes idle
keep-alive connections (``timeout_keep_alive``) and answers 503 past ``limit_concurrency``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from gridledger.listen import ServeError as ServeError  # raised here too; re-exported
from gridledger.listen import listening_socket

DEFAULT_BODY_LIMIT = 4 * 1024  # bytes, for routes that take no body
BODY_BUDGET_BYTES = 64 * 1024 * 1024  # all request bodies held at once


async def _reject(send: Send, status: int, rule: str, detail: str) -> None:
    body = json.dumps({"rule": rule, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Enforce per-route body limits while streaming, within a shared memory budget."""

    def __init__(self, app: ASGIApp, limits: Mapping[tuple[str, str], int],
                 default: int = DEFAULT_BODY_LIMIT, budget: int = BODY_BUDGET_BYTES) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default = default
        self.budget = budget
        self.held = 0  # bytes of request bodies buffered right now (all requests)
        self._lock = threading.Lock()  # TestClient runs apps on other threads

    def _take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.budget:
                return False
            self.held += n
            return True

    def _give(self, n: int) -> None:
        with self._lock:
            self.held -= n

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get((scope["method"], scope["path"]), self.default)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _reject(send, 400, "bad-request", "content-length is not a number")
                return
            if int(length) > limit:
                await _reject(send, 413, "oversize", f"request body over {limit} bytes")
                return
        chunks: list[bytes] = []
        size = taken = 0
        try:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await _reject(send, 413, "oversize", f"request body over {limit} bytes")
                    return
                if chunk and not self._take(len(chunk)):
                    await _reject(send, 503, "server-busy",
                                  "too many request bytes in flight; retry shortly")
                    return
                taken += len(chunk)
                chunks.append(chunk)
                if not msg.get("more_body", False):
                    break
            body = b"".join(chunks)
            chunks = []
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()  # disconnect notifications after the body
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self._give(taken)


class GuardedH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol with a deadline for each complete request."""

    request_timeout_s = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()  # no complete request in time: idle or too slow

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.more_body and not self.cycle.response_complete:
            self._disarm()  # the request is in; the application has it

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection must arrive in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def make_server(app: ASGIApp, host: str, port: int, request_timeout_s: float = 10.0,
                max_connections: int = 256) -> Any:
    """A uvicorn server for ``app`` with every connection-level bound set."""
    import uvicorn

    protocol = type("Guarded", (GuardedH11Protocol,), {"request_timeout_s": request_timeout_s})
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                            http=protocol, timeout_keep_alive=5,
                            limit_concurrency=max_connections, h11_max_incomplete_event_size=16 * 1024)
    return uvicorn.Server(config)


class ServerThread:
    """A ``make_server`` server running in a daemon thread on a socket bound *here*, in the
    caller's thread: a port in use is a ``ServeError`` at once (uvicorn binding inside its
    thread ended only that thread and left a node running with no API, or a dashboard
    failing after the run's setup). ``error`` holds what ended the thread, if anything but
    ``stop``; ``alive`` is False once it has ended."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, name: str = "api",
                 start_timeout_s: float = 10.0, graceful_s: float | None = None,
                 **bounds: Any) -> None:
        import time

        self.server = make_server(app, host, port, **bounds)
        if graceful_s is not None:
            self.server.config.timeout_graceful_shutdown = graceful_s
        sock = listening_socket(host, port)
        self.host, self.port = host, sock.getsockname()[1]
        self._sock = sock
        self.error: BaseException | None = None
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"the server on {host}:{self.port} did not start"
                                 + (f": {self.error!r}" if self.error is not None else ""))
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # kept for the owner: the thread has no one to tell
            self.error = exc
        finally:
            self._sock.close()

    @property
    def alive(self) -> bool:
        """True while the server thread runs; False once it ended (``stop`` or a failure)."""
        return self.thread.is_alive()

    @property
    def failed(self) -> bool:
        """The server ended without ``stop`` being asked: the owner should not run on without it."""
        return not self._stopping and not self.thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        self.server.should_exit = True
        self.thread.join(timeout=timeout_s)
