"""Surveillance at every block: genesis configuration and the end-of-block detectors.

Runs BEFORE the market's end-of-block hook (catalog order), so in the block that clears a
slot it sees the slot's final book (no order, cancel or reveal is accepted in that block:
it is past the gate and the reveal deadline) and can mitigate offers before the market
clears them. The trades of a slot are read one block later (wash window).
"""

from __future__ import annotations

from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.module import BlockHook
from gridledger.ledger.modules.surveillance import keeper
from gridledger.ledger.modules.surveillance.detectors import (
    Impact,
    conduct_and_impact,
    layering,
    observe,
    pair_flows,
    volumes,
    wash_pairs,
)
from gridledger.ledger.modules.surveillance.expected import Market, Reputation
from gridledger.ledger.modules.surveillance.types import (
    BASIS,
    SECTION,
    Config,
    Finding,
    Flows,
    Offer,
    Side,
    Visible,
    parse_config,
)
from gridledger.ledger.params import Params, load_params, slot_of
from gridledger.ledger.state import State

Events = list[dict[str, Any]]


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Store the ``surveillance`` section's thresholds (``{}``: the defaults). No section: no
    surveillance on this chain (every existing chain keeps its roots). Raises
    ``ConfigError`` naming the bad threshold."""
    section = genesis.get(SECTION)
    if section is not None:
        keeper.put_config(state, parse_config(section))


def _side(v: str) -> Side:
    return "buy" if v == "buy" else "sell"


class Surveillance:
    """The detectors wired to the market (book, trades, mitigation) and reputation."""

    def __init__(self, market: Market, reputation: Reputation) -> None:
        self.market = market
        self.reputation = reputation

    def end_block(self, state: State, ctx: BlockContext, events: Events) -> None:
        cfg = keeper.config(state)
        if cfg is None:
            return
        p = load_params(state)
        for slot in keeper.pending(state):
            self._wash(state, ctx, p, cfg, slot, events)
        cleared: list[int] = []
        for slot in self.market.open_slots(state):
            book = self.market.orders_of_slot(state, slot)
            old = keeper.watch(state, slot)
            if old is None and not book:
                continue  # envelopes only: nothing visible to watch
            w = observe(old, volumes(book))
            if ctx.slot_time >= reveal_deadline(slot, p):  # the market clears it next
                self._layering(state, ctx, p, cfg, slot, layering(w, cfg), w.peak_buy_wh,
                               w.peak_sell_wh, events)
                self._withholding(state, ctx, p, cfg, slot, book, events)
                keeper.drop_watch(state, slot)
                cleared.append(slot)
            elif w != old:
                keeper.put_watch(state, slot, w)
        keeper.set_pending(state, cleared)

    # -- findings ------------------------------------------------------------------------
    def _find(self, state: State, ctx: BlockContext, p: Params, finding: Finding,
              events: Events) -> None:
        keeper.add_finding(state, finding)
        events.append(finding.event())
        now = slot_of(ctx.slot_time, p)
        for addr in finding.subjects:
            events.append(self.reputation.adjust(state, addr, "market_abuse", now))

    @staticmethod
    def _next(state: State, ctx: BlockContext, slot: int, subjects: set[bytes]) -> dict[str, Any]:
        """The fields every finding has: the next id, the slot, the height, its subjects."""
        return {"id": keeper.count(state), "slot": slot, "height": ctx.height,
                "subjects": tuple(sorted(subjects))}

    def _layering(self, state: State, ctx: BlockContext, p: Params, cfg: Config, slot: int,
                  found: list[Visible], peak_buy: int, peak_sell: int, events: Events) -> None:
        if not found:
            return
        offers = tuple(Offer(v.owner, v.side, v.peak_wh, withdrawn_wh=v.withdrawn_wh)
                       for v in found)
        sides = {v.side for v in found}
        peak = max(peak_buy if "buy" in sides else 0, peak_sell if "sell" in sides else 0)
        self._find(state, ctx, p, Finding(
            kind="layering", basis=BASIS["layering"], offers=offers, peak_wh=peak,
            **self._next(state, ctx, slot, {v.owner for v in found})), events)

    def _withholding(self, state: State, ctx: BlockContext, p: Params, cfg: Config, slot: int,
                     book: Any, events: Events) -> None:
        test: Impact | None = conduct_and_impact(book, cfg, p.mechanism,
                                                 p.retail_import_micro_per_kwh,
                                                 p.feed_in_micro_per_kwh)
        if test is None or not test.material(cfg):
            return
        offers = []
        for oid, o, ref in test.failing:
            self.market.reprice_order(state, slot, oid, ref)
            offers.append(Offer(o.owner, _side(o.side), o.energy_wh, o.price_micro_per_kwh,
                                order=oid, mitigated_micro_per_kwh=ref))
        self._find(state, ctx, p, Finding(
            kind="withholding", basis=BASIS["withholding"], offers=tuple(offers),
            price_micro_per_kwh=test.as_submitted.price_micro_per_kwh,
            mitigated_price_micro_per_kwh=test.mitigated.price_micro_per_kwh,
            volume_wh=test.as_submitted.volume_wh,
            mitigated_volume_wh=test.mitigated.volume_wh,
            **self._next(state, ctx, slot, {o.owner for _i, o, _r in test.failing})),
            events)

    def _wash(self, state: State, ctx: BlockContext, p: Params, cfg: Config, slot: int,
              events: Events) -> None:
        first = slot - cfg.wash_window_slots + 1
        for old in keeper.flow_slots(state):
            if old < first:
                keeper.drop_flows(state, old)
        mine = pair_flows(self.market.trades_of_slot(state, slot))
        if not mine:
            return
        keeper.put_flows(state, slot, Flows(mine))
        window = []
        for s in keeper.flow_slots(state):
            fl = keeper.flows(state, s)
            if fl is not None:
                window.append((s, fl.flows))
        for w in wash_pairs(window, [(f.a, f.b) for f in mine], cfg):
            last = keeper.last_flagged(state, w.a, w.b)
            if last is not None and last >= first:
                continue  # already found in this window
            keeper.set_flagged(state, w.a, w.b, slot)
            self._find(state, ctx, p, Finding(
                kind="wash-trade", basis=BASIS["wash-trade"], offers=(),
                gross_wh=w.gross_wh, net_wh=w.net_wh, reversals=w.reversals, slots=w.slots,
                **self._next(state, ctx, slot, {w.a, w.b})), events)


def reveal_deadline(slot: int, p: Params) -> int:
    """The first block at or after this clears ``slot``: the market's timeline
    (``docs/market.md``), restated because no module imports another's package."""
    return slot * p.slot_seconds - p.gate_closure_s + p.reveal_window_s


def make_end_block(market: Market, reputation: Reputation) -> BlockHook:
    return Surveillance(market, reputation).end_block
