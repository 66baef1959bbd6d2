"""Market invariants, checked after every block in one pass over the ``mkt/`` keys."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.state import State
from gridledger.market.rounding import NANO_PER_MICRO


def market_holds(state: State) -> dict[bytes, int]:
    """Money the market holds per owner: open escrow, delivery deposits, commitment deposits,
    retail holds."""
    holds: dict[bytes, int] = {}
    for _, o in state.items_with_prefix(keeper.ORDER):
        holds[o["owner"]] = holds.get(o["owner"], 0) + int(o["held_micro"])
    for _, c in state.items_with_prefix(keeper.COMMIT):
        holds[c["owner"]] = holds.get(c["owner"], 0) + int(c["deposit_micro"])
    for k, r in state.items_with_prefix(keeper.RETAIL):
        owner = k[len(keeper.RETAIL):]
        holds[owner] = holds.get(owner, 0) + int(r["held_micro"])
    return holds


def escrow_backed(state: State) -> None:
    """Invariant escrow-backed: every amount the market holds for someone is non-negative and
    locked in the bank (market holds <= bank lock, per owner)."""
    for owner, held in sorted(market_holds(state).items()):
        if held < 0:
            raise InvariantViolation(f"escrow-backed: {owner.hex()[:16]} holds {held} < 0")
        lock = bank.locked(state, owner)
        if held > lock:
            raise InvariantViolation(f"escrow-backed: {owner.hex()[:16]} market holds {held} "
                                     f"> bank lock {lock}")


def _check_trade(k: bytes, t: dict[str, Any]) -> None:
    e, d = int(t["energy_wh"]), int(t.get("delivered_wh", 0))
    if e <= 0 or not 0 <= d <= e or not 0 <= int(t.get("received_wh", 0)) <= d:
        raise InvariantViolation(f"energy-balanced: trade {k!r} energy {e}, delivered {d}")
    if not _rounded(t["payment_micro"], e * int(t["price_micro_per_kwh"])):
        raise InvariantViolation(f"energy-balanced: trade {k!r} payment inconsistent")


def _rounded(micro: int, exact_nano: int) -> bool:
    """``micro`` is ``exact_nano`` rounded down or up to whole micro-units."""
    return -NANO_PER_MICRO < micro * NANO_PER_MICRO - exact_nano < NANO_PER_MICRO


def _check_order_totals(slot: int, trades: list[dict[str, Any]], settled: bool) -> None:
    """Every order's money over its trades is its exact total rounded down or up: what it
    was cleared for, and once settled, what it paid or received for delivered energy."""
    exact: dict[tuple[str, bytes, str], int] = {}
    paid: dict[tuple[str, bytes, str], int] = {}
    for t in trades:
        e = int(t["delivered_wh"]) if settled else int(t["energy_wh"])
        amounts = [("payment", t["price_micro_per_kwh"],
                    t["paid_micro"] if settled else t["payment_micro"])]
        if "grid_fee_micro_per_kwh" in t:
            amounts.append(("fee", t["grid_fee_micro_per_kwh"],
                            t["fee_paid_micro"] if settled else t["grid_fee_micro"]))
        for what, rate, micro in amounts:
            for side in ("buy_order", "sell_order"):
                if what == "fee" and side == "sell_order":
                    continue
                key = (what, t[side], side)
                exact[key] = exact.get(key, 0) + e * int(rate)
                paid[key] = paid.get(key, 0) + int(micro)
    for key in sorted(exact):
        if not _rounded(paid[key], exact[key]):
            raise InvariantViolation(f"money-rounded: slot {slot} {key[2]} {key[1].hex()[:16]} "
                                     f"{key[0]} {paid[key]} micro for {exact[key]} nano")


def energy_balanced(state: State) -> None:
    """Invariant energy-balanced: per cleared slot, energy bought == energy sold == the sum
    of its trades; per settled slot, energy delivered == the sum of per-trade deliveries,
    each within its trade; every trade's payment, and every order's payments and fees over
    its trades (cleared, and once settled delivered), are their exact amounts rounded down
    or up (rule ``money-rounded``)."""
    per_slot: dict[bytes, list[dict[str, Any]]] = {}
    for k, t in state.items_with_prefix(keeper.TRADE):
        _check_trade(k, t)
        per_slot.setdefault(k[len(keeper.TRADE):len(keeper.TRADE) + 8], []).append(t)
    for k, rec in state.items_with_prefix(keeper.SLOT):
        sk = k[len(keeper.SLOT):]
        trades = per_slot.get(sk, [])
        volume = sum(int(t["energy_wh"]) for t in trades)
        slot = int.from_bytes(sk, "big")
        if not rec["bought_wh"] == rec["sold_wh"] == rec["volume_wh"] == volume:
            raise InvariantViolation(f"energy-balanced: slot {slot} bought {rec['bought_wh']} "
                                     f"sold {rec['sold_wh']} trades {volume}")
        _check_order_totals(slot, trades, settled=False)
        if rec["status"] == "settled":
            delivered = sum(int(t["delivered_wh"]) for t in trades)
            if delivered != rec["delivered_wh"] or not all(t["settled"] for t in trades):
                raise InvariantViolation(f"energy-balanced: slot {slot} delivered "
                                         f"{rec['delivered_wh']} != trades {delivered}")
            _check_order_totals(slot, trades, settled=True)
