"""What surveillance reads and does in other modules (wired in ``ledger/modules/catalog.py``).

It reads the market's book and trades and may set a failing offer's limit to its reference
level before the slot clears (the market's own keeper does the write); it reads balances
(what a holder's deposit could back) and sanctions through reputation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from gridledger.ledger.shapes import Trade as Fill
from gridledger.ledger.state import State

__all__ = ["Bank", "BookOrder", "Fill", "Market", "Metering", "Reading", "Registry",
           "Reputation"]

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
    def envelopes_of(self, state: State, slot: int) -> dict[str, tuple[int, int]]: ...
    def settled_slots(self, state: State) -> list[tuple[int, int]]: ...
    def unsettled_slots(self, state: State) -> list[int]: ...


class Reputation(Protocol):
    """Graduated sanctions (reputation), and the deposit multiplier a tier sets."""

    def adjust(self, state: State, addr: bytes, reason: Reason, slot: int,
               times: int = 1) -> dict[str, Any]: ...
    def deposit_pct(self, state: State, addr: bytes) -> int: ...


class Bank(Protocol):
    """Spendable money (bank): what could back a seller's delivery deposit."""

    def balance(self, state: State, addr: bytes) -> int: ...


class Reading(Protocol):
    """A meter's own reading of one slot (metering)."""

    @property
    def cp(self) -> str: ...
    @property
    def export_wh(self) -> int: ...
    @property
    def quarantine(self) -> str | None: ...


class Metering(Protocol):
    """The readings that settled a slot, and the DSO's flags (metering)."""

    def readings_for_slot(self, state: State, slot: int) -> Sequence[Reading]: ...
    def flag_of(self, state: State, slot: int, cp: str) -> object | None: ...


class Registry(Protocol):
    """Who holds a connection point (registry): a member, or a pseudonym's stand-in cp."""

    def cp_holder(self, state: State, cp: str) -> bytes | None: ...
