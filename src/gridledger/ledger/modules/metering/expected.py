"""What metering needs from other modules (wired in ``ledger/modules/catalog.py``)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from gridledger.ledger.context import TxContext
from gridledger.ledger.state import State


class Identity(Protocol):
    """A registered identity, as far as metering cares: the cp a meter is bound to."""

    @property
    def meter_of(self) -> str | None: ...


class Registry(Protocol):
    """Who a meter is, who holds a connection point, which meter it has (registry)."""

    def participant(self, state: State, addr: bytes) -> Identity | None: ...
    def cp_holder(self, state: State, cp: str) -> bytes | None: ...
    def meter_of_cp(self, state: State, cp: str) -> bytes | None: ...
    def require_in_slot(self, state: State, addr: bytes, slot: int) -> None:
        """Raises the registry's ``pseudonym-slot`` for a pseudonym outside its slots."""


class Reputation(Protocol):
    """A flagged reading costs its holder reputation (reputation module)."""

    def adjust(self, state: State, addr: bytes, reason: Literal["missing_reading"], slot: int,
               times: int = 1) -> dict[str, Any]: ...


class Firmware(Protocol):
    """Is the meter's attested firmware trusted (the firmware registry)."""

    def check_reading(self, state: State, ctx: TxContext, cp: str, meter: bytes,
                      firmware: bytes) -> str | None: ...
