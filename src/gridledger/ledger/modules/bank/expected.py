"""What the bank needs from other modules (wired in ``ledger/modules/catalog.py``)."""

from __future__ import annotations

from typing import Protocol

from gridledger.ledger.state import State


class Holder(Protocol):
    """A registered identity, as far as the bank cares."""

    @property
    def roles(self) -> tuple[str, ...]: ...


class Registry(Protocol):
    """Who may hold money (the registry module)."""

    def participant(self, state: State, addr: bytes) -> Holder | None: ...
