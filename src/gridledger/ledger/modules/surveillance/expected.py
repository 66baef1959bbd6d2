"""What surveillance reads and does in other modules (wired in ``ledger/modules/catalog.py``).

It reads the market's book and trades and may set a failing offer's limit to its reference
level before the slot clears (the market's own keeper does the write); it sanctions
through reputation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from gridledger.ledger.shapes import Trade as Fill
from gridledger.ledger.state import State

__all__ = ["BookOrder", "Fill", "Market", "Reputation"]

Reason = Literal["market_abuse"]
"""The reputation change surveillance causes."""


class BookOrder(Protocol):
    """An order on a slot's book (market)."""

    @property
    def owner(self) -> bytes: ...
    @property
    def side(self) -> str: ...
    @property
    def energy_wh(self) -> int: ...
    @property
    def price_micro_per_kwh(self) -> int: ...
    @property
    def seq(self) -> int: ...


class Market(Protocol):
    """The book, the trades, and offer mitigation (market)."""

    def open_slots(self, state: State) -> list[int]: ...
    def orders_of_slot(self, state: State, slot: int) -> Sequence[tuple[bytes, BookOrder]]: ...
    def trades_of_slot(self, state: State, slot: int) -> Sequence[Fill]: ...
    def reprice_order(self, state: State, slot: int, oid: bytes,
                      price_micro_per_kwh: int) -> None: ...


class Reputation(Protocol):
    """Graduated sanctions (reputation)."""

    def adjust(self, state: State, addr: bytes, reason: Reason, slot: int,
               times: int = 1) -> dict[str, Any]: ...
