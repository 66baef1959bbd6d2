"""Surveillance at every block: genesis configuration and the end-of-block detectors.

Runs BEFORE the market's end-of-block hook (catalog order), so in the block that clears a
slot it sees the slot's final book (no order, cancel or reveal is accepted in that block:
it is past the gate and the reveal deadline) and can mitigate offers before the market
clears them. The trades of a slot are read one block later (wash window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
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
    physical_withholding,
    volumes,
    wash_pairs,
)
from gridledger.ledger.modules.surveillance.expected import (
    Bank,
    BookOrder,
    Market,
    Metering,
    Registry,
    Reputation,
)
from gridledger.ledger.modules.surveillance.types import (
    BASIS,
    SECTION,
    Config,
    Finding,
    Flows,
    Offer,
    Offered,
    Side,
    Supply,
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
    """The detectors wired to the market (book, trades, mitigation, settlement), the meters
    and their holders, balances, and reputation."""

    def __init__(self, market: Market, reputation: Reputation, metering: Metering,
                 registry: Registry, bank: Bank) -> None:
        self.market = market
        self.reputation = reputation
        self.metering = metering
        self.registry = registry
        self.bank = bank

    def end_block(self, state: State, ctx: BlockContext, events: Events) -> None:
        cfg = keeper.config(state)
        if cfg is None:
            return
        p = load_params(state)
        self._settled(state, ctx, p, cfg, events)
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
                self._keep_supply(state, p, cfg, slot, book)
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

    def _keep_supply(self, state: State, p: Params, cfg: Config, slot: int,
                     book: Sequence[tuple[bytes, BookOrder]]) -> None:
        """Keep what the final book offered until the slot settles (only a slot whose buyers
        bid enough that unmet demand could matter), with the most each holder of an
        envelope or an offer could have offered: a sell locks a delivery deposit, so an
        offer is bounded by the holder's money (its offers' deposits are locked already:
        they count as offered), at the deposit rate its tier sets."""
        buy = sum(o.energy_wh for _i, o in book
                  if o.side == "buy" and o.price_micro_per_kwh >= p.feed_in_micro_per_kwh)
        if buy < cfg.physical_min_wh:
            return
        offered: dict[bytes, int] = {}
        for _i, o in book:
            if o.side == "sell":
                offered[o.owner] = offered.get(o.owner, 0) + o.energy_wh
        by_cp = self.market.envelopes_of(state, slot)
        envelopes = tuple(sorted((cp, e[1]) for cp, e in by_cp.items()))
        holders = set(offered)
        for cp in sorted(by_cp):
            holder = self.registry.cp_holder(state, cp)
            if holder is not None:
                holders.add(holder)
        backing = tuple(Offered(h, self._backing_wh(state, p, h, offered.get(h, 0)))
                        for h in sorted(holders))
        keeper.put_supply(state, slot, Supply(
            tuple(Offered(a, e) for a, e in sorted(offered.items())), buy, envelopes,
            backing))

    def _backing_wh(self, state: State, p: Params, holder: bytes, offered_wh: int) -> int:
        """The most ``holder`` could offer: what it offered (those deposits are locked
        already) + what its spendable balance backs at its tier's deposit rate (the
        market's ``seller_deposit_rate``, restated: no module imports another's package)."""
        rate = p.deposit_micro_per_kwh * self.reputation.deposit_pct(state, holder) // 100
        return offered_wh + self.bank.balance(state, holder) * 1000 // max(1, rate)

    def _settled(self, state: State, ctx: BlockContext, p: Params, cfg: Config,
                 events: Events) -> None:
        """Physical withholding, once a kept slot has settled on its meters' readings."""
        kept = keeper.supply_slots(state)
        if not kept:
            return
        settled = {s for s, _t in self.market.settled_slots(state)}
        waiting = set(self.market.unsettled_slots(state)) | set(self.market.open_slots(state))
        for slot in kept:
            if slot in waiting:
                continue
            supply = keeper.supply(state, slot)
            keeper.drop_supply(state, slot)
            if slot not in settled or supply is None:
                continue  # failed or pruned: no settled evidence
            exports = []
            for r in self.metering.readings_for_slot(state, slot):
                if r.export_wh <= 0 or r.quarantine is not None \
                        or self.metering.flag_of(state, slot, r.cp) is not None:
                    continue  # only a meter's own, unflagged reading is evidence of surplus
                holder = self.registry.cp_holder(state, r.cp)
                if holder is None:
                    continue
                # a suspended holder is tested too: it must offer (its sells are admitted
                # at the feed-in tariff), so keeping its surplus off is still withholding
                exports.append((r.cp, holder, r.export_wh))
            # a holder with neither an envelope nor an offer at clearing: what its money
            # backs now (its balance then is not on record)
            backed = {o.owner for o in supply.backing}
            late = [Offered(h, self._backing_wh(state, p, h, 0))
                    for h in sorted({h for _cp, h, _e in exports} - backed)]
            if late:
                supply = replace(supply, backing=tuple(sorted(
                    (*supply.backing, *late), key=lambda o: o.owner)))
            traded = sum(t.energy_wh for t in self.market.trades_of_slot(state, slot))
            unmet, found = physical_withholding(supply, exports, traded, cfg)
            if not found:
                continue
            self._find(state, ctx, p, Finding(
                kind="physical-withholding", basis=BASIS["physical-withholding"],
                offers=tuple(Offer(k.owner, "sell", k.offered_wh, withdrawn_wh=k.withheld_wh,
                                   metered_wh=k.metered_wh) for k in found),
                volume_wh=traded, unmet_wh=unmet,
                **self._next(state, ctx, slot, {k.owner for k in found})), events)

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


def make_end_block(market: Market, reputation: Reputation, metering: Metering,
                   registry: Registry, bank: Bank) -> BlockHook:
    return Surveillance(market, reputation, metering, registry, bank).end_block
