"""The only code that touches ``mkt/`` keys.

Every amount the market holds for someone is both a bank lock and a field of one market
record (an order's ``held_micro``, a commitment's ``deposit_micro`` or a retail hold's
``held_micro``), and the two move together (``hold`` / ``release`` / ``pay_held`` through
the bank protocol): the ``escrow-backed`` invariant checks they agree.
"""

from __future__ import annotations

import dataclasses

from gridledger.ledger.modules.market.errors import MaxOrdersPerSlot, OneSidePerSlot
from gridledger.ledger.modules.market.types import (
    Commitment,
    Count,
    Order,
    Retail,
    Side,
    SlotRecord,
    Trade,
)
from gridledger.ledger.record import read, read_prefix
from gridledger.ledger.state import State

ORDER = b"mkt/o/"        # + slot(8) + order_id(32) -> order
COMMIT = b"mkt/c/"       # + slot(8) + commit_id(32) -> sealed-bid commitment
COUNT = b"mkt/n/"        # + slot(8) + owner(32) -> {n, side}
ENVELOPE = b"mkt/env/"   # + slot(8) + cp -> [import_max_wh, export_max_wh]
SLOT = b"mkt/slot/"      # + slot(8) -> slot record (cleared / settled)
TRADE = b"mkt/t/"        # + slot(8) + index(4) -> trade record
OPEN = b"mkt/open"       # [slot] with orders, commitments or envelopes, not yet cleared
UNSETTLED = b"mkt/unsettled"  # [slot] cleared, not yet settled
SETTLED = b"mkt/settled"  # [[slot, settled_at]] kept as dispute evidence until pruned
SEQ = b"mkt/seq"         # arrival counter: order of submission for the continuous book
RETAIL = b"mkt/rh/"      # + addr(32) -> {held_micro, peak_wh, debt_micro}: retail hold and debt


def sk(slot: int) -> bytes:
    """Fixed-width big-endian slot, so key order is slot order."""
    return slot.to_bytes(8, "big")


# -- slot lists ------------------------------------------------------------------------------

def _add(state: State, key: bytes, slot: int) -> None:
    slots: list[int] = state.get_obj(key, [])
    if slot not in slots:
        state.set_obj(key, sorted([*slots, slot]))


def _remove(state: State, key: bytes, slot: int) -> None:
    slots = [s for s in state.get_obj(key, []) if s != slot]
    if slots:
        state.set_obj(key, slots)
    else:
        state.delete(key)


def open_slots(state: State) -> list[int]:
    return list(state.get_obj(OPEN, []))


def unsettled_slots(state: State) -> list[int]:
    return list(state.get_obj(UNSETTLED, []))


def mark_open(state: State, slot: int) -> None:
    _add(state, OPEN, slot)


def mark_cleared(state: State, slot: int) -> None:
    _remove(state, OPEN, slot)
    _add(state, UNSETTLED, slot)


def mark_settled(state: State, slot: int, settled_at: int) -> None:
    _remove(state, UNSETTLED, slot)
    state.set_obj(SETTLED, sorted([*state.get_obj(SETTLED, []), [slot, settled_at]]))


def settled_slots(state: State) -> list[tuple[int, int]]:
    """``(slot, settled_at)`` of settled slots whose records are still in state."""
    return [(int(s), int(t)) for s, t in state.get_obj(SETTLED, [])]


def prune_slot(state: State, slot: int) -> None:
    """Drop a settled slot's trades and record once its dispute window has closed; the
    blocks and receipts keep the history, state keeps what can still be disputed."""
    for k in state.keys_with_prefix(TRADE + sk(slot)):
        state.delete(k)
    state.delete(SLOT + sk(slot))
    rest = [[s, t] for s, t in state.get_obj(SETTLED, []) if s != slot]
    if rest:
        state.set_obj(SETTLED, rest)
    else:
        state.delete(SETTLED)


def next_seq(state: State) -> int:
    n = state.get_int(SEQ)
    state.set_int(SEQ, n + 1)
    return n


# -- orders and commitments --------------------------------------------------------------------

def get_order(state: State, slot: int, oid: bytes) -> Order | None:
    return read(state, ORDER + sk(slot) + oid, Order)


def put_order(state: State, slot: int, oid: bytes, rec: Order) -> None:
    state.set_obj(ORDER + sk(slot) + oid, rec.to_obj())


def reprice_order(state: State, slot: int, oid: bytes, price_micro_per_kwh: int) -> None:
    """Set an open order's limit to ``price_micro_per_kwh`` (surveillance mitigating an offer
    to its reference level before the slot clears). The money held stays: a sell's deposit
    does not depend on its price, and a buy is only ever lowered, so its escrow still
    covers it (clearing releases what is not needed)."""
    rec = get_order(state, slot, oid)
    if rec is not None:
        put_order(state, slot, oid, dataclasses.replace(rec, price_micro_per_kwh=price_micro_per_kwh))


def delete_order(state: State, slot: int, oid: bytes) -> None:
    state.delete(ORDER + sk(slot) + oid)


def orders_of_slot(state: State, slot: int) -> list[tuple[bytes, Order]]:
    """``(order_id, order)`` of every order of ``slot``, in order-id order."""
    return read_prefix(state, ORDER + sk(slot), Order)


def get_commit(state: State, slot: int, cid: bytes) -> Commitment | None:
    return read(state, COMMIT + sk(slot) + cid, Commitment)


