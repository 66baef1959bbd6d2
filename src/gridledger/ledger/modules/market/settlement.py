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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.governance.types import Params
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.types import slot_of
from gridledger.ledger.modules.metering.keeper import mark_settled as metering_settled
from gridledger.ledger.modules.metering.keeper import trusted_readings_for_slot
from gridledger.ledger.modules.metering.types import Reading
from gridledger.ledger.modules.registry.keeper import cp_holder, cp_of, get_participant
from gridledger.ledger.modules.reputation.keeper import adjust
from gridledger.ledger.state import State
from gridledger.market.rounding import ceil_micro, round_forest, round_grouped
from gridledger.types import payment_micro


@dataclass
class _Account:
    """One participant's flows in this settlement (micro-units and Wh)."""

    cp: str | None = None
    reading: Reading | None = None
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
    pseudonym: bool = False


def settle_slot(state: State, ctx: BlockContext, p: Params, slot: int, grid: bytes | None,
                events: list[dict[str, Any]]) -> None:
    """Settle ``slot``: called once, in the first block at or after its settlement deadline."""
    now_slot = slot_of(ctx.slot_time, p)
    trades = keeper.trades_of_slot(state, slot)
    readings = {r.cp: r for r in trusted_readings_for_slot(state, slot)}
    acc: dict[bytes, _Account] = {}

    def account(addr: bytes) -> _Account:
        a = acc.get(addr)
        if a is None:
            cp = cp_of(state, addr)
            holder = get_participant(state, addr)
            a = acc[addr] = _Account(cp=cp, reading=readings.get(cp) if cp else None,
                                     pseudonym="pseudonym" in (holder or {}).get("roles", ()))
        return a

    # 1. delivery: allocate metered export / import to trades in clearing order
    export_left: dict[bytes, int] = {}
    for t in trades:
        s = account(t["seller"])
        left = export_left.setdefault(t["seller"], s.reading.export_wh if s.reading else 0)
        t["delivered_wh"] = min(t["energy_wh"], left)
        export_left[t["seller"]] = left - t["delivered_wh"]
        account(t["buyer"]).bought_wh += t["delivered_wh"]
    import_left: dict[bytes, int] = {}
    for t in trades:
        b = account(t["buyer"])
        left = import_left.setdefault(t["buyer"], b.reading.import_wh if b.reading else b.bought_wh)
        t["received_wh"] = min(t["delivered_wh"], left)
        import_left[t["buyer"]] = left - t["received_wh"]
    # Import beyond delivered market energy replaced the shortfalls, in the same order: only
    # energy the buyer really had to take from the grid is compensated.
    for t in trades:
        left = import_left[t["buyer"]]
        t["replaced_wh"] = min(t["energy_wh"] - t["delivered_wh"], left)
        import_left[t["buyer"]] = left - t["replaced_wh"]

    # 2.-3. market payments, then compensation, then penalties, out of escrow and deposits
    orders: dict[bytes, dict[str, Any]] = dict(keeper.orders_of_slot(state, slot))
    _settle_trades(p, state, slot, trades, orders, account, grid, events)
    for oid in sorted(orders):
        o = orders[oid]
        keeper.release(state, o["owner"], o["held_micro"])
        keeper.delete_order(state, slot, oid)

    # 4. retail, for every trade party and every metered connection point
    for cp in sorted(readings):
        holder = cp_holder(state, cp)
        if holder is not None:
            account(holder)
    if grid is not None:
        _settle_retail(state, p, slot, acc, grid, events)

    # 5. bills, reputation, records
    for addr in sorted(acc):
        _finish_account(state, p, slot, now_slot, addr, acc[addr], grid, events)
    delivered = sum(t["delivered_wh"] for t in trades)
    volume = sum(t["energy_wh"] for t in trades)
    rec = keeper.get_slot(state, slot) or {"status": "none", "volume_wh": 0, "bought_wh": 0,
                                           "sold_wh": 0, "trades": 0}
    keeper.put_slot(state, slot, {**rec, "status": "settled", "delivered_wh": delivered,
                                  "shortfall_wh": volume - delivered, "settled_at": ctx.slot_time})
    events.append({"type": "slot_settled", "slot": slot, "trades": len(trades),
                   "volume_wh": volume, "delivered_wh": delivered,
                   "shortfall_wh": volume - delivered, "readings": len(readings),
                   "participants": len(acc)})
    keeper.mark_settled(state, slot, ctx.slot_time)
    metering_settled(state, slot)


