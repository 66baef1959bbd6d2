"""Settlement after delivery, against signed meter readings.

Rules (docs/market.md, "Settlement"), for slot ``t`` with retail tariff τ, feed-in φ and
imbalance price π (parameters):

1. Delivery. A seller's metered export is allocated to its trades in clearing order:
   ``delivered = min(traded, export left)``; the rest is its shortfall. A buyer's metered
   import is allocated to the energy delivered to it the same way (``received``).
   Missing readings at the deadline: a seller without a reading exported nothing (full
   non-delivery); a buyer without a reading is taken to have imported what was delivered to
   it (withholding a reading never avoids a payment). Both lose reputation.
2. Market payments. For each trade the buyer pays, from its escrow, the trade price for the
   delivered energy to the seller, and the grid fee on the delivered energy to the grid
   account. Every amount is rounded per order by the carry rule
   (``gridledger.market.rounding``): each order's total is its exact total rounded down or
   up, however many trades it has.
3. Non-delivery. The seller is charged π per kWh short, from its delivery deposit: first,
   for every trade of the slot, the buyer's compensation ``(τ − price)·replaced``, where
   ``replaced`` is the part of the shortfall the buyer's import beyond delivered energy
   covered (that energy came from the grid at τ, so the buyer ends up paying the trade
   price, as agreed: loss 0); only then the rest of the charge to the grid account as the
   balancing cost. Buyers before the grid: the deposit (rate ≥ τ) covers every buyer.
4. Retail. Everything else trades with the grid account: import beyond delivered market
   energy at τ, export beyond delivered market energy plus energy a buyer paid for but did
   not take at φ. Payments into the grid are collected before payments out.
5. Escrow and deposits left over are released. A ``bill`` event per participant carries the
   totals and the no-market baseline (all metered import at τ, export at φ).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.expected import Deps, MeterReading
from gridledger.ledger.modules.market.types import SlotRecord, Trade
from gridledger.ledger.params import Params, slot_of
from gridledger.ledger.state import State
from gridledger.market.rounding import ceil_micro, round_forest, round_grouped
from gridledger.types import payment_micro

PEAK_DECAY = 8
"""The recent peak import a retail hold is sized by loses 1/8 per slot (``_resize_hold``)."""


@dataclass
class _Account:
    """One participant's flows in this settlement (micro-units and Wh)."""

    cp: str | None = None
    reading: MeterReading | None = None
    pseudonym: bool = False
    bought_wh: int = 0          # market energy delivered to it
    sold_wh: int = 0            # market energy it delivered
    shortfall_wh: int = 0
    trades: int = 0
    market_cost_micro: int = 0
    grid_fee_micro: int = 0
    market_revenue_micro: int = 0
    compensation_in_micro: int = 0
    compensation_out_micro: int = 0
    penalty_micro: int = 0
    retail_paid_micro: int = 0
    retail_received_micro: int = 0
    unpaid_micro: int = 0
    debt_paid_micro: int = 0    # earlier slots' unpaid retail collected now
    debt_micro: int = 0         # still owed after this settlement
    retail_hold_micro: int = 0  # locked after this settlement

    @property
    def import_wh(self) -> int:
        """Metered import; without a reading, what was delivered to it (withholding a
        reading never avoids a payment)."""
        return self.reading.import_wh if self.reading else self.bought_wh

    @property
    def export_wh(self) -> int:
        """Metered export; without a reading, nothing."""
        return self.reading.export_wh if self.reading else 0


@dataclass
class _Flow:
    """One trade while it is settled: energy that flowed and money that moved."""

    trade: Trade
    delivered_wh: int = 0
    received_wh: int = 0
    replaced_wh: int = 0
    paid_micro: int = 0
    fee_paid_micro: int = 0
    compensation_micro: int = 0
    penalty_micro: int = 0

    @property
    def short_wh(self) -> int:
        return self.trade.energy_wh - self.delivered_wh

    def settled(self) -> Trade:
        return dataclasses.replace(
            self.trade, settled=True, delivered_wh=self.delivered_wh,
            received_wh=self.received_wh, replaced_wh=self.replaced_wh,
            paid_micro=self.paid_micro, fee_paid_micro=self.fee_paid_micro,
            compensation_micro=self.compensation_micro, penalty_micro=self.penalty_micro)


