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


def modules() -> list[Module]:
    """Every module of the current chain version, in execution order."""
    return [
        registry.build(reputation=reputation_keeper),
        bank.build(registry=registry_keeper),
        governance.build(valset=registry_keeper),
        reputation.build(registry=registry_keeper),
        firmware.build(authorities=registry_keeper),
        metering.build(registry=registry_keeper, reputation=reputation_keeper),
        market.build(bank=bank_keeper, registry=registry_keeper, reputation=reputation_keeper,
                     metering=metering_keeper),
        disputes.build(market=market_keeper, metering=metering_keeper, registry=registry_keeper,
                       bank=bank_keeper, reputation=reputation_keeper),
        privacy.build(bank=bank_keeper, registry=registry_keeper, reputation=reputation_keeper,
                      metering=metering_keeper, market=market_keeper, disputes=disputes_keeper),
        certificates.build(registry=registry_keeper, market=market_keeper,
                           metering=metering_keeper),
    ]