def _settle_trades(p: Params, state: State, slot: int, trades: list[dict[str, Any]],
                   orders: dict[bytes, dict[str, Any]], account: Callable[[bytes], _Account],
                   grid: bytes | None, events: list[dict[str, Any]]) -> None:
    """Move the money of every trade: payments and fees out of the buyers' escrow, then every
    buyer's compensation out of the sellers' deposits, then the rest of each seller's
    imbalance charge to the grid account. Amounts are rounded per order by the carry rule
    (``gridledger.market.rounding``), so each order's total is exact to the micro-unit."""
    ends = [(t["buy_order"], t["sell_order"]) for t in trades]
    pays = round_forest(ends, [t["delivered_wh"] * t["price_micro_per_kwh"] for t in trades])
    fees = round_grouped([t["buy_order"] for t in trades],
                         [t["delivered_wh"] * t["grid_fee_micro_per_kwh"] if grid is not None else 0
                          for t in trades])
    # The buyer replaced the missing energy it needed from the grid at τ; compensation makes
    # that energy cost the trade price. Energy it did not need is not compensated (nothing to
    # make whole, and a fake bid must not profit from a fake ask).
    tau = p.retail_import_micro_per_kwh
    comps = round_forest(ends, [t["replaced_wh"] * max(0, tau - t["price_micro_per_kwh"])
                                for t in trades])
    for t, pay, fee in zip(trades, pays, fees):
        buyer, seller = account(t["buyer"]), account(t["seller"])
        keeper.pay_held(state, t["buyer"], t["seller"], pay)
        if grid is not None:
            keeper.pay_held(state, t["buyer"], grid, fee)
        orders[t["buy_order"]]["held_micro"] -= pay + fee
        buyer.market_cost_micro += pay
        buyer.grid_fee_micro += fee
        buyer.trades += 1
        seller.market_revenue_micro += pay
        seller.sold_wh += t["delivered_wh"]
        seller.trades += 1
        t.update(settled=True, paid_micro=pay, fee_paid_micro=fee, compensation_micro=0,
                 penalty_micro=0)
    # Buyers first: every compensation is paid before any penalty reaches the grid account,
    # so a seller who defaults on several buyers leaves none of them short (the deposit,
    # rate >= τ, covers every compensation).
    for t, comp in zip(trades, comps):
        so = orders[t["sell_order"]]
        comp = min(comp, so["held_micro"])
        keeper.pay_held(state, t["seller"], t["buyer"], comp)
        so["held_micro"] -= comp
        account(t["seller"]).compensation_out_micro += comp
        account(t["buyer"]).compensation_in_micro += comp
        t["compensation_micro"] = comp
    for oid, short_trades in _short_trades_by_sell_order(trades).items():
        so = orders[oid]
        short = sum(t["energy_wh"] - t["delivered_wh"] for t in short_trades)
        # π per kWh short, rounded up against the defaulter, less what its buyers received
        charge = ceil_micro(short * p.imbalance_micro_per_kwh)
        paid = sum(t["compensation_micro"] for t in short_trades)
        pen = min(max(0, charge - paid), so["held_micro"]) if grid is not None else 0
        if grid is not None:
            keeper.pay_held(state, so["owner"], grid, pen)
        so["held_micro"] -= pen
        seller = account(so["owner"])
        seller.shortfall_wh += short
        seller.penalty_micro += pen
        done = before = 0
        for t in short_trades:  # the penalty shared pro rata over the short trades
            done += t["energy_wh"] - t["delivered_wh"]
            t["penalty_micro"] = pen * done // short - before
            before += t["penalty_micro"]
    for i, t in enumerate(trades):
        short = t["energy_wh"] - t["delivered_wh"]
        if short:
            events.append({"type": "non_delivery", "slot": slot, "trade": i,
                           "seller": t["seller"], "buyer": t["buyer"], "shortfall_wh": short,
                           "replaced_wh": t["replaced_wh"],
                           "compensation_micro": t["compensation_micro"],
                           "penalty_micro": t["penalty_micro"]})
        keeper.put_trade(state, slot, i, t)


