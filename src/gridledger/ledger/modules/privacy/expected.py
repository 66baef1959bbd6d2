"""What the privacy module needs from other modules (wired in ``ledger/modules/catalog.py``).

Each protocol lists exactly the calls this module makes; the catalog passes the module
keepers that implement them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gridledger.ledger.context import TxContext
from gridledger.ledger.state import State


class Bank(Protocol):
    """Money: pools, allowances, claims, roaming holds."""

    def balance(self, state: State, addr: bytes) -> int: ...
    def move(self, state: State, src: bytes, dst: bytes, amount: int) -> None: ...


class Holder(Protocol):
    """A registered identity, as far as this module cares."""

    @property
    def alg(self) -> str: ...
    @property
    def pk(self) -> bytes: ...
    @property
    def roles(self) -> tuple[str, ...]: ...
    @property
    def cp(self) -> str | None: ...


class Registry(Protocol):
    """Identities: members, trustees, the DSO, meters; pseudonyms and their meters are
    registered here."""

    def participant(self, state: State, addr: bytes) -> Holder | None: ...
    def put_pseudonym(self, state: State, addr: bytes, alg: str, pk: bytes, cp: str,
                      valid_slots: tuple[int, int], meter: bytes, meter_alg: str,
                      meter_pk: bytes) -> None: ...
    def meter_of_cp(self, state: State, cp: str) -> bytes | None: ...
    def cp_holder(self, state: State, cp: str) -> bytes | None: ...
    def retire_pseudonym(self, state: State, addr: bytes) -> bool: ...


class Reputation(Protocol):
    """Sanctions follow the owner of a pseudonym; tickets follow the member's tier."""

    def tier_of(self, state: State, addr: bytes) -> str: ...
    def adjust(self, state: State, addr: bytes, reason: Any, slot: int,
               times: int = 1) -> dict[str, Any]: ...
    def carry_penalty(self, state: State, owner: bytes, pseudonym: bytes,
                      slot: int) -> dict[str, Any] | None: ...
    def forget(self, state: State, addr: bytes) -> bool: ...
    def drop(self, state: State, addr: bytes) -> bool: ...


class Reading(Protocol):
    """A recorded meter reading."""

    @property
    def import_wh(self) -> int: ...
    @property
    def export_wh(self) -> int: ...


class Metering(Protocol):
    """The readings settlement used (what a secure aggregate is checked against)."""

    def reading_of(self, state: State, slot: int, cp: str) -> Reading | None: ...


class Market(Protocol):
    """Whether an epoch's slots are settled (its pseudonyms' balances are final)."""

    def unsettled_slots(self, state: State) -> list[int]: ...


class Firmware(Protocol):
    """The meter firmware registry: a pseudonym's firmware of record is set at registration
    from the image its meter attested (rules and quarantine are the firmware module's)."""

    def check_reading(self, state: State, ctx: TxContext, cp: str, meter: bytes,
                      firmware: bytes, *, sealed: bool = False,
                      slot: int | None = None) -> str | None: ...

    def open_image(self, state: State, ctx: TxContext, cp: str, image: bytes, salt: bytes, *,
                   announce: bool = True) -> Any: ...

    def forget_meter(self, state: State, cp: str) -> None: ...


class Disputes(Protocol):
    """Decided trade disputes (a lost one opens the pseudonym at fault)."""

    def get_decision(self, state: State, slot: int, index: int,
                     claim: str) -> Mapping[str, Any] | None: ...


class Finding(Protocol):
    """A surveillance finding: its id, kind, the slot (and, for a wash trade, the slots) it
    is about, the block height that made it, and the addresses it names."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def slot(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def subjects(self) -> Sequence[bytes]: ...
    @property
    def slots(self) -> Sequence[int] | None: ...


class Surveillance(Protocol):
    """Market-abuse findings (a finding naming a pseudonym is a recorded dispute)."""

    def count(self, state: State) -> int: ...
    def finding(self, state: State, fid: int) -> Finding | None: ...


class FlexSanction(Protocol):
    """A flexibility offer's sanction at its request's final settlement (flex): the member
    it charged ``causes`` times ``non_delivery`` (shortfall beyond tolerance, faults), and
    the evidence — request, offer, the slots and the settlement figures."""

    @property
    def request(self) -> bytes: ...
    @property
    def offer(self) -> bytes: ...
    @property
    def member(self) -> bytes: ...
    @property
    def cp(self) -> str: ...
    @property
    def first_slot(self) -> int: ...
    @property
    def last_slot(self) -> int: ...
    @property
    def activated_wh(self) -> int: ...
    @property
    def delivered_wh(self) -> int: ...
    @property
    def shortfall_wh(self) -> int: ...
    @property
    def penalty_micro(self) -> int: ...
    @property
    def faults(self) -> int: ...
    @property
    def causes(self) -> int: ...
