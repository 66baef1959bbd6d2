"""What the certificates module needs from other modules (wired in
``ledger/modules/catalog.py``).

Certificates are issued from what settlement used, so the module reads the market's settled
trades and the metering module's readings and flags; it never writes another module's keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gridledger.ledger.state import State


class Holder(Protocol):
    """A registered identity, as far as certificates care."""

    @property
    def roles(self) -> tuple[str, ...]: ...
    @property
    def cp(self) -> str | None: ...
    @property
    def meter_of(self) -> str | None: ...


class Registry(Protocol):
    """Who holds a connection point, who a meter is (registry)."""

    def participant(self, state: State, addr: bytes) -> Holder | None: ...
    def cp_holder(self, state: State, cp: str) -> bytes | None: ...


class SettledTrade(Protocol):
    """A trade after settlement: ``delivered_wh`` is the seller's metered energy allocated
    to it (None before settlement)."""

    @property
    def seller(self) -> bytes: ...
    @property
    def buyer(self) -> bytes: ...
    @property
    def delivered_wh(self) -> int | None: ...


class Market(Protocol):
    """Which slots have settled, and what each trade delivered (market)."""

    def settled_slots(self, state: State) -> list[tuple[int, int]]: ...
    def trades_of_slot(self, state: State, slot: int) -> Sequence[SettledTrade]: ...


class Reading(Protocol):
    """One connection point's metered energy in one slot."""

    @property
    def cp(self) -> str: ...
    @property
    def import_wh(self) -> int: ...
    @property
    def export_wh(self) -> int: ...
    @property
    def quarantine(self) -> str | None:
        """Why the firmware registry had the meter quarantined when it sent the reading."""


class Metering(Protocol):
    """Signed readings, the DSO's false-data flags, and what settlement billed (metering)."""

    def reading_of(self, state: State, slot: int, cp: str) -> Reading | None: ...
    def readings_for_slot(self, state: State, slot: int) -> Sequence[Reading]: ...
    def flag_of(self, state: State, slot: int, cp: str) -> object | None: ...
    def trusted_readings_for_slot(self, state: State, slot: int) -> Sequence[Reading]: ...