def _retail_dues(p: Params, a: _Account) -> int:
    """What ``a`` owes the grid account for retail energy this slot (< 0: the grid owes)."""
    imp = a.reading.import_wh if a.reading else a.bought_wh
    exp = a.reading.export_wh if a.reading else 0
    retail_import = max(0, imp - a.bought_wh)
    retail_export = (exp - a.sold_wh) + max(0, a.bought_wh - imp)
    return (payment_micro(retail_import, p.retail_import_micro_per_kwh)
            - payment_micro(retail_export, p.feed_in_micro_per_kwh))


def _settle_retail(state: State, p: Params, slot: int, acc: dict[bytes, _Account], grid: bytes,
                   events: list[dict[str, Any]]) -> None:
    """Retail with the grid account, secured by each participant's retail hold.

    Payments in are collected before payments out (less depends on address order): old
    debt first, then this slot's dues, from the spendable balance, then from the hold (money
    a participant cannot move to another identity). What stays unpaid is carried as debt and
    collected at later settlements. Then feed-in is paid, and every hold is re-sized to
    ``retail_hold_slots`` x the participant's recent peak import at τ (see ``hold_target``).
    """
    dues = {addr: _retail_dues(p, acc[addr]) for addr in sorted(acc) if addr != grid}
    for addr, due in dues.items():
        a, rh = acc[addr], keeper.get_retail(state, addr)
        owed = rh["debt_micro"] + max(0, due)
        if not owed:
            continue
        from_balance = min(owed, bank.balance(state, addr))
        bank.move(state, addr, grid, from_balance)
        from_hold = min(owed - from_balance, rh["held_micro"])
        keeper.pay_held(state, addr, grid, from_hold)
        paid = from_balance + from_hold
        a.debt_paid_micro = min(paid, rh["debt_micro"])  # the oldest debt first
        a.retail_paid_micro = paid - a.debt_paid_micro
        a.unpaid_micro = max(0, due) - a.retail_paid_micro
        keeper.put_retail(state, addr, {**rh, "held_micro": rh["held_micro"] - from_hold,
                                        "debt_micro": owed - paid})
    for addr, due in dues.items():
        if due < 0:
            a = acc[addr]
            a.retail_received_micro = min(-due, bank.balance(state, grid))
            a.unpaid_micro = due + a.retail_received_micro  # negative: the grid owes
            bank.move(state, grid, addr, a.retail_received_micro)
    for addr in dues:
        _resize_hold(state, p, slot, addr, acc[addr], events)


def hold_target(p: Params, peak_wh: int) -> int:
    """The retail hold for a recent peak import: ``retail_hold_slots`` slots of it (at least
    ``retail_hold_min_wh`` each) at τ, rounded up, less the credit the grid extends."""
    energy = p.retail_hold_slots * max(peak_wh, p.retail_hold_min_wh)
    return max(0, ceil_micro(energy * p.retail_import_micro_per_kwh) - p.retail_credit_micro)


