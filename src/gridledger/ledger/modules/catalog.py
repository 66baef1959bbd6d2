"""The modules of the current chain version, in execution order, wired to each other.

This is the one place where a module meets another: each ``build`` takes the small
protocols the module declares in its ``expected.py``, and gets here the keeper that
implements them (a keeper module satisfies a ``typing.Protocol`` structurally; Cosmos SDK's
app wiring). Order matters only for hooks: the market's end-of-block clearing and
settlement run after every transaction of the block; genesis runs registry, bank, then
governance parameters.

A future chain version (a module upgraded at a height by governance) is a second list
built here; ``Application`` takes whichever list the height calls for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridledger.ledger.module import Module
from gridledger.ledger.modules import (
    bank,
    certificates,
    disputes,
    firmware,
    governance,
    market,
    metering,
    privacy,
    registry,
    reputation,
)
from gridledger.ledger.modules.bank import keeper as bank_keeper
from gridledger.ledger.modules.disputes import keeper as disputes_keeper
from gridledger.ledger.modules.market import keeper as market_keeper
from gridledger.ledger.modules.metering import keeper as metering_keeper
from gridledger.ledger.modules.registry import keeper as registry_keeper
from gridledger.ledger.modules.reputation import keeper as reputation_keeper
from gridledger.ledger.state import State


def modules() -> list[Module]:
    """Every module of the current chain version, in execution order."""
    return [
        registry.build(reputation=reputation_keeper),
        bank.build(registry=registry_keeper),
        governance.build(valset=registry_keeper),
        reputation.build(registry=registry_keeper),
        firmware.build(authorities=registry_keeper),
        metering.MODULE,
        market.MODULE,
        disputes.MODULE,
        privacy.build(bank=bank_keeper, registry=registry_keeper, reputation=reputation_keeper,
                      metering=metering_keeper, market=market_keeper, disputes=disputes_keeper),
        certificates.build(registry=registry_keeper, market=_SettledTrades(),
                           metering=metering_keeper),
    ]


@dataclass(frozen=True)
class _Trade:
    seller: bytes
    buyer: bytes
    delivered_wh: int | None


class _SettledTrades:
    """The market keeper's settled trades as typed reads (certificates' ``Market``).
    Temporary: the market's typed ``Trade`` records satisfy the protocol directly once the
    market module is converted; then this goes and ``market=market_keeper`` is passed."""

    @staticmethod
    def settled_slots(state: State) -> list[tuple[int, int]]:
        return market_keeper.settled_slots(state)

    @staticmethod
    def trades_of_slot(state: State, slot: int) -> Sequence[_Trade]:
        return [_Trade(t["seller"], t["buyer"], t.get("delivered_wh"))
                for t in market_keeper.trades_of_slot(state, slot)]
