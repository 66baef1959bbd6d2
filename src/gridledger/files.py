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
