"""Files written whole: a reader (or a later run) sees the old file or the new one, never half."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``path.name + suffix``); when the block ends
    normally it replaces ``path`` atomically (``os.replace``), on any exception (a full disk,
    a failed check, Ctrl-C) it is removed and ``path`` stays as it was. Parent folders are
    created. Raises what the block or the file system raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FileTooLarge(OSError):
    """A file past the size its kind may have (``read_bounded``)."""


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path`` if it holds at most ``limit`` bytes; ``FileTooLarge`` (naming the
    file, its size and the bound) otherwise, without reading more than ``limit + 1`` bytes —
    an operator's mistyped path to a disk image costs nothing. Other ``OSError``s as ``open``."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        size = Path(path).stat().st_size
        raise FileTooLarge(f"{path}: {size:,} bytes, more than the {limit:,} a {what} may have")
    return data


class FolderInUse(OSError):
    """Another live process holds the folder (``FolderLock``)."""


class FolderLock:
    """An exclusive lock on a folder that one process may run on at a time (a validator's
    store, a NATS cluster's data): ``flock`` on ``folder/name``, which holds the holder's
    pid. The kernel drops it when the holder exits, however it exits (SIGKILL included), so
    a crash never leaves a stale lock."""

    def __init__(self, folder: Path, name: str, what: str) -> None:
        """Take the lock; ``FolderInUse`` naming the holder's pid if another process has it
        (``what`` says what runs there, for the message). Other ``OSError``s as ``open``."""
        import fcntl

        self.path = Path(folder) / name
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise FolderInUse(f"{folder} is in use by another {what} (pid {holder}): one "
                              "process per folder") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Let go (idempotent); the lock file stays, empty of meaning without its flock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
