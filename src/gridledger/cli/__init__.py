"""The ``gridledger`` command."""

import os as _os
import signal as _signal
import sys as _sys


def _interrupted_while_starting(_signum: int, _frame: object) -> None:
    """Ctrl-C before the entry point runs (while the command's modules import): exit 130
    quietly, as a Ctrl-C inside a command does, not with a traceback through the imports."""
    _sys.stderr.write("interrupted\n")
    raise SystemExit(130)


# Only for the command itself (the ``gridledger`` script, or ``python -m gridledger.cli…``
# while runpy imports the package: argv[0] is "-m" then), not for a program that imports
# this package (pytest keeps its own Ctrl-C), and only when Ctrl-C would raise
# KeyboardInterrupt (not when the parent ignores SIGINT). main() restores Python's handler.
if (_os.path.basename(_sys.argv[0] if _sys.argv else "") in ("gridledger", "-m")
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler):
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)
