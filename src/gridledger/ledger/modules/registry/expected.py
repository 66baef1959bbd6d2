"""What the registry needs from other modules (wired in ``ledger/modules/catalog.py``)."""

from __future__ import annotations

from typing import Protocol

from gridledger.ledger.state import State


class Reputation(Protocol):
    """Endorsers need a score of at least ``endorse_min_reputation`` (reputation module)."""

    def reputation_of(self, state: State, addr: bytes) -> int: ...