def put_commit(state: State, slot: int, cid: bytes, rec: Commitment) -> None:
    state.set_obj(COMMIT + sk(slot) + cid, rec.to_obj())


def delete_commit(state: State, slot: int, cid: bytes) -> None:
    state.delete(COMMIT + sk(slot) + cid)


def commits_of_slot(state: State, slot: int) -> list[tuple[bytes, Commitment]]:
    return read_prefix(state, COMMIT + sk(slot), Commitment)


# -- per-participant counts (max orders per slot, one side per slot) ------------------------------

def count_of(state: State, slot: int, owner: bytes) -> Count:
    c = read(state, COUNT + sk(slot) + owner, Count)
    return Count(0, None) if c is None else c


def _with_side(c: Count, side: Side | None) -> Count:
    # One side per slot: a participant cannot trade with itself (wash trades) and each
    # participant is either a buyer or a seller when its meter is settled.
    if side is None:
        return c
    if c.side not in (None, side):
        raise OneSidePerSlot(f"already {c.side}ing in this slot")
    return Count(c.n, side)


def bump_count(state: State, slot: int, owner: bytes, side: Side | None, limit: int) -> None:
    """Count one more order/commitment; ``side`` None for a sealed commitment.

    Raises:
        MaxOrdersPerSlot: the participant already has ``limit`` in the slot.
        OneSidePerSlot: ``side`` differs from the side it already trades.
    """
    c = count_of(state, slot, owner)
    if c.n >= limit:
        raise MaxOrdersPerSlot(f"at most {limit} orders and commitments per slot")
    c = _with_side(c, side)
    state.set_obj(COUNT + sk(slot) + owner, Count(c.n + 1, c.side).to_obj())


def reveal_side(state: State, slot: int, owner: bytes, side: Side) -> None:
    """A revealed commitment fixes the participant's side (``one-side-per-slot``)."""
    state.set_obj(COUNT + sk(slot) + owner, _with_side(count_of(state, slot, owner), side).to_obj())


def drop_count(state: State, slot: int, owner: bytes) -> None:
    """One order/commitment fewer; the side stays fixed until none is left."""
    c = count_of(state, slot, owner)
    if c.n <= 1:
        state.delete(COUNT + sk(slot) + owner)
    else:
        state.set_obj(COUNT + sk(slot) + owner, Count(c.n - 1, c.side).to_obj())


def delete_counts(state: State, slot: int) -> None:
    for k in state.keys_with_prefix(COUNT + sk(slot)):
        state.delete(k)


# -- envelopes, trades, slot records ------------------------------------------------------------

def put_envelope(state: State, slot: int, cp: str, import_max_wh: int, export_max_wh: int) -> None:
    state.set_obj(ENVELOPE + sk(slot) + cp.encode(), [import_max_wh, export_max_wh])


def envelopes_of(state: State, slot: int) -> dict[str, tuple[int, int]]:
    """The envelopes published for ``slot`` (cp -> (import, export) Wh), until it clears."""
    prefix = ENVELOPE + sk(slot)
    return {k[len(prefix):].decode(): (int(v[0]), int(v[1]))
            for k, v in state.items_with_prefix(prefix)}


def take_envelopes(state: State, slot: int) -> dict[str, tuple[int, int]]:
    """Remove and return the envelopes published for ``slot`` (cp -> (import, export))."""
    prefix = ENVELOPE + sk(slot)
    out: dict[str, tuple[int, int]] = {}
    for k, v in list(state.items_with_prefix(prefix)):
        out[k[len(prefix):].decode()] = (int(v[0]), int(v[1]))
        state.delete(k)
    return out


def put_trade(state: State, slot: int, index: int, rec: Trade) -> None:
    state.set_obj(TRADE + sk(slot) + index.to_bytes(4, "big"), rec.to_obj())


def trade(state: State, slot: int, index: int) -> Trade | None:
    """Trade ``index`` of ``slot`` (its clearing order), while the slot is in state."""
    if not 0 <= index < 2**32:
        return None
    return read(state, TRADE + sk(slot) + index.to_bytes(4, "big"), Trade)


def trades_of_slot(state: State, slot: int) -> list[Trade]:
    """Trade records of ``slot`` in clearing order (their index)."""
    return [t for _, t in read_prefix(state, TRADE + sk(slot), Trade)]


def slot_record(state: State, slot: int) -> SlotRecord | None:
    """The slot's clearing / settlement record, while the slot is in state."""
    return read(state, SLOT + sk(slot), SlotRecord)


def put_slot(state: State, slot: int, rec: SlotRecord) -> None:
    state.set_obj(SLOT + sk(slot), rec.to_obj())


# -- retail hold and debt (settlement) -------------------------------------------------------------

def retail_of(state: State, addr: bytes) -> Retail:
    """``addr``'s retail hold, peak import and debt (zeros if it has none)."""
    rec = read(state, RETAIL + addr, Retail)
    return Retail() if rec is None else rec


def put_retail(state: State, addr: bytes, rec: Retail) -> None:
    """Store ``addr``'s retail record; an all-zero record is deleted (no state for nothing)."""
    if rec == Retail():
        state.delete(RETAIL + addr)
    else:
        state.set_obj(RETAIL + addr, rec.to_obj())


def retail_records(state: State) -> list[tuple[bytes, Retail]]:
    """Every stored retail record, by address."""
    return read_prefix(state, RETAIL, Retail)
