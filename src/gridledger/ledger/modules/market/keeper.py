"""The only code that touches ``mkt/`` keys.

Every amount the market holds for someone is both a bank lock (``bank.lock``) and a field
of one market record (an order's ``held_micro`` or a commitment's ``deposit_micro``), and
the two move together: the ``escrow-backed`` invariant checks they agree.
"""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvalidBody
from gridledger.ledger.modules.bank import keeper as bank
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
        state.set_obj(key, sorted(slots + [slot]))


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
    state.set_obj(SETTLED, sorted(state.get_obj(SETTLED, []) + [[slot, settled_at]]))


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

def get_order(state: State, slot: int, oid: bytes) -> dict[str, Any] | None:
    v: dict[str, Any] | None = state.get_obj(ORDER + sk(slot) + oid)
    return v


def put_order(state: State, slot: int, oid: bytes, rec: dict[str, Any]) -> None:
    state.set_obj(ORDER + sk(slot) + oid, rec)


def delete_order(state: State, slot: int, oid: bytes) -> None:
    state.delete(ORDER + sk(slot) + oid)


def orders_of_slot(state: State, slot: int) -> list[tuple[bytes, dict[str, Any]]]:
    """``(order_id, record)`` of every order of ``slot``, in order-id order."""
    prefix = ORDER + sk(slot)
    return [(k[len(prefix):], v) for k, v in state.items_with_prefix(prefix)]


def get_commit(state: State, slot: int, cid: bytes) -> dict[str, Any] | None:
    v: dict[str, Any] | None = state.get_obj(COMMIT + sk(slot) + cid)
    return v


def put_commit(state: State, slot: int, cid: bytes, rec: dict[str, Any]) -> None:
    state.set_obj(COMMIT + sk(slot) + cid, rec)


def delete_commit(state: State, slot: int, cid: bytes) -> None:
    state.delete(COMMIT + sk(slot) + cid)


def commits_of_slot(state: State, slot: int) -> list[tuple[bytes, dict[str, Any]]]:
    prefix = COMMIT + sk(slot)
    return [(k[len(prefix):], v) for k, v in state.items_with_prefix(prefix)]


# -- per-participant counts (max orders per slot, one side per slot) ------------------------------

def count_of(state: State, slot: int, owner: bytes) -> dict[str, Any]:
    c: dict[str, Any] = state.get_obj(COUNT + sk(slot) + owner, {"n": 0, "side": None})
    return c


def bump_count(state: State, slot: int, owner: bytes, side: str | None, limit: int) -> None:
    """Count one more order/commitment; ``side`` None for a sealed commitment."""
    c = count_of(state, slot, owner)
    if c["n"] >= limit:
        raise InvalidBody(f"max-orders-per-slot: at most {limit} orders and commitments per slot")
    set_side(c, side)
    state.set_obj(COUNT + sk(slot) + owner, {"n": c["n"] + 1, "side": c["side"]})


def set_side(c: dict[str, Any], side: str | None) -> None:
    # One side per slot: a participant cannot trade with itself (wash trades) and each
    # participant is either a buyer or a seller when its meter is settled.
    if side is not None:
        if c["side"] not in (None, side):
            raise InvalidBody(f"one-side-per-slot: already {c['side']}ing in this slot")
        c["side"] = side


def reveal_side(state: State, slot: int, owner: bytes, side: str) -> None:
    c = count_of(state, slot, owner)
    set_side(c, side)
    state.set_obj(COUNT + sk(slot) + owner, c)


def drop_count(state: State, slot: int, owner: bytes) -> None:
    """One order/commitment fewer; the side stays fixed until none is left."""
    c = count_of(state, slot, owner)
    n = c["n"] - 1
    if n <= 0:
        state.delete(COUNT + sk(slot) + owner)
    else:
        state.set_obj(COUNT + sk(slot) + owner, {"n": n, "side": c["side"]})


def delete_counts(state: State, slot: int) -> None:
    for k in state.keys_with_prefix(COUNT + sk(slot)):
        state.delete(k)


# -- envelopes, trades, slot records ------------------------------------------------------------

def put_envelope(state: State, slot: int, cp: str, import_max_wh: int, export_max_wh: int) -> None:
    state.set_obj(ENVELOPE + sk(slot) + cp.encode(), [import_max_wh, export_max_wh])


def take_envelopes(state: State, slot: int) -> dict[str, tuple[int, int]]:
    """Remove and return the envelopes published for ``slot`` (cp -> (import, export))."""
    prefix = ENVELOPE + sk(slot)
    out: dict[str, tuple[int, int]] = {}
    for k, v in list(state.items_with_prefix(prefix)):
        out[k[len(prefix):].decode()] = (int(v[0]), int(v[1]))
        state.delete(k)
    return out


def put_trade(state: State, slot: int, index: int, rec: dict[str, Any]) -> None:
    state.set_obj(TRADE + sk(slot) + index.to_bytes(4, "big"), rec)


def get_trade(state: State, slot: int, index: int) -> dict[str, Any] | None:
    if not 0 <= index < 2**32:
        return None
    v: dict[str, Any] | None = state.get_obj(TRADE + sk(slot) + index.to_bytes(4, "big"))
    return v


def trades_of_slot(state: State, slot: int) -> list[dict[str, Any]]:
    """Trade records of ``slot`` in clearing order (their index)."""
    return [v for _, v in state.items_with_prefix(TRADE + sk(slot))]


def get_slot(state: State, slot: int) -> dict[str, Any] | None:
    v: dict[str, Any] | None = state.get_obj(SLOT + sk(slot))
    return v


def put_slot(state: State, slot: int, rec: dict[str, Any]) -> None:
    state.set_obj(SLOT + sk(slot), rec)


# -- escrow ------------------------------------------------------------------------------------------

def hold(state: State, owner: bytes, amount: int) -> None:
    """Lock ``amount`` of ``owner``'s money for the market (raises InsufficientFunds)."""
    if amount:
        bank.lock(state, owner, amount)


def release(state: State, owner: bytes, amount: int) -> None:
    if amount:
        bank.unlock(state, owner, amount)


def pay_held(state: State, src: bytes, dst: bytes, amount: int) -> None:
    """Pay out of money the market holds for ``src``."""
    if amount:
        bank.pay_from_locked(state, src, dst, amount)


# -- retail hold and debt (settlement) -------------------------------------------------------------

_NO_RETAIL = {"held_micro": 0, "peak_wh": 0, "debt_micro": 0}


def get_retail(state: State, addr: bytes) -> dict[str, int]:
    """``{held_micro, peak_wh, debt_micro}`` of ``addr`` (zeros if it has none)."""
    rec: dict[str, int] | None = state.get_obj(RETAIL + addr)
    return dict(_NO_RETAIL) if rec is None else rec


def put_retail(state: State, addr: bytes, rec: dict[str, int]) -> None:
    """Store ``addr``'s retail record; an all-zero record is deleted (no state for nothing)."""
    if any(rec.values()):
        state.set_obj(RETAIL + addr, rec)
    else:
        state.delete(RETAIL + addr)
