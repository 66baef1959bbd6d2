"""Market: slots, orders with escrow, sealed bids, clearing at slot close, settlement
against meter readings, retail fallback. Full rules and the slot timeline: docs/market.md.

Escrow: a buy order locks ``ceil(energy * limit / 1000) + ceil(energy * max fee rate /
1000)``; a sell order locks a delivery deposit ``ceil(energy * deposit rate / 1000)`` with
the rate ``deposit_micro_per_kwh`` scaled by the seller's sanction tier; a sealed-bid
commitment locks ``commit_deposit_micro``, forfeited to the grid account if not revealed.
Clearing (``gridledger.market.clear_slot``, the ``mechanism`` param, grid fees and the
DSO's envelopes) runs in the first block at or after the reveal deadline and releases what
can no longer be needed; settlement runs in the first block at or after the settlement
deadline (see ``settlement``). The grid account (param ``grid_account``, default the first
dso of genesis) receives grid fees, imbalance charges, forfeits and retail payments, and
pays feed-in.

State
  ``mkt/o/<slot><order_id>``    {owner, side, energy_wh, price_micro_per_kwh, held_micro,
                                 deposit_rate, seq, sealed, filled_wh}
  ``mkt/c/<slot><commit_id>``   {owner, commitment, deposit_micro, seq}
  ``mkt/n/<slot><owner>``       {n, side}: orders + commitments, and the slot's side
  ``mkt/env/<slot><cp>``        [import_max_wh, export_max_wh] until clearing
  ``mkt/t/<slot><index:4>``     trade {buy_order, sell_order, buyer, seller, energy_wh,
                                 price_micro_per_kwh, payment_micro, grid_fee_micro,
                                 grid_fee_micro_per_kwh, settled,
                                 + after settlement delivered_wh, received_wh, paid_micro,
                                 fee_paid_micro, compensation_micro, penalty_micro}
  ``mkt/slot/<slot>``           {status: cleared|failed|none|settled, price_micro_per_kwh,
                                 volume_wh, bought_wh, sold_wh, trades, delivered_wh, ...}
  ``mkt/rh/<addr>``              {held_micro, peak_wh, debt_micro}: retail hold (locked
                                 against unsettled retail import) and unpaid retail debt
  ``mkt/open``, ``mkt/unsettled``, ``mkt/settled``, ``mkt/seq``   slot lists, arrival counter
  Trades and slot records are pruned (with the slot's readings) ``dispute_window_s`` after
  settlement; blocks and receipts keep the history.
  (``<slot>`` is 8 bytes big-endian, so key order is slot order)
Messages (roles prosumer/consumer unless noted; selling needs prosumer)
  ``market/order``     {slot, side: buy|sell, energy_wh, price_micro_per_kwh}  id = tx hash
  ``market/cancel``    {slot, order_id}      an order or a commitment, before gate closure
  ``market/replace``   {slot, order_id, energy_wh, price_micro_per_kwh}  new id = tx hash
  ``market/commit``    {slot, commitment}    commitment = ``types.order_commitment(...)``
  ``market/reveal``    {slot, commit_id, side, energy_wh, price_micro_per_kwh, salt}
  ``market/envelope``  {slot, envelopes: [[cp, import_max_wh, export_max_wh], ...]} (dso)
Events
  tx: ``order_placed``, ``order_cancelled``, ``order_replaced``, ``committed``, ``envelopes_set``
  block: ``trade`` {slot, index, buyer, seller, energy_wh, price_micro_per_kwh, payment_micro,
  grid_fee_micro}; ``slot_cleared`` {slot, mechanism, price_micro_per_kwh, volume_wh, trades,
  orders, clipped_wh}; ``commitment_forfeited``; ``slot_failed``; ``non_delivery`` {slot,
  trade, seller, buyer, shortfall_wh, compensation_micro, penalty_micro}; ``bill`` (one per
  participant and settled slot); ``unpaid``; ``grid_unpaid``; ``retail_hold_short``;
  ``slot_settled``; ``reputation``
Invariants
  escrow-backed: market holds (escrow, deposits, retail holds) per owner are >= 0 and <=
  the owner's bank lock.
  energy-balanced: per slot bought == sold == sum of trades; delivered == sum of deliveries;
  money-rounded: every order's money over its trades is its exact amount rounded down or up
  (the carry rule of ``gridledger.market.rounding``).
  (Money conservation itself is bank's total-supply invariant: every market payment is a
  bank move, lock, unlock or pay-from-locked.)
"""

from gridledger.ledger.modules.market.invariants import market_holds
from gridledger.ledger.modules.market.keeper import get_slot, get_trade, trades_of_slot
from gridledger.ledger.modules.market.module import MODULE
from gridledger.ledger.modules.market.types import (
    gate_closure,
    order_commitment,
    reveal_deadline,
    settlement_deadline,
)

__all__ = ["MODULE", "gate_closure", "get_slot", "get_trade", "market_holds",
           "order_commitment", "reveal_deadline", "settlement_deadline", "trades_of_slot"]
