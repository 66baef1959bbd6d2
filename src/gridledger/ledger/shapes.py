"""Shapes of one module's records that several others read (structural protocols: the
owning module's own records satisfy them, no module imports another's package).

One definition each, so the modules that read a market trade agree on what it is.
"""

from __future__ import annotations

from typing import Protocol


class Trade(Protocol):
    """A market trade: who sold to whom, and how much (Wh)."""

    @property
    def buyer(self) -> bytes: ...
    @property
    def seller(self) -> bytes: ...
    @property
    def energy_wh(self) -> int: ...


class SettledTrade(Trade, Protocol):
    """A market trade with what settlement found (None before settlement): the seller's
    metered export and the buyer's metered import allocated to it (Wh), and the
    compensation the short party paid (micro-units)."""

    @property
    def delivered_wh(self) -> int | None: ...
    @property
    def received_wh(self) -> int | None: ...
    @property
    def compensation_micro(self) -> int | None: ...
