"""What the market needs from other modules (wired in ``ledger/modules/catalog.py``).

Each protocol lists exactly what the market calls; the catalog passes the modules' keepers,
which satisfy them structurally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gridledger.ledger.state import State

Reason = Literal["trade_settled", "non_delivery", "missing_reading", "non_payment",
                 "commitment_forfeited"]
"""The reputation changes the market causes."""


class Trader(Protocol):
    """A registered identity, as far as the market cares."""

    @property
    def roles(self) -> tuple[str, ...]: ...
    @property
    def cp(self) -> str | None: ...


class Registry(Protocol):
    """Who may trade, and who holds which connection point (registry)."""

    def participant(self, state: State, addr: bytes) -> Trader | None: ...
    def cp_holder(self, state: State, cp: str) -> bytes | None: ...
    def cp_of(self, state: State, addr: bytes) -> str | None: ...
    def require_in_slot(self, state: State, addr: bytes, slot: int) -> None:
        """Raises the registry's ``pseudonym-slot`` for a pseudonym outside its slots."""


class Bank(Protocol):
    """Escrow, deposits, retail holds and payments (bank)."""

    def balance(self, state: State, addr: bytes) -> int: ...
    def locked(self, state: State, addr: bytes) -> int: ...
    def move(self, state: State, src: bytes, dst: bytes, amount: int) -> None: ...
    def lock(self, state: State, addr: bytes, amount: int) -> None: ...
    def unlock(self, state: State, addr: bytes, amount: int) -> None: ...
    def pay_from_locked(self, state: State, src: bytes, dst: bytes, amount: int) -> None: ...


class Reputation(Protocol):
    """Sanction tiers and score changes (reputation)."""

    def tier_of(self, state: State, addr: bytes) -> str: ...
    def deposit_pct(self, state: State, addr: bytes) -> int: ...
    def adjust(self, state: State, addr: bytes, reason: Reason, slot: int,
               times: int = 1) -> dict[str, Any]: ...


class MeterReading(Protocol):
    """One connection point's energy in one slot."""

    @property
    def cp(self) -> str: ...
    @property
    def import_wh(self) -> int: ...
    @property
    def export_wh(self) -> int: ...


class Metering(Protocol):
    """The readings settlement bills on (metering)."""

    def trusted_readings_for_slot(self, state: State, slot: int) -> Sequence[MeterReading]: ...
    def pending_slots(self, state: State) -> list[int]: ...
    def mark_settled(self, state: State, slot: int) -> None: ...
    def prune_readings(self, state: State, slot: int) -> None: ...


class Firmware(Protocol):
    """Whether a connection point's meter is quarantined (the firmware registry)."""

    def check_orders(self, state: State, cp: str) -> None:
        """Raises ``meter-quarantined`` if the cp's meter is quarantined, or its sealed
        firmware record (privacy mode) is not covered by the DSO's vouch."""
        ...


@dataclass(frozen=True)
class Deps:
    """The market's dependencies, as the catalog wires them."""

    bank: Bank
    registry: Registry
    reputation: Reputation
    metering: Metering
    firmware: Firmware
