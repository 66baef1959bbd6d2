"""The ``gridledger`` command."""

import signal as _signal
import sys as _sys


def _interrupted_while_starting(_signum: int, _frame: object) -> None:
    """Ctrl-C before the entry point runs (while the command's modules import): exit 130
    quietly, as a Ctrl-C inside a command does, not with a traceback through the imports."""
    _sys.stderr.write("interrupted\n")
    raise SystemExit(130)


# only when Ctrl-C would raise KeyboardInterrupt (not when the parent ignores SIGINT, not when
# imported by a program that chose its own handler); main() restores Python's handler
if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)
