"""A listening TCP socket, bound in the caller's thread (standard library only: the CLI checks
a port with it before any work, ``api.limits.ServerThread`` serves on it)."""

from __future__ import annotations

import socket


class ServeError(OSError):
    """``host:port`` cannot be listened on (not resolvable, in use, not permitted), or a
    server on it did not start. ``resolving``: the host name itself failed."""

    def __init__(self, message: str, resolving: bool = False) -> None:
        super().__init__(message)
        self.resolving = resolving


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A socket bound to ``host:port`` and listening (``SO_REUSEADDR``, as uvicorn binds; port
    0: the kernel picks one). Raises ``ServeError`` naming the address."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise ServeError(f"cannot resolve {host!r}: {exc}", resolving=True) from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                         "is another program using it?") from exc
    return sock
