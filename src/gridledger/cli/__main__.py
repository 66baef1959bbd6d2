"""``python -m gridledger.cli``: the same as the ``gridledger`` command."""

from gridledger.cli.main import main

main()
