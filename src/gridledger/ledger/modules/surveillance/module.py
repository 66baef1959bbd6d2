"""Market surveillance: ``build(market, reputation, metering, registry, bank) -> Module``
(wired in the catalog, BEFORE the market, so its end-of-block hook sees each slot's final book first)."""

from __future__ import annotations

from gridledger.ledger.module import Module
from gridledger.ledger.modules.surveillance.errors import RULES
from gridledger.ledger.modules.surveillance.expected import (
    Bank,
    Market,
    Metering,
    Registry,
    Reputation,
)
from gridledger.ledger.modules.surveillance.hooks import init_genesis, make_end_block
from gridledger.ledger.modules.surveillance.invariants import INVARIANTS
from gridledger.ledger.modules.surveillance.views import VIEWS

NAME = "surveillance"
VERSION = 1


def build(market: Market, reputation: Reputation, metering: Metering,
          registry: Registry, bank: Bank) -> Module:
    """Surveillance wired to ``market`` (book, trades, offer mitigation, settlement),
    ``metering`` and ``registry`` (settled exports and their holders), ``bank`` (the money
    that could back an offer's deposit) and ``reputation`` (sanctions, deposit tiers). No
    messages: findings come from block execution alone."""
    return Module(
        name=NAME,
        version=VERSION,
        rules=RULES,
        init_genesis=init_genesis,
        end_block=make_end_block(market, reputation, metering, registry, bank),
        invariants=INVARIANTS,
        views=VIEWS,
    )
