"""What every ``gridledger`` command shares for its arguments: exit codes, the error line,
and checks of hex values (issue 18.11: every command validates its arguments before any work,
names the flag at fault and exits 2 without a traceback)."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

USAGE, FAILURE = 2, 1
"""Exit codes: 2 = the command line is wrong (a flag's value, a file that is not what the
command needs), named in the message; 1 = the work failed (verification found a bad block,
the node is unreachable, a transaction failed, a wrong passphrase)."""

err = Console(stderr=True, soft_wrap=True)  # messages stay on one line (paths, grep)


def fail(msg: str, code: int = USAGE) -> NoReturn:
    """Print ``error: msg`` on stderr and exit with ``code`` (2 = usage, 1 = failure)."""
    # escaped: a message naming "[community] hours" or "ids [a, b]" is text, not markup
    err.print(f"[bold red]error:[/] {escape(msg)}")
    raise typer.Exit(code)


def hex32(flag: str, value: str, what: str = "value") -> bytes:
    """``value`` as 32 bytes from 64 hex digits; exits 2 naming ``flag`` otherwise."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        fail(f"{flag} must be a hex {what} (64 hex digits), got {value!r}")
    if len(raw) != 32:
        fail(f"{flag} must be a 32-byte {what} (32 bytes = 64 hex digits), got {len(raw)} bytes")
    return raw
