"""Columnar order book shared by every mechanism: validation, canonical keys, envelopes,
and turning matched fills into a ``ClearingResult``.

Everything here is int64 numpy; the bounds in ``types`` keep it inside int64. Sorting always
uses unique keys (price, then the order id), so the result is independent of the input
order and of the sort algorithm.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from operator import attrgetter

import numpy as np
from numpy.typing import NDArray

from gridledger.market.fees import GridFees, fee_rates
from gridledger.market.rounding import carry_round, round_forest
from gridledger.market.types import (
    MAX_ADDRESS_LEN,
    MAX_ENERGY_WH,
    MAX_ORDERS,
    MAX_PRICE_MICRO_PER_KWH,
    ORDER_ID_LEN,
    ClearingResult,
    MarketInputError,
    Mechanism,
    Order,
    Trade,
    WhByOrder,
    _check_int,
)

I64 = NDArray[np.int64]

Envelope = tuple[int, int]
"""``(import_max_wh, export_max_wh)`` for one connection point and slot."""


@dataclass(frozen=True, slots=True)
class Book:
    """An order book as columns; index ``i`` is ``orders[i]`` as given."""

    orders: Sequence[Order]
    ids: list[bytes]
    owners: list[bytes]
    is_buy: NDArray[np.bool_]
    energy_wh: I64
    price: I64
    merit_key: I64
    """Unique sort key: bids by price descending, asks by price ascending, then order id."""
    canon: I64
    """Order indices sorted by order id (the canonical output order)."""
    sorted_ids: NDArray[np.bytes_]
    """Order ids as an 'S32' column in canonical order."""


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small tuples.

    Creating ~1M trade tuples otherwise triggers repeated full collections that traverse
    every live object (including the caller's order book) and triple the clearing time of
    a 1M-order book. No reference cycles are created here, so nothing is leaked; results
    do not depend on it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def to_book(orders: Sequence[Order]) -> Book:
    """Validate ``orders`` as one book and build its columns.

    Raises:
        MarketInputError: a malformed order, an out-of-range value, a duplicate order id or
            too many orders.
    """
    n = len(orders)
    if n > MAX_ORDERS:
        raise MarketInputError(f"{n} orders exceed MAX_ORDERS={MAX_ORDERS}")
    # map/attrgetter/set(map(type, ...)) keep the per-order work in C: a 1M-order book is
    # converted in a fraction of a second.
    ids: list[bytes] = list(map(attrgetter("order_id"), orders))
    owners: list[bytes] = list(map(attrgetter("owner"), orders))
    sides: list[str] = list(map(attrgetter("side"), orders))
    energy_list: list[int] = list(map(attrgetter("energy_wh"), orders))
    price_list: list[int] = list(map(attrgetter("price_micro_per_kwh"), orders))
    # Orders are checked on construction; re-check cheaply here because clearing is
    # consensus-critical and duck-typed or hand-built objects must not get through
    # (np.array would silently truncate 1.5 or accept True as 1).
    if n and (set(map(type, ids)) != {bytes} or set(map(len, ids)) != {ORDER_ID_LEN}):
        raise MarketInputError(f"every order_id must be {ORDER_ID_LEN} bytes")
    if n and (
        set(map(type, owners)) != {bytes}
        or not 0 < min(map(len, owners)) <= max(map(len, owners)) <= MAX_ADDRESS_LEN
    ):
        raise MarketInputError(f"every owner must be 1..{MAX_ADDRESS_LEN} bytes")
    if n and (set(map(type, energy_list)) != {int} or set(map(type, price_list)) != {int}):
        raise MarketInputError("energy_wh and price_micro_per_kwh must be int")
    is_buy = np.fromiter(map("buy".__eq__, sides), dtype=np.bool_, count=n)
    if sides.count("sell") + int(is_buy.sum()) != n:
        raise MarketInputError("side must be 'buy' or 'sell'")
    try:
        energy = np.array(energy_list, dtype=np.int64).reshape(n)
        price = np.array(price_list, dtype=np.int64).reshape(n)
    except OverflowError as exc:
        raise MarketInputError("energy_wh or price_micro_per_kwh exceeds int64") from exc
    if n and (energy.min() < 1 or energy.max() > MAX_ENERGY_WH):
        raise MarketInputError(f"energy_wh outside [1, {MAX_ENERGY_WH}]")
    if n and (price.min() < 0 or price.max() > MAX_PRICE_MICRO_PER_KWH):
        raise MarketInputError(f"price_micro_per_kwh outside [0, {MAX_PRICE_MICRO_PER_KWH}]")

    # 'S32' compares as unsigned bytes over the full fixed width (all ids are exactly 32
    # bytes), i.e. the same order as Python's bytes comparison.
    id_arr = np.frombuffer(b"".join(ids), dtype=f"S{ORDER_ID_LEN}")
    canon = _argsort_ids(id_arr)
    sorted_ids = id_arr[canon]
    if n > 1:
        dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if dup.size:
            raise MarketInputError(f"duplicate order_id {ids[int(canon[dup[0]])].hex()}")
    rank = np.empty(n, dtype=np.int64)
    rank[canon] = np.arange(n, dtype=np.int64)
    # One int64 key per order (<= 1e9 * 1e7 = 1e16): a single sort gives merit order with
    # the order id as tie-break, so equal prices never depend on submission order.
    width = np.int64(max(n, 1))
    key_price = np.where(is_buy, MAX_PRICE_MICRO_PER_KWH - price, price)
    merit_key = key_price * width + rank
    return Book(orders, ids, owners, is_buy, energy, price, merit_key, canon, sorted_ids)


def _argsort_ids(id_arr: NDArray[np.bytes_]) -> I64:
    """Indices sorting 32-byte ids in byte order.

    Fast path: sort by the first 8 bytes as a big-endian uint64 (an integer sort, about
    twice as fast as sorting 32-byte strings). If no two ids share that prefix the prefix
    order *is* the byte order; otherwise (duplicates, or crafted ids) sort the full ids.
    Both paths give the same permutation, the fast one just gets there sooner.
    """
    n = len(id_arr)
    prefix = np.frombuffer(id_arr.tobytes(), dtype=">u8").reshape(n, ORDER_ID_LEN // 8)[:, 0]
    order = np.argsort(prefix, kind="stable")
    sp = prefix[order]
    if n < 2 or bool(np.all(sp[1:] != sp[:-1])):
        return order.astype(np.int64)
    return np.argsort(id_arr, kind="stable").astype(np.int64)


def admit_energy(book: Book, envelopes: Mapping[bytes, Envelope] | None) -> I64:
    """Energy of each order admitted by the operating envelopes.

    Rule: for each owner with an envelope ``(import_max_wh, export_max_wh)``, its buy orders
    are admitted in merit order (highest price first, then order id) until their total
    reaches ``import_max_wh``, and its sell orders (lowest price first) until
    ``export_max_wh``; the order that crosses the cap is cut, later ones get 0. Capping the
    gross volume per side guarantees the net import/export cap for every possible clearing
    outcome, with no coupling between the clearing and the envelope. Owners without an
    envelope are not limited.
    """
    admitted = book.energy_wh.copy()
    if not envelopes:
        return admitted
    n = len(book.ids)
    cap = np.full(n, -1, dtype=np.int64)
    group = np.zeros(n, dtype=np.int64)
    group_of: dict[bytes, int] = {}
    if any(type(owner) is not bytes for owner in envelopes):
        raise MarketInputError("envelope keys must be bytes owners")
    for owner in sorted(envelopes):  # sorted: the first error reported is reproducible
        env = envelopes[owner]
        if not (isinstance(env, (tuple, list)) and len(env) == 2):  # lists: decoded CBOR
            raise MarketInputError("an envelope is (import_max_wh, export_max_wh)")
        _check_int("import_max_wh", env[0], 0, MAX_ENERGY_WH * MAX_ORDERS)
        _check_int("export_max_wh", env[1], 0, MAX_ENERGY_WH * MAX_ORDERS)
    for i, (owner, buys) in enumerate(zip(book.owners, book.is_buy.tolist(), strict=True)):
        limits = envelopes.get(owner)
        if limits is not None:
            cap[i] = limits[0] if buys else limits[1]
            group[i] = group_of.setdefault(owner, len(group_of))
    sel = np.flatnonzero(cap >= 0)
    if sel.size == 0:
        return admitted
    # Groups are (owner, side); inside a group, merit order. The group numbering follows
    # input order but groups never interact, so the result does not depend on it.
    order = sel[np.lexsort((book.merit_key[sel], book.is_buy[sel], group[sel]))]
    q = book.energy_wh[order]
    g = group[order] * 2 + book.is_buy[order]
    starts = np.ones(len(order), dtype=np.bool_)
    starts[1:] = g[1:] != g[:-1]
    csum = np.cumsum(q)
    before = csum - q  # volume of earlier orders, over all groups
    group_base = np.maximum.accumulate(np.where(starts, before, 0))
    prior = before - group_base  # volume of earlier orders in the same group
    admitted[order] = np.clip(cap[order] - prior, 0, q)
    return admitted


def build_result(
    book: Book,
    mechanism: Mechanism,
    price: int | None,
    admitted: I64,
    t_buy: I64,
    t_sell: I64,
    t_energy: I64,
    t_price: I64,
    fees: GridFees | None,
    slot_of_day: int,
) -> ClearingResult:
    """Turn matched fills (order indices, Wh, price per trade) into a ``ClearingResult``.

    Payments and fees are rounded by the carry rule of ``gridledger.market.rounding``, so
    every order's total over its trades is its exact total (``energy_wh * rate / 1000``)
    rounded down or up, however many trades it has. The auctions' trade forest is walked in
    trade order (vectorised); the continuous book's in its depth-first order.
    """
    exact_pay = t_energy * t_price  # nano-units; <= 1e18 < 2**63
    if mechanism == "continuous":
        pay = np.array(round_forest(list(zip(t_buy.tolist(), t_sell.tolist(), strict=True)),
                                    exact_pay.tolist()), dtype=np.int64).reshape(len(t_energy))
    else:
        pay = carry_round(exact_pay)
    if fees is None:
        rate = np.zeros(len(t_energy), dtype=np.int64)
    else:
        rate = fee_rates(fees, slot_of_day, book.owners, t_buy, t_sell)
    fee = _round_fees(t_buy, t_energy * rate, len(book.ids))  # <= 3e18 < 2**63
    with _gc_paused():
        return _assemble(book, mechanism, price, admitted, t_buy, t_sell, t_energy, t_price,
                         pay, fee, rate)


def _round_fees(t_buy: I64, exact_nano: I64, n_orders: int) -> I64:
    """Grid fees by ``round_grouped``'s rule, vectorised: one carry through the trades
    grouped by buy order (groups in order of their first trade). The auctions' trades are
    already grouped, so the sort is the identity there."""
    n = len(t_buy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.full(n_orders, n, dtype=np.int64)
    np.minimum.at(first, t_buy, np.arange(n, dtype=np.int64))
    seq = np.argsort(first[t_buy], kind="stable")
    fee = np.empty(n, dtype=np.int64)
    fee[seq] = carry_round(exact_nano[seq])
    return fee


def _assemble(
    book: Book,
    mechanism: Mechanism,
    price: int | None,
    admitted: I64,
    t_buy: I64,
    t_sell: I64,
    t_energy: I64,
    t_price: I64,
    pay: I64,
    fee: I64,
    rate: I64,
) -> ClearingResult:
    n = len(book.ids)
    ids, owners = book.ids, book.owners
    bl, sl = t_buy.tolist(), t_sell.tolist()
    # tuple.__new__ straight from zip: no Python-level __new__ per trade.
    trades = tuple(
        map(
            partial(tuple.__new__, Trade),
            zip(
            [ids[i] for i in bl],
            [ids[i] for i in sl],
            [owners[i] for i in bl],
            [owners[i] for i in sl],
            t_energy.tolist(),
            t_price.tolist(),
            pay.tolist(),
            fee.tolist(),
            rate.tolist(),
            strict=True,
            ),
        )
    )
    filled = np.zeros(n, dtype=np.int64)
    np.add.at(filled, t_buy, t_energy)
    np.add.at(filled, t_sell, t_energy)
    canon = book.canon
    filled_map = WhByOrder(book.sorted_ids, filled[canon])

    remaining = admitted - filled
    rem_canon = canon[remaining[canon] > 0]
    orders = book.orders
    # Reuse the caller's object when nothing was taken from it (cheap for big books); only
    # partly filled or clipped orders (few) get a new Order with the remainder.
    unmatched: list[Order] = [orders[i] for i in rem_canon.tolist()]
    partial_pos = np.flatnonzero(remaining[rem_canon] != book.energy_wh[rem_canon])
    for k, i in zip(partial_pos.tolist(), rem_canon[partial_pos].tolist(), strict=True):
        unmatched[k] = dataclasses.replace(orders[i], energy_wh=int(remaining[i]))
    clipped = book.energy_wh - admitted
    clip_pos = np.flatnonzero(clipped[canon] > 0)
    clipped_map = WhByOrder(book.sorted_ids[clip_pos], clipped[canon[clip_pos]])
    return ClearingResult(
        mechanism=mechanism,
        price_micro_per_kwh=price,
        trades=trades,
        filled_wh_by_order=filled_map,
        unmatched=tuple(unmatched),
        clipped_wh_by_order=clipped_map,
    )
