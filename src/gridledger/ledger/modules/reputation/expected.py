"""What reputation needs from other modules (wired in ``ledger/modules/catalog.py``)."""

from __future__ import annotations

from typing import Protocol

from gridledger.ledger.state import State


class Holder(Protocol):
    @property
    def roles(self) -> tuple[str, ...]: ...


class Registry(Protocol):
    """Who a sender is: validators are not charged for rejected transactions."""

    def participant(self, state: State, addr: bytes) -> Holder | None: ...