def settle_slot(deps: Deps, state: State, ctx: BlockContext, p: Params, slot: int,
                grid: bytes | None, events: list[dict[str, Any]]) -> None:
    """Settle ``slot``: called once, in the first block at or after its settlement deadline."""
    _Settlement(deps, state, p, slot, grid, events).run(ctx)


class _Settlement:
    """The settlement of one slot (docs/market.md, "Settlement")."""

    def __init__(self, deps: Deps, state: State, p: Params, slot: int, grid: bytes | None,
                 events: list[dict[str, Any]]) -> None:
        self.deps, self.state, self.p, self.slot, self.grid = deps, state, p, slot, grid
        self.events = events
        self.readings = {r.cp: r for r in deps.metering.trusted_readings_for_slot(state, slot)}
        self.acc: dict[bytes, _Account] = {}
        self.flows = [_Flow(t) for t in keeper.trades_of_slot(state, slot)]
        self.held: dict[bytes, int] = {}     # order id -> money the market still holds
        self.owner: dict[bytes, bytes] = {}  # order id -> owner

    def account(self, addr: bytes) -> _Account:
        a = self.acc.get(addr)
        if a is None:
            holder = self.deps.registry.participant(self.state, addr)
            cp = holder.cp if holder is not None else None
            a = self.acc[addr] = _Account(cp=cp, reading=self.readings.get(cp) if cp else None,
                                          pseudonym=holder is not None and "pseudonym" in holder.roles)
        return a

    def run(self, ctx: BlockContext) -> None:
        state, slot = self.state, self.slot
        self._allocate_delivery()
        for oid, o in keeper.orders_of_slot(state, slot):
            self.held[oid], self.owner[oid] = o.held_micro, o.owner
        self._move_market_money()
        for oid in sorted(self.held):
            self.deps.bank.unlock(state, self.owner[oid], self.held[oid])
            keeper.delete_order(state, slot, oid)
        # 4. retail, for every trade party and every metered connection point
        for cp in sorted(self.readings):
            holder = self.deps.registry.cp_holder(state, cp)
            if holder is not None:
                self.account(holder)
        if self.grid is not None:
            self._settle_retail(self.grid)
        # 5. bills, reputation, records
        now_slot = slot_of(ctx.slot_time, self.p)
        for addr in sorted(self.acc):
            self._finish_account(now_slot, addr, self.acc[addr])
        delivered = sum(f.delivered_wh for f in self.flows)
        volume = sum(f.trade.energy_wh for f in self.flows)
        rec = keeper.slot_record(state, slot) or SlotRecord(
            status="none", volume_wh=0, bought_wh=0, sold_wh=0, trades=0)
        keeper.put_slot(state, slot, dataclasses.replace(
            rec, status="settled", delivered_wh=delivered, shortfall_wh=volume - delivered,
            settled_at=ctx.slot_time))
        self.events.append({"type": "slot_settled", "slot": slot, "trades": len(self.flows),
                            "volume_wh": volume, "delivered_wh": delivered,
                            "shortfall_wh": volume - delivered, "readings": len(self.readings),
                            "participants": len(self.acc)})
        keeper.mark_settled(state, slot, ctx.slot_time)
        self.deps.metering.mark_settled(state, slot)

    # -- 1. delivery ---------------------------------------------------------------------------

    def _allocate_delivery(self) -> None:
        """Metered export / import allocated to trades in clearing order."""
        export_left: dict[bytes, int] = {}
        for f in self.flows:
            t = f.trade
            left = export_left.setdefault(t.seller, self.account(t.seller).export_wh)
            f.delivered_wh = min(t.energy_wh, left)
            export_left[t.seller] = left - f.delivered_wh
            self.account(t.buyer).bought_wh += f.delivered_wh
        import_left: dict[bytes, int] = {}
        for f in self.flows:
            b = f.trade.buyer
            left = import_left.setdefault(b, self.account(b).import_wh)
            f.received_wh = min(f.delivered_wh, left)
            import_left[b] = left - f.received_wh
        # Import beyond delivered market energy replaced the shortfalls, in the same order:
        # only energy the buyer really had to take from the grid is compensated.
        for f in self.flows:
            b = f.trade.buyer
            f.replaced_wh = min(f.short_wh, import_left[b])
            import_left[b] -= f.replaced_wh

    # -- 2.-3. market money ---------------------------------------------------------------------

    def _pay_held(self, oid: bytes, dst: bytes, amount: int) -> None:
        self.deps.bank.pay_from_locked(self.state, self.owner[oid], dst, amount)
        self.held[oid] -= amount

    def _move_market_money(self) -> None:
        """Payments and fees out of the buyers' escrow, then every buyer's compensation out
        of the sellers' deposits, then the rest of each seller's imbalance charge to the grid
        account. Amounts are rounded per order by the carry rule
        (``gridledger.market.rounding``), so each order's total is exact to the micro-unit."""
        flows, grid = self.flows, self.grid
        ends = [(f.trade.buy_order, f.trade.sell_order) for f in flows]
        pays = round_forest(ends, [f.delivered_wh * f.trade.price_micro_per_kwh for f in flows])
        fees = round_grouped([f.trade.buy_order for f in flows],
                             [f.delivered_wh * f.trade.grid_fee_micro_per_kwh if grid else 0
                              for f in flows])
        # The buyer replaced the missing energy it needed from the grid at τ; compensation
        # makes that energy cost the trade price. Energy it did not need is not compensated
        # (nothing to make whole, and a fake bid must not profit from a fake ask).
        tau = self.p.retail_import_micro_per_kwh
        comps = round_forest(ends, [f.replaced_wh * max(0, tau - f.trade.price_micro_per_kwh)
                                    for f in flows])
        for f, pay, fee in zip(flows, pays, fees, strict=True):
            t = f.trade
            buyer, seller = self.account(t.buyer), self.account(t.seller)
            self._pay_held(t.buy_order, t.seller, pay)
            if grid is not None:
                self._pay_held(t.buy_order, grid, fee)
            f.paid_micro, f.fee_paid_micro = pay, fee
            buyer.market_cost_micro += pay
            buyer.grid_fee_micro += fee
            buyer.trades += 1
            seller.market_revenue_micro += pay
            seller.sold_wh += f.delivered_wh
            seller.trades += 1
        # Buyers first: every compensation is paid before any penalty reaches the grid
        # account, so a seller who defaults on several buyers leaves none of them short (the
        # deposit, rate >= τ, covers every compensation).
        for f, comp in zip(flows, comps, strict=True):
            t = f.trade
            f.compensation_micro = min(comp, self.held[t.sell_order])
            self._pay_held(t.sell_order, t.buyer, f.compensation_micro)
            self.account(t.seller).compensation_out_micro += f.compensation_micro
            self.account(t.buyer).compensation_in_micro += f.compensation_micro
        for oid, short_flows in self._short_flows_by_sell_order().items():
            self._charge_imbalance(oid, short_flows)
        for i, f in enumerate(flows):
            if f.short_wh:
                t = f.trade
                self.events.append({"type": "non_delivery", "slot": self.slot, "trade": i,
                                    "seller": t.seller, "buyer": t.buyer,
                                    "shortfall_wh": f.short_wh, "replaced_wh": f.replaced_wh,
                                    "compensation_micro": f.compensation_micro,
                                    "penalty_micro": f.penalty_micro})
            keeper.put_trade(self.state, self.slot, i, f.settled())

    def _short_flows_by_sell_order(self) -> dict[bytes, list[_Flow]]:
        """The trades each sell order fell short on, in clearing order (orders in order of
        their first short trade)."""
        out: dict[bytes, list[_Flow]] = {}
        for f in self.flows:
            if f.short_wh:
                out.setdefault(f.trade.sell_order, []).append(f)
        return out

    def _charge_imbalance(self, oid: bytes, short_flows: list[_Flow]) -> None:
        """π per kWh short, rounded up against the defaulter, less what its buyers already
        received, to the grid account (shared pro rata over the short trades)."""
        short = sum(f.short_wh for f in short_flows)
        charge = ceil_micro(short * self.p.imbalance_micro_per_kwh)
        paid = sum(f.compensation_micro for f in short_flows)
        pen = min(max(0, charge - paid), self.held[oid]) if self.grid is not None else 0
        if self.grid is not None:
            self._pay_held(oid, self.grid, pen)
        seller = self.account(self.owner[oid])
        seller.shortfall_wh += short
        seller.penalty_micro += pen
        done = before = 0
        for f in short_flows:
            done += f.short_wh
            f.penalty_micro = pen * done // short - before
            before += f.penalty_micro

    # -- 4. retail --------------------------------------------------------------------------------

    def _retail_dues(self, a: _Account) -> int:
        """What ``a`` owes the grid account for retail energy this slot (< 0: the grid owes)."""
        retail_import = max(0, a.import_wh - a.bought_wh)
        retail_export = (a.export_wh - a.sold_wh) + max(0, a.bought_wh - a.import_wh)
        return (payment_micro(retail_import, self.p.retail_import_micro_per_kwh)
                - payment_micro(retail_export, self.p.feed_in_micro_per_kwh))

    def _settle_retail(self, grid: bytes) -> None:
        """Retail with the grid account, secured by each participant's retail hold.

        Payments in are collected before payments out (less depends on address order): old
        debt first, then this slot's dues, from the spendable balance, then from the hold
        (money a participant cannot move to another identity). What stays unpaid is carried
        as debt and collected at later settlements. Then feed-in is paid, and every hold is
        re-sized (``_resize_hold``).
        """
        state, bank = self.state, self.deps.bank
        dues = {addr: self._retail_dues(self.acc[addr]) for addr in sorted(self.acc)
                if addr != grid}
        for addr, due in dues.items():
            a, rh = self.acc[addr], keeper.retail_of(state, addr)
            owed = rh.debt_micro + max(0, due)
            if not owed:
                continue
            from_balance = min(owed, bank.balance(state, addr))
            bank.move(state, addr, grid, from_balance)
            from_hold = min(owed - from_balance, rh.held_micro)
            bank.pay_from_locked(state, addr, grid, from_hold)
            paid = from_balance + from_hold
            a.debt_paid_micro = min(paid, rh.debt_micro)  # the oldest debt first
            a.retail_paid_micro = paid - a.debt_paid_micro
            a.unpaid_micro = max(0, due) - a.retail_paid_micro
            keeper.put_retail(state, addr, dataclasses.replace(
                rh, held_micro=rh.held_micro - from_hold, debt_micro=owed - paid))
        for addr, due in dues.items():
            if due < 0:
                a = self.acc[addr]
                a.retail_received_micro = min(-due, bank.balance(state, grid))
                a.unpaid_micro = due + a.retail_received_micro  # negative: the grid owes
                bank.move(state, grid, addr, a.retail_received_micro)
        for addr in dues:
            self._resize_hold(addr, self.acc[addr])

    def _resize_hold(self, addr: bytes, a: _Account) -> None:
        """Top the participant's retail hold up to (or release it down to) ``hold_target``.

        The hold covers the energy consumed but not yet settled (the slots between delivery
        and settlement) plus a slot of notice: without it, a member could move its balance
        to another identity before settlement and leave its retail import unpaid. The peak
        decays by ``1/PEAK_DECAY`` per slot, so the hold follows a household's evening peak
        without locking it for good. Pseudonyms hold nothing: they cannot move money (bank
        rule ``pseudonym-transfer``) and their epoch pool secures them.
        """
        state, bank = self.state, self.deps.bank
        rh = keeper.retail_of(state, addr)
        peak = 0 if a.pseudonym else max(a.import_wh, rh.peak_wh - rh.peak_wh // PEAK_DECAY)
        target = 0 if a.pseudonym else hold_target(self.p, peak)
        held = rh.held_micro
        if held > target:
            bank.unlock(state, addr, held - target)
            held = target
        elif held < target:
            top = min(target - held, bank.balance(state, addr))
            bank.lock(state, addr, top)
            held += top
            if held < target:
                self.events.append({"type": "retail_hold_short", "slot": self.slot,
                                    "addr": addr, "held_micro": held, "target_micro": target,
                                    "debt_micro": rh.debt_micro})
        keeper.put_retail(state, addr, dataclasses.replace(rh, held_micro=held, peak_wh=peak))
        a.retail_hold_micro = held
        a.debt_micro = rh.debt_micro

    # -- 5. bills and reputation --------------------------------------------------------------------

    def _finish_account(self, now_slot: int, addr: bytes, a: _Account) -> None:
        p, state, rep = self.p, self.state, self.deps.reputation
        imp, exp = a.import_wh, a.export_wh
        retail_import = max(0, imp - a.bought_wh)
        retail_export = (exp - a.sold_wh) + max(0, a.bought_wh - imp)
        total = (a.market_cost_micro + a.grid_fee_micro + a.compensation_out_micro
                 + a.penalty_micro + a.retail_paid_micro + a.debt_paid_micro
                 - a.market_revenue_micro - a.compensation_in_micro - a.retail_received_micro)
        baseline = (payment_micro(imp, p.retail_import_micro_per_kwh)
                    - payment_micro(exp, p.feed_in_micro_per_kwh))
        self.events.append({
            "type": "bill", "slot": self.slot, "addr": addr, "cp": a.cp,
            "estimated": a.reading is None, "import_wh": imp, "export_wh": exp,
            "market_bought_wh": a.bought_wh, "market_sold_wh": a.sold_wh,
            "shortfall_wh": a.shortfall_wh, "market_cost_micro": a.market_cost_micro,
            "grid_fee_micro": a.grid_fee_micro, "market_revenue_micro": a.market_revenue_micro,
            "compensation_micro": a.compensation_in_micro - a.compensation_out_micro,
            "penalty_micro": a.penalty_micro, "retail_import_wh": retail_import,
            "retail_export_wh": retail_export,
            "retail_net_micro": a.retail_paid_micro - a.retail_received_micro,
            "unpaid_micro": a.unpaid_micro, "debt_paid_micro": a.debt_paid_micro,
            "debt_micro": a.debt_micro, "retail_hold_micro": a.retail_hold_micro,
            "total_micro": total, "baseline_total_micro": baseline})
        if a.trades and a.reading is None:
            self.events.append(rep.adjust(state, addr, "missing_reading", now_slot))
        if a.shortfall_wh:
            self.events.append(rep.adjust(state, addr, "non_delivery", now_slot))
        elif a.trades and a.reading is not None \
                and rep.tier_of(state, addr) != "suspended":
            # a suspended member's must-offer sales earn nothing: its way back is an appeal
            units = substance_units(p, a.bought_wh + a.sold_wh,
                                    a.market_cost_micro + a.market_revenue_micro)
            if units:
                self.events.append(rep.adjust(state, addr, "trade_settled", now_slot, times=units))
        if a.unpaid_micro > 0 and addr != self.grid:
            self.events.append({"type": "unpaid", "slot": self.slot, "addr": addr,
                                "amount_micro": a.unpaid_micro})
            self.events.append(rep.adjust(state, addr, "non_payment", now_slot))
        elif a.unpaid_micro < 0:
            self.events.append({"type": "grid_unpaid", "slot": self.slot, "addr": addr,
                                "amount_micro": -a.unpaid_micro})


def hold_target(p: Params, peak_wh: int) -> int:
    """The retail hold for a recent peak import: ``retail_hold_slots`` slots of it (at least
    ``retail_hold_min_wh`` each) at τ, rounded up, less the credit the grid extends."""
    energy = p.retail_hold_slots * max(peak_wh, p.retail_hold_min_wh)
    return max(0, ceil_micro(energy * p.retail_import_micro_per_kwh) - p.retail_credit_micro)


def substance_units(p: Params, energy_wh: int, value_micro: int) -> int:
    """Reputation units a participant earns for one settled slot: its delivered market
    energy in ``rep_gain_unit_wh`` AND the money paid for it in ``rep_gain_unit_micro``,
    whichever is fewer, capped so one slot adds at most ``rep_gain_max_per_slot``.

    Per slot and participant, not per trade: splitting energy into many trades earns
    nothing more, 1 Wh trades earn nothing, trades at price 0 earn nothing; what earns is
    energy that really flowed (metered) at a price someone really paid, plus the grid fee.
    """
    units = min(energy_wh // p.rep_gain_unit_wh, value_micro // p.rep_gain_unit_micro)
    cap = p.rep_gain_max_per_slot // p.rep_gain_trade if p.rep_gain_trade else 0
    return min(units, cap)

