"""What the firmware registry needs from other modules (wired in ``ledger/modules/catalog.py``).

Only "is this sender the DSO / a validator" and "which connection point is this meter
bound to": a DSO run as a k-of-n committee of DSO nodes is still one registry identity
with role ``dso``, so it slots in without a change here.
"""

from __future__ import annotations

from typing import Protocol

from gridledger.ledger.state import State


class Device(Protocol):
    """A registered identity, as far as the firmware registry cares."""

    @property
    def meter_of(self) -> str | None: ...


class Authorities(Protocol):
    """Who approves (the DSO, the active validator set) and where meters sit (registry)."""

    def has_role(self, state: State, addr: bytes, role: str) -> bool: ...
    def validator_set(self, state: State) -> list[bytes]: ...
    def participant(self, state: State, addr: bytes) -> Device | None: ...
