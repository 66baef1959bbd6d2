"""Length-prefixed pickle frames between this process and a worker it started (the demo's
validator hosts, the grid's area workers): an 8-byte big-endian length, then the pickle.
Both ends are this package, on one machine, over the worker's own pipes — never a network
or untrusted input (pickle executes what it reads)."""

from __future__ import annotations

import contextlib
import io
import pickle
import subprocess
from typing import IO, Any


def frame_bytes(obj: Any, pickler: type[pickle.Pickler] = pickle.Pickler) -> bytes:
    """``obj`` as one frame's bytes (length prefix included), for a writer of its own."""
    buf = io.BytesIO()
    buf.write(bytes(8))
    pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    view = buf.getbuffer()
    view[:8] = (len(view) - 8).to_bytes(8, "big")
    del view
    return buf.getvalue()


def send_frame(stream: IO[bytes], obj: Any,
               pickler: type[pickle.Pickler] = pickle.Pickler) -> None:
    """Write ``obj`` as one frame and flush (``pickler``: a subclass with its own reducers)."""
    stream.write(frame_bytes(obj, pickler))
    stream.flush()


def recv_frame(stream: IO[bytes]) -> Any:
    """Read one frame. Raises ``EOFError`` when the other end closed the stream."""
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    return pickle.loads(stream.read(int.from_bytes(head, "big")))


def reap_worker(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Close a worker's pipes (its read loop ends on EOF), wait ``timeout_s`` for it to exit,
    then SIGKILL it."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
