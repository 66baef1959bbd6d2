"""What the flexibility module needs from other modules (wired in
``ledger/modules/catalog.py``).

The DSO is whoever holds the role ``dso`` (the envelope's role check): a single key today,
a k-of-n committee of DSO nodes tomorrow, with nothing here to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gridledger.ledger.context import BlockContext
from gridledger.ledger.state import State

Reason = Literal["non_delivery"]
"""The reputation change flexibility causes: energy ordered and paid for, not delivered."""


class Holder(Protocol):
    """A registered identity, as far as flexibility cares."""

    @property
    def roles(self) -> tuple[str, ...]: ...
    @property
    def cp(self) -> str | None: ...


class Registry(Protocol):
    """Who holds which connection point; VEN reporting keys are registered as identities
    with the single role ``ven`` (registry). A pseudonym (role ``pseudonym``) holds a
    stand-in cp and acts only in the slots its certificate names (``require_in_slot``)."""

    def participant(self, state: State, addr: bytes) -> Holder | None: ...
    def cp_holder(self, state: State, cp: str) -> bytes | None: ...
    def require_in_slot(self, state: State, addr: bytes, slot: int) -> None:
        """Raises ``pseudonym-slot`` if ``addr`` is a pseudonym certified for other slots."""
        ...
    def put_participant(self, state: State, addr: bytes, record: Mapping[str, Any]) -> None: ...


class Bank(Protocol):
    """The DSO's escrow and the members' delivery deposits (bank locks)."""

    def locked(self, state: State, addr: bytes) -> int: ...
    def lock(self, state: State, addr: bytes, amount: int) -> None: ...
    def unlock(self, state: State, addr: bytes, amount: int) -> None: ...
    def pay_from_locked(self, state: State, src: bytes, dst: bytes, amount: int) -> None: ...


class Reputation(Protocol):
    """Sanctions for flexibility ordered and not delivered (reputation)."""

    def tier_of(self, state: State, addr: bytes) -> str: ...
    def adjust(self, state: State, addr: bytes, reason: Reason, slot: int,
               times: int = 1) -> dict[str, Any]: ...


class Reading(Protocol):
    """One connection point's energy in one slot, as settlement trusts it."""

    @property
    def import_wh(self) -> int: ...
    @property
    def export_wh(self) -> int: ...


class Metering(Protocol):
    """The readings delivery is measured by: the meter's, or the DSO's network estimate
    when false-data detection flagged it (metering)."""

    def trusted_reading_of(self, state: State, slot: int, cp: str) -> Reading | None: ...


class Firmware(Protocol):
    """Whether a connection point's meter is quarantined (the firmware registry): its
    readings measure delivery only through the DSO's estimate, so it takes no new offer."""

    def check_trading(self, state: State, cp: str) -> None:
        """Raises ``meter-quarantined`` if the cp's meter is quarantined."""
        ...


@dataclass(frozen=True)
class Sanction:
    """One offer's flexibility sanction at its request's final settlement: ``causes``
    (shortfall beyond tolerance, and/or faults) times ``non_delivery`` on ``member``; the
    evidence is the request, the offer and the settlement's figures."""

    request: bytes
    offer: bytes
    member: bytes
    cp: str
    first_slot: int
    last_slot: int
    activated_wh: int
    delivered_wh: int
    shortfall_wh: int
    penalty_micro: int
    faults: int
    causes: int


class PseudonymDisputes(Protocol):
    """Where a sanction of a pseudonym becomes a recorded dispute its trustees may open
    (privacy, ``privacy/flexibility.py``): the pseudonym's loss then follows its owner."""

    def record(self, state: State, ctx: BlockContext, s: Sanction,
               events: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class Deps:
    """The flexibility module's dependencies, as the catalog wires them."""

    bank: Bank
    registry: Registry
    reputation: Reputation
    metering: Metering
    firmware: Firmware
    disputes: PseudonymDisputes | None = None
    """None: a chain whose sanctions end with the address (no privacy module wired)."""
