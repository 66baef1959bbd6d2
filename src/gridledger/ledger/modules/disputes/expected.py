"""What disputes need from other modules (wired in ``ledger/modules/catalog.py``)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from gridledger.ledger.shapes import SettledTrade
from gridledger.ledger.state import State

__all__ = ["Bank", "Market", "Metering", "Registry", "Reputation", "SettledTrade"]


class SlotState(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def settled_at(self) -> int | None: ...


class Market(Protocol):
    """The trades and slots claims are about (market)."""

    def trade(self, state: State, slot: int, index: int) -> SettledTrade | None: ...
    def slot_record(self, state: State, slot: int) -> SlotState | None: ...


class MeterReading(Protocol):
    @property
    def import_wh(self) -> int: ...
    @property
    def export_wh(self) -> int: ...


class Metering(Protocol):
    """The evidence: readings as settlement used them (metering)."""

    def trusted_reading_of(self, state: State, slot: int, cp: str) -> MeterReading | None: ...


class Registry(Protocol):
    """Whose meter is whose (registry)."""

    def cp_of(self, state: State, addr: bytes) -> str | None: ...


class Bank(Protocol):
    """The dispute fee (bank)."""

    def balance(self, state: State, addr: bytes) -> int: ...
    def move(self, state: State, src: bytes, dst: bytes, amount: int) -> None: ...


class Reputation(Protocol):
    """A lost claim costs reputation (reputation)."""

    def adjust(self, state: State, addr: bytes, reason: Literal["dispute_lost"], slot: int,
               times: int = 1) -> dict[str, Any]: ...
