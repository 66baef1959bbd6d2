"""The privacy module: ``build(<dependencies>) -> Module`` (wired in ``catalog.py``)."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy import types as t
from gridledger.ledger.modules.privacy.aggregation import Aggregation
from gridledger.ledger.modules.privacy.config import parse_config
from gridledger.ledger.modules.privacy.errors import RULES
from gridledger.ledger.modules.privacy.expected import (
    Bank,
    Disputes,
    Firmware,
    Market,
    Metering,
    Registry,
    Reputation,
    Surveillance,
)
from gridledger.ledger.modules.privacy.invariants import (
    pool_accounted,
    tickets_cover_pseudonyms,
)
from gridledger.ledger.modules.privacy.market import MarketDisputes
from gridledger.ledger.modules.privacy.openings import Openings
from gridledger.ledger.modules.privacy.pool import MEMBER_ROLES, Pool
from gridledger.ledger.modules.privacy.roaming import Roaming
from gridledger.ledger.modules.privacy.views import VIEWS
from gridledger.ledger.state import State

NAME = "privacy"
VERSION = 2


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    raw = genesis.get("privacy")
    if raw is not None:
        keeper.put_config(state, parse_config(raw))


def build(bank: Bank, registry: Registry, reputation: Reputation, metering: Metering,
          market: Market, disputes: Disputes, surveillance: Surveillance,
          firmware: Firmware | None = None) -> Module:
    """The privacy module wired to the keepers it uses (``expected.py``)."""
    pool = Pool(bank, registry, reputation, market, firmware)
    openings = Openings(registry, reputation, disputes, pool)
    aggregation = Aggregation(registry, reputation, metering)
    roaming = Roaming(bank, registry)
    findings = MarketDisputes(surveillance, reputation)

    def end_block(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
        cfg = keeper.config(state)
        if cfg is None:
            return
        findings.step(state, ctx, events)
        aggregation.step(state, ctx, cfg, events)
        roaming.step(state, ctx, events)
        pool.step(state, ctx, cfg, events)

    trustee, dso = frozenset({"trustee"}), frozenset({"dso"})
    return Module(
        name=NAME,
        version=VERSION,
        messages=(
            MsgKind(t.JOIN, t.parse_join, pool.join, MEMBER_ROLES),
            MsgKind(t.ATTEST, t.parse_attest, pool.attest, dso),
            MsgKind(t.CERTIFY, t.parse_certify, pool.certify, trustee),
            MsgKind(t.REGISTER, t.parse_register, pool.register),
            MsgKind(t.METER_IMAGE, t.parse_meter_image, pool.meter_image, dso),
            MsgKind(t.CLAIM, t.parse_claim, pool.claim, MEMBER_ROLES),
            MsgKind(t.CARRY, t.parse_carry, pool.carry, frozenset({"pseudonym"})),
            MsgKind(t.REQUEST_OPENING, t.parse_request_opening, openings.request_opening),
            MsgKind(t.ESCROW, t.parse_escrow, openings.escrow),
            MsgKind(t.RELEASE, t.parse_release, openings.release, trustee),
            MsgKind(t.ATTRIBUTE, t.parse_attribute, openings.attribute),
            MsgKind(t.PARTIAL, t.parse_partial, aggregation.partial, frozenset({"aggregator"})),
            MsgKind(t.AGGREGATOR_EVIDENCE, t.parse_aggregator_evidence, aggregation.evidence),
            MsgKind(t.ROAMING_AUTHORISE, t.parse_roaming_authorise, roaming.authorise, dso),
            MsgKind(t.ROAMING_CHARGE, t.parse_roaming_charge, roaming.charge, dso),
        ),
        rules=RULES,
        init_genesis=init_genesis,
        end_block=end_block,
        invariants=(tickets_cover_pseudonyms, pool_accounted(bank)),
        views=VIEWS,
    )
