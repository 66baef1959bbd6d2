"""GridLedger: a post-quantum permissioned ledger and transactive energy market."""

__version__ = "0.1.0"