def _resize_hold(state: State, p: Params, slot: int, addr: bytes, a: _Account,
                 events: list[dict[str, Any]]) -> None:
    """Top the participant's retail hold up to (or release it down to) its target.

    The hold covers the energy consumed but not yet settled (the slots between delivery and
    settlement) plus a slot of notice: without it, a member could move its balance to
    another identity before settlement and leave its retail import unpaid. The peak decays
    by an eighth per slot, so the hold follows a household's evening peak without locking
    it for good. Pseudonyms hold nothing: they cannot move money (bank rule
    ``pseudonym-transfer``) and their epoch pool secures them.
    """
    rh = keeper.get_retail(state, addr)
    imp = a.reading.import_wh if a.reading else a.bought_wh
    peak = max(imp, rh["peak_wh"] - rh["peak_wh"] // 8)
    held = rh["held_micro"]
    target = 0 if a.pseudonym else hold_target(p, peak)
    if held > target:
        keeper.release(state, addr, held - target)
        held = target
    elif held < target:
        top = min(target - held, bank.balance(state, addr))
        keeper.hold(state, addr, top)
        held += top
        if held < target:
            events.append({"type": "retail_hold_short", "slot": slot, "addr": addr,
                           "held_micro": held, "target_micro": target,
                           "debt_micro": rh["debt_micro"]})
    keeper.put_retail(state, addr, {**rh, "held_micro": held, "peak_wh": 0 if a.pseudonym else peak})
    a.retail_hold_micro = held
    a.debt_micro = rh["debt_micro"]


def _short_trades_by_sell_order(trades: list[dict[str, Any]]) -> dict[bytes, list[dict[str, Any]]]:
    """The trades each sell order fell short on, in clearing order (orders in order of their
    first short trade)."""
    out: dict[bytes, list[dict[str, Any]]] = {}
    for t in trades:
        if t["delivered_wh"] < t["energy_wh"]:
            out.setdefault(t["sell_order"], []).append(t)
    return out


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


def _finish_account(state: State, p: Params, slot: int, now_slot: int, addr: bytes, a: _Account,
                    grid: bytes | None, events: list[dict[str, Any]]) -> None:
    r = a.reading
    imp = r.import_wh if r else a.bought_wh
    exp = r.export_wh if r else 0
    retail_import = max(0, imp - a.bought_wh)
    retail_export = (exp - a.sold_wh) + max(0, a.bought_wh - imp)
    total = (a.market_cost_micro + a.grid_fee_micro + a.compensation_out_micro + a.penalty_micro
             + a.retail_paid_micro + a.debt_paid_micro - a.market_revenue_micro
             - a.compensation_in_micro - a.retail_received_micro)
    baseline = (payment_micro(imp, p.retail_import_micro_per_kwh)
                - payment_micro(exp, p.feed_in_micro_per_kwh))
    events.append({
        "type": "bill", "slot": slot, "addr": addr, "cp": a.cp, "estimated": r is None,
        "import_wh": imp, "export_wh": exp, "market_bought_wh": a.bought_wh,
        "market_sold_wh": a.sold_wh, "shortfall_wh": a.shortfall_wh,
        "market_cost_micro": a.market_cost_micro, "grid_fee_micro": a.grid_fee_micro,
        "market_revenue_micro": a.market_revenue_micro,
        "compensation_micro": a.compensation_in_micro - a.compensation_out_micro,
        "penalty_micro": a.penalty_micro, "retail_import_wh": retail_import,
        "retail_export_wh": retail_export,
        "retail_net_micro": a.retail_paid_micro - a.retail_received_micro,
        "unpaid_micro": a.unpaid_micro, "debt_paid_micro": a.debt_paid_micro,
        "debt_micro": a.debt_micro, "retail_hold_micro": a.retail_hold_micro,
        "total_micro": total, "baseline_total_micro": baseline})
    if a.trades and r is None:
        events.append(adjust(state, addr, "missing_reading", now_slot))
    if a.shortfall_wh:
        events.append(adjust(state, addr, "non_delivery", now_slot))
    elif a.trades and r is not None:
        units = substance_units(p, a.bought_wh + a.sold_wh,
                                a.market_cost_micro + a.market_revenue_micro)
        if units:
            events.append(adjust(state, addr, "trade_settled", now_slot, times=units))
    if a.unpaid_micro > 0 and addr != grid:
        events.append({"type": "unpaid", "slot": slot, "addr": addr, "amount_micro": a.unpaid_micro})
        events.append(adjust(state, addr, "non_payment", now_slot))
    elif a.unpaid_micro < 0:
        events.append({"type": "grid_unpaid", "slot": slot, "addr": addr,
                       "amount_micro": -a.unpaid_micro})
