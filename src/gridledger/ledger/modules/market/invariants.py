"""Market invariants, checked after every block in one pass over the ``mkt/`` keys."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.module import Invariant
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.expected import Bank
from gridledger.ledger.modules.market.types import Commitment, Order, Retail, SlotRecord, Trade
from gridledger.ledger.record import read_prefix
from gridledger.ledger.state import State
from gridledger.market.rounding import NANO_PER_MICRO


def market_holds(state: State) -> dict[bytes, int]:
    """Money the market holds per owner: open escrow, delivery deposits, commitment deposits,
    retail holds."""
    holds: dict[bytes, int] = {}
    for _, o in read_prefix(state, keeper.ORDER, Order):
        holds[o.owner] = holds.get(o.owner, 0) + o.held_micro
    for _, c in read_prefix(state, keeper.COMMIT, Commitment):
        holds[c.owner] = holds.get(c.owner, 0) + c.deposit_micro
    for owner, r in read_prefix(state, keeper.RETAIL, Retail):
        holds[owner] = holds.get(owner, 0) + r.held_micro
    return holds


def make_invariants(bank: Bank) -> tuple[Invariant, ...]:
    """The market's invariants; ``escrow-backed`` reads locks through ``bank``."""

    def escrow_backed(state: State) -> None:
        """Invariant escrow-backed: every amount the market holds for someone is
        non-negative and locked in the bank (market holds <= bank lock, per owner)."""
        for owner, held in sorted(market_holds(state).items()):
            if held < 0:
                raise InvariantViolation(f"escrow-backed: {owner.hex()[:16]} holds {held} < 0")
            lock = bank.locked(state, owner)
            if held > lock:
                raise InvariantViolation(f"escrow-backed: {owner.hex()[:16]} market holds {held} "
                                         f"> bank lock {lock}")

    return (escrow_backed, energy_balanced)


def _check_trade(k: bytes, t: Trade) -> None:
    e, d = t.energy_wh, t.delivered_wh or 0
    if e <= 0 or not 0 <= d <= e or not 0 <= (t.received_wh or 0) <= d:
        raise InvariantViolation(f"energy-balanced: trade {k!r} energy {e}, delivered {d}")
    if not _rounded(t.payment_micro, e * t.price_micro_per_kwh):
        raise InvariantViolation(f"energy-balanced: trade {k!r} payment inconsistent")


def _rounded(micro: int, exact_nano: int) -> bool:
    """``micro`` is ``exact_nano`` rounded down or up to whole micro-units."""
    return -NANO_PER_MICRO < micro * NANO_PER_MICRO - exact_nano < NANO_PER_MICRO


def _check_order_totals(slot: int, trades: list[Trade], settled: bool) -> None:
    """Every order's money over its trades is its exact total rounded down or up: what it
    was cleared for, and once settled, what it paid or received for delivered energy."""
    exact: dict[tuple[str, bytes, str], int] = {}
    paid: dict[tuple[str, bytes, str], int] = {}

    def add(key: tuple[str, bytes, str], nano: int, micro: int) -> None:
        exact[key] = exact.get(key, 0) + nano
        paid[key] = paid.get(key, 0) + micro

    for t in trades:
        e = (t.delivered_wh or 0) if settled else t.energy_wh
        pay = (t.paid_micro or 0) if settled else t.payment_micro
        fee = (t.fee_paid_micro or 0) if settled else t.grid_fee_micro
        add(("payment", t.buy_order, "buy_order"), e * t.price_micro_per_kwh, pay)
        add(("payment", t.sell_order, "sell_order"), e * t.price_micro_per_kwh, pay)
        add(("fee", t.buy_order, "buy_order"), e * t.grid_fee_micro_per_kwh, fee)
    for key in sorted(exact):
        if not _rounded(paid[key], exact[key]):
            raise InvariantViolation(f"money-rounded: slot {slot} {key[2]} {key[1].hex()[:16]} "
                                     f"{key[0]} {paid[key]} micro for {exact[key]} nano")


def _touched_slots(state: State) -> list[bytes] | None:
    """Inside a block: the slots (8-byte keys) whose trades or slot record the block wrote,
    sorted; None outside a block (check every slot)."""
    writes = state.block_writes_under((keeper.TRADE, keeper.SLOT))
    if writes is None:
        return None
    slots = {k[len(prefix):len(prefix) + 8] for k in writes
             for prefix in (keeper.TRADE, keeper.SLOT) if k.startswith(prefix)}
    return sorted(slots)


def energy_balanced(state: State) -> None:
    """Invariant energy-balanced: per cleared slot, energy bought == energy sold == the sum
    of its trades; per settled slot, energy delivered == the sum of per-trade deliveries,
    each within its trade; every trade's payment, and every order's payments and fees over
    its trades (cleared, and once settled delivered), are their exact amounts rounded down
    or up (rule ``money-rounded``).

    Inside a block only the slots whose trades or record the block wrote are checked (the
    state before the block held the invariant, and a slot's checks read only that slot's
    keys); outside a block every slot is (issue 17: the full scan after every block grew
    with the whole history and was a quarter of a day's CPU)."""
    touched = _touched_slots(state)
    prefixes = ([(keeper.TRADE, keeper.SLOT)] if touched is None else
                [(keeper.TRADE + sk, keeper.SLOT + sk) for sk in touched])
    for trade_prefix, slot_prefix in prefixes:
        _check_slots(state, trade_prefix, slot_prefix)


def _check_slots(state: State, trade_prefix: bytes, slot_prefix: bytes) -> None:
    """``energy_balanced`` over the trades and slot records under these prefixes."""
    per_slot: dict[bytes, list[Trade]] = {}
    for rest, t in read_prefix(state, trade_prefix, Trade):
        k = trade_prefix + rest
        _check_trade(k, t)
        per_slot.setdefault(k[len(keeper.TRADE):len(keeper.TRADE) + 8], []).append(t)
    for rest, rec in read_prefix(state, slot_prefix, SlotRecord):
        sk = (slot_prefix + rest)[len(keeper.SLOT):]
        trades = per_slot.get(sk, [])
        volume = sum(t.energy_wh for t in trades)
        slot = int.from_bytes(sk, "big")
        if not rec.bought_wh == rec.sold_wh == rec.volume_wh == volume:
            raise InvariantViolation(f"energy-balanced: slot {slot} bought {rec.bought_wh} "
                                     f"sold {rec.sold_wh} trades {volume}")
        _check_order_totals(slot, trades, settled=False)
        if rec.status == "settled":
            delivered = sum(t.delivered_wh or 0 for t in trades)
            if delivered != rec.delivered_wh or not all(t.settled for t in trades):
                raise InvariantViolation(f"energy-balanced: slot {slot} delivered "
                                         f"{rec.delivered_wh} != trades {delivered}")
            _check_order_totals(slot, trades, settled=True)
