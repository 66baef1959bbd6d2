"""The ``gridledger`` command."""
