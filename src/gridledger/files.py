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
