"""Bad input is refused with a clear error; int64 bounds hold at the extremes; the public
surface does not drift."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gridledger import market
from gridledger.market import (
    MAX_ENERGY_WH,
    MAX_PRICE_MICRO_PER_KWH,
    GridFees,
    MarketInputError,
    Order,
    clear_continuous,
    clear_slot,
    clear_uniform,
)
from gridledger.market._book import _argsort_ids
from tests.market.books import OWNERS, check_money, oid, reference_uniform


def test_public_surface() -> None:
    assert sorted(market.__all__) == sorted(
        [
            "MAX_ENERGY_WH", "MAX_ORDERS", "MAX_PRICE_MICRO_PER_KWH", "Bill", "ClearingResult",
            "Envelope", "GridFees", "MarketInputError", "Mechanism", "Order", "RetailTariff",
            "Side", "Trade", "carry_round", "ceil_micro", "check_order",
            "clear_continuous", "clear_pay_as_bid", "clear_slot", "clear_uniform",
            "compute_bills", "round_forest", "round_grouped",
        ]
    )
    assert issubclass(MarketInputError, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"energy_wh": 0},
        {"energy_wh": -5},
        {"energy_wh": 1.5},
        {"energy_wh": True},
        {"energy_wh": np.int64(5)},
        {"energy_wh": MAX_ENERGY_WH + 1},
        {"price_micro_per_kwh": -1},
        {"price_micro_per_kwh": MAX_PRICE_MICRO_PER_KWH + 1},
        {"price_micro_per_kwh": 2**70},
        {"side": "bid"},
        {"order_id": b"short"},
        {"order_id": "0" * 32},
        {"owner": b""},
    ],
)
def test_bad_order_rejected(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = dict(order_id=oid(1), owner=OWNERS[0], side="buy", energy_wh=10, price_micro_per_kwh=5)
    base.update(kwargs)
    with pytest.raises(MarketInputError):
        Order(**base)  # type: ignore[arg-type]


def _forged(**kw: object) -> Order:
    """An Order that skipped __post_init__ (as a buggy caller or unpickler could make)."""
    o = object.__new__(Order)
    fields: dict[str, object] = dict(order_id=oid(9), owner=OWNERS[0], side="buy", energy_wh=10, price_micro_per_kwh=5)
    fields.update(kw)
    for k, v in fields.items():
        object.__setattr__(o, k, v)
    return o


@pytest.mark.parametrize(
    "kw",
    [{"energy_wh": 2**63}, {"price_micro_per_kwh": 2**64}, {"energy_wh": 1.0}, {"side": "x"},
     {"order_id": b"x" * 31}, {"energy_wh": MAX_ENERGY_WH + 1}],
)
def test_clearing_rechecks_forged_orders(kw: dict[str, object]) -> None:
    ok = Order(oid(1), OWNERS[1], "sell", 10, 1)
    for fn in (clear_uniform, clear_continuous):
        with pytest.raises(MarketInputError):
            fn([ok, _forged(**kw)])


def test_duplicate_ids_and_bad_arguments() -> None:
    a = Order(oid(1), OWNERS[0], "buy", 10, 5)
    b = Order(oid(1), OWNERS[1], "sell", 10, 5)
    with pytest.raises(MarketInputError, match="duplicate"):
        clear_uniform([a, b])
    c = Order(oid(2), OWNERS[1], "sell", 10, 5)
    with pytest.raises(MarketInputError):
        clear_slot([a, c], "vickrey")  # type: ignore[arg-type]
    with pytest.raises(MarketInputError):
        clear_uniform([a, c], envelopes={OWNERS[0]: (-1, 0)})
    with pytest.raises(MarketInputError):
        clear_uniform([a, c], envelopes={OWNERS[0]: (1, 0, 0)})  # type: ignore[dict-item]
    with pytest.raises(MarketInputError):
        clear_uniform([a, c], fees=GridFees(tou_micro_per_kwh=(1, 2)), slot_of_day=2)


def test_extremes_stay_exact() -> None:
    """Energies and prices at the bounds: every int64 product is still exact."""
    rng = random.Random(7)
    orders = [
        Order(oid(i), OWNERS[i % 6], rng.choice(["buy", "sell"]),
              rng.choice([1, MAX_ENERGY_WH, rng.randint(1, MAX_ENERGY_WH)]),
              rng.choice([0, MAX_PRICE_MICRO_PER_KWH, rng.randint(0, MAX_PRICE_MICRO_PER_KWH)]))
        for i in range(2_000)
    ]
    big = MAX_PRICE_MICRO_PER_KWH
    fees = GridFees(flat_micro_per_kwh=big, tou_micro_per_kwh=(big,), default_distance_micro_per_kwh=big)
    r = clear_uniform(orders, fees=fees)
    price, ref = reference_uniform(orders)
    assert r.price_micro_per_kwh == price
    assert [(t.buy_order_id, t.sell_order_id, t.energy_wh) for t in r.trades] == ref
    check_money(orders, r, fees)


def test_id_order_with_shared_prefixes_and_trailing_nul_bytes() -> None:
    """The fast 8-byte-prefix sort falls back to full ids when prefixes collide, and ids
    ending in NUL bytes (which numpy 'S' items drop) still round-trip."""
    ids = [bytes(8) + bytes([i]) + bytes(23) for i in range(1, 6)] + [bytes(32), b"\xff" * 32, b"\x01" + bytes(31)]
    arr = np.frombuffer(b"".join(ids), dtype="S32")
    assert [ids[i] for i in _argsort_ids(arr)] == sorted(ids)
    orders = [Order(x, OWNERS[k % 6], "buy" if k % 2 else "sell", 100, 7) for k, x in enumerate(ids)]
    r = clear_uniform(orders)
    assert list(r.filled_wh_by_order) == sorted(ids)
    for x in ids:
        assert r.filled_wh_by_order[x] in (0, 100)
    assert bytes(32) in r.filled_wh_by_order and b"\x02" * 32 not in r.filled_wh_by_order
