"""Market surveillance: withholding (conduct and impact), layering, wash trades; findings
on the ledger, sanctions through reputation; a chain without the section is untouched."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.errors import ConfigError
from gridledger.ledger.modules.market import keeper as market_keeper
from gridledger.ledger.modules.reputation import reputation_of
from gridledger.ledger.modules.surveillance.detectors import (
    observe,
    pair_flows,
    physical_withholding,
    wash_pairs,
)
from gridledger.ledger.modules.surveillance.types import (
    Config,
    Flow,
    Offered,
    Supply,
    parse_config,
)
from tests.ledger.modules.test_reputation import set_score
from tests.ledger.modules.world import World, make_world, t_clear, t_order, t_read, t_settle

SLOT = 4
ON = {"surveillance": {}}


def world(surveillance: bool = True, **kw: Any) -> World:
    return make_world(n_users=5, sections=ON if surveillance else None, **kw)


def findings(w: World) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = w.app.query("surveillance/findings")
    return out


def trades(w: World, slot: int) -> list[Any]:
    return market_keeper.trades_of_slot(w.app.state, slot)


def bought_price(w: World, slot: int, buyer: bytes) -> int:
    """Volume-weighted price ``buyer`` paid in ``slot`` (micro/kWh)."""
    ts = [t for t in trades(w, slot) if t.buyer == buyer]
    e = sum(t.energy_wh for t in ts)
    return sum(t.energy_wh * t.price_micro_per_kwh for t in ts) // e


def withholding_book(w: World, slot: int) -> None:
    """u0 withholds 2 kWh at 400 000 µ/kWh (above 120 % of retail) while u1, in concert,
    sells 500 Wh; u2 and u3 buy 1 kWh each."""
    w.ok([w.order(0, slot, "sell", 2000, 400_000), w.order(1, slot, "sell", 500, 90_000),
          w.order(2, slot, "buy", 1000, 200_000), w.order(3, slot, "buy", 1000, 150_000)],
         t_order(slot))


def test_withholding_is_mitigated_before_clearing_and_sanctioned() -> None:
    w = world()
    withholding_book(w, SLOT)
    r = w.ok([], t_clear(SLOT))
    (f,) = findings(w)
    assert f["kind"] == "withholding" and f["subjects"] == [w.addr(0)] and f["slot"] == SLOT
    assert "REMIT" in f["basis"]
    (offer,) = f["offers"]
    assert offer["price_micro_per_kwh"] == 400_000 and offer["mitigated_micro_per_kwh"] == 80_000
    assert f["mitigated_volume_wh"] == 2000 > f["volume_wh"] == 500
    # the market cleared the mitigated book: u0's offer, now the cheapest, sold it all and
    # the partner u1 sold nothing at the price the coalition meant to secure
    assert sum(t.energy_wh for t in trades(w, SLOT) if t.seller == w.addr(0)) == 2000
    assert not [t for t in trades(w, SLOT) if t.seller == w.addr(1)]
    assert reputation_of(w.app.state, w.addr(0)) == 500 - 150
    assert reputation_of(w.app.state, w.addr(1)) == 500
    abuse = [e for e in r.block_events if e["type"] == "market_abuse"]
    assert len(abuse) == 1 and abuse[0]["id"] == 0
    assert w.app.query(f"surveillance/subject/{w.addr(0).hex()}")[0]["id"] == 0
    assert w.app.query("surveillance/finding/0")["kind"] == "withholding"
    assert w.app.query("surveillance/finding/7") is None


def test_without_surveillance_the_same_book_costs_honest_buyers_more() -> None:
    """Removal: the chain without the section clears the withheld book as submitted."""
    on, off = world(), world(surveillance=False)
    for w in (on, off):
        withholding_book(w, SLOT)
        w.ok([], t_clear(SLOT))
    assert findings(off) == [] and off.app.query("surveillance/config") is None
    buyer = on.addr(2)
    assert bought_price(off, SLOT, buyer) > bought_price(on, SLOT, buyer)
    bought_off = sum(t.energy_wh for t in trades(off, SLOT) if t.buyer == buyer)
    assert bought_off == 500  # u3 got nothing on the market and pays retail instead
    assert reputation_of(off.app.state, off.addr(0)) == 500


def test_an_offer_above_conduct_without_impact_is_left_alone() -> None:
    """A sell nobody would take anyway (demand met below it) changes nothing: no finding."""
    w = world()
    w.ok([w.order(0, SLOT, "sell", 500, 400_000), w.order(1, SLOT, "sell", 2000, 90_000),
          w.order(2, SLOT, "buy", 1000, 200_000)], t_order(SLOT))
    w.ok([], t_clear(SLOT))
    assert findings(w) == []


def test_layering_orders_withdrawn_before_the_gate_are_found() -> None:
    w = world()
    big = w.order(0, SLOT, "buy", 6000, 240_000)      # the spoof: visible, never meant to fill
    small = w.order(4, SLOT, "buy", 300, 150_000)     # an honest change of plan (small)
    r = w.ok([big, small, w.order(1, SLOT, "sell", 800, 90_000),
              w.order(2, SLOT, "buy", 600, 200_000)], t_order(SLOT) - 200)
    spoof_id, small_id = r.receipts[0].tx_hash, r.receipts[1].tx_hash
    w.ok([w.tx(w.users[0], "market/cancel", {"slot": SLOT, "order_id": spoof_id}),
          w.tx(w.users[4], "market/cancel", {"slot": SLOT, "order_id": small_id})], t_order(SLOT))
    w.ok([], t_clear(SLOT))
    (f,) = findings(w)
    assert f["kind"] == "layering" and f["subjects"] == [w.addr(0)]
    assert f["offers"][0]["withdrawn_wh"] == 6000 and f["peak_wh"] == 6900
    assert reputation_of(w.app.state, w.addr(0)) == 350
    assert reputation_of(w.app.state, w.addr(4)) == 500
    assert w.app.query("surveillance/config")["layering_min_wh"] == 1000


def test_an_order_placed_and_cancelled_in_one_block_was_never_visible() -> None:
    w = world()
    r = w.ok([w.order(0, SLOT, "buy", 6000, 240_000)], t_order(SLOT) - 200)
    w.ok([], t_clear(SLOT))
    assert findings(w) == []
    assert r.receipts[0].ok


def round_trip(w: World, slot: int, seller: int, buyer: int) -> None:
    w.ok([w.order(seller, slot, "sell", 700, 90_000), w.order(buyer, slot, "buy", 700, 200_000)],
         t_order(slot))
    w.ok([], t_clear(slot))


def test_wash_trades_between_two_identities_are_found_once() -> None:
    w = world()
    for k in range(4):
        a, b = (0, 1) if k % 2 == 0 else (1, 0)
        round_trip(w, SLOT + k, a, b)
    w.ok([], t_clear(SLOT + 4))  # trades are read one block after clearing
    washes = [f for f in findings(w) if f["kind"] == "wash-trade"]
    assert len(washes) == 1
    f = washes[0]
    assert f["subjects"] == sorted([w.addr(0), w.addr(1)])
    # three legs net to 700 of 2100 (33 %): not yet; the fourth brings the pair back to 0
    assert (f["reversals"], f["net_wh"], f["gross_wh"]) == (3, 0, 2800)
    assert f["slots"] == [SLOT + k for k in range(4)]
    assert reputation_of(w.app.state, w.addr(0)) < 500


def test_one_way_trading_between_a_pair_is_not_wash() -> None:
    w = world()
    for k in range(4):
        round_trip(w, SLOT + k, 0, 1)
    w.ok([], t_clear(SLOT + 4))
    assert findings(w) == []


def test_the_genesis_section_is_checked() -> None:
    assert parse_config({}) == Config()
    with pytest.raises(ConfigError, match="unknown thresholds"):
        parse_config({"nope": 1})
    with pytest.raises(ConfigError, match="conduct_pct"):
        parse_config({"conduct_pct": 0})
    with pytest.raises(ConfigError, match="wash_window_slots"):
        parse_config({"wash_window_slots": 500})
    with pytest.raises(ConfigError, match="integer"):
        parse_config({"layering_min_wh": True})
    with pytest.raises(ConfigError):
        make_world(sections={"surveillance": {"wash_net_pct": -1}})


volumes_st = st.dictionaries(st.tuples(st.sampled_from([b"a" * 32, b"b" * 32, b"c" * 32]),
                                       st.sampled_from(["buy", "sell"])),
                             st.integers(0, 10_000), max_size=6)


@given(st.lists(volumes_st, min_size=1, max_size=6))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_watch_counts_every_shrink_and_never_loses_a_peak(books: list[Any]) -> None:
    w = None
    withdrawn: dict[Any, int] = {}
    prev: dict[Any, int] = {}
    for now in books:
        w = observe(w, now)
        for key in set(prev) | set(now):
            withdrawn[key] = withdrawn.get(key, 0) + max(0, prev.get(key, 0) - now.get(key, 0))
        prev = {**dict.fromkeys(prev, 0), **now}
        for v in w.entries:
            side_peak = w.peak_buy_wh if v.side == "buy" else w.peak_sell_wh
            assert 0 <= v.energy_wh <= v.peak_wh <= side_peak
            assert v.withdrawn_wh == withdrawn[(v.owner, v.side)]


@given(st.lists(st.integers(-2000, 2000).filter(bool), min_size=1, max_size=12))
def test_wash_needs_reversals_and_a_small_net(nets: list[int]) -> None:
    a, b = b"a" * 32, b"b" * 32
    window = [(s, (Flow(a, b, n),)) for s, n in enumerate(nets)]
    found = wash_pairs(window, [(a, b)], Config())
    signs = [n > 0 for n in nets]
    reversals = sum(1 for x, y in itertools.pairwise(signs) if x != y)
    expect = reversals >= 2 and abs(sum(nets)) * 100 <= 10 * sum(abs(n) for n in nets)
    assert bool(found) == expect


def test_pair_flows_net_per_pair() -> None:
    class T:
        def __init__(self, buyer: bytes, seller: bytes, e: int) -> None:
            self.buyer, self.seller, self.energy_wh = buyer, seller, e
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    fl = pair_flows([T(b, a, 100), T(b, a, 50), T(a, c, 30)])
    assert fl == (Flow(a, b, 150), Flow(a, c, -30))


# -- physical withholding ----------------------------------------------------------------------

def short_slot(w: World, slot: int, *, offered_wh: int = 0, envelope_wh: int | None = None,
               buy_wh: int = 3000, withheld_export_wh: int = 2500) -> None:
    """u2 bids for ``buy_wh``; u1 sells its 500 Wh surplus; u0 offers ``offered_wh`` while its
    meter exports ``withheld_export_wh``; u3 exports 800 Wh unoffered (below the minimum).
    Readings in, the slot settles, and one more block (surveillance reads settled slots)."""
    txs = [w.order(2, slot, "buy", buy_wh, 200_000), w.order(1, slot, "sell", 500, 90_000)]
    if offered_wh:
        txs.append(w.order(0, slot, "sell", offered_wh, 90_000))
    if envelope_wh is not None:
        txs.append(w.envelope(slot, [["cp0", 10_000, envelope_wh]]))
    w.ok(txs, t_order(slot))
    w.ok([], t_clear(slot))
    w.ok([w.reading(0, slot, 0, withheld_export_wh), w.reading(1, slot, 0, 500),
          w.reading(2, slot, buy_wh, 0), w.reading(3, slot, 0, 800)], t_read(slot))
    w.ok([], t_settle(slot))
    w.ok([], t_settle(slot) + 60)


def test_metered_surplus_kept_off_a_short_market_is_found_after_settlement() -> None:
    w = world()
    short_slot(w, SLOT)
    (f,) = findings(w)
    assert f["kind"] == "physical-withholding" and f["subjects"] == [w.addr(0)]
    assert "physical capacity withholding" in f["basis"] and f["slot"] == SLOT
    assert (f["volume_wh"], f["unmet_wh"]) == (500, 2500)
    (o,) = f["offers"]
    assert (o["energy_wh"], o["metered_wh"], o["withdrawn_wh"]) == (0, 2500, 2500)
    assert reputation_of(w.app.state, w.addr(0)) == 350
    assert reputation_of(w.app.state, w.addr(3)) == 500  # 800 Wh: below the minimum
    assert w.app.state.keys_with_prefix(b"sv/k/") == []  # nothing kept after settlement


def test_a_suspended_holder_keeping_its_surplus_off_is_found_too() -> None:
    """A suspended member must offer (its sells are admitted at the feed-in tariff), so its
    surplus kept off a short market is withholding like anyone's (it used to be skipped as
    one who "may not offer")."""
    w = world()
    set_score(w, w.addr(0), 40, penalty_slot=1)
    short_slot(w, SLOT)
    (f,) = findings(w)
    assert f["kind"] == "physical-withholding" and f["subjects"] == [w.addr(0)]
    assert reputation_of(w.app.state, w.addr(0)) == 0


def test_money_that_backs_less_than_the_export_bounds_what_a_holder_could_offer() -> None:
    """A sell locks a delivery deposit (350 000 µ/kWh by default): a holder whose balance
    backs 400 Wh and offers all of it, 16 % of its 2 500 Wh export, is not withholding. One
    that offers nothing is found for no more than its money backs (its balance at
    settlement, as it had neither an envelope nor an offer at clearing; the market's retail
    hold locks part of it)."""
    w = world(balances={0: 140_000})
    short_slot(w, SLOT, offered_wh=400)
    assert [f for f in findings(w) if f["kind"] == "physical-withholding"] == []
    w = world(balances={0: 1_000_000})
    short_slot(w, SLOT)
    (f,) = findings(w)
    assert f["kind"] == "physical-withholding"
    assert 1_000 <= f["offers"][0]["withdrawn_wh"] < 2_500


@pytest.mark.parametrize("case", [
    {"offered_wh": 1000},          # offered 40 % of its export (and it sold)
    {"envelope_wh": 400},          # the DSO let it export 400 Wh at most
    {"buy_wh": 500},               # demand met: the market was not short
    {"withheld_export_wh": 900},   # below physical_min_wh
])
def test_surplus_that_was_offered_capped_or_not_needed_is_not_withholding(
        case: dict[str, int]) -> None:
    w = world()
    short_slot(w, SLOT, **case)
    assert [f for f in findings(w) if f["kind"] == "physical-withholding"] == []
    assert reputation_of(w.app.state, w.addr(0)) >= 500


def test_physical_withholding_on_the_detector_alone() -> None:
    cfg = Config()
    a, b = b"a" * 32, b"b" * 32
    supply = Supply((Offered(b, 300),), 4000, (("cpb", 5000),))
    unmet, found = physical_withholding(
        supply, [("cpa", a, 1500), ("cpb", b, 2000)], traded_wh=300, cfg=cfg)
    assert unmet == 3700
    # b offered 300 of 2000 (15 % <= 20 %) and kept 1700 off: found too
    assert [(k.owner, k.offered_wh, k.metered_wh, k.withheld_wh) for k in found] == [
        (a, 0, 1500, 1500), (b, 300, 2000, 1700)]
    unmet, found = physical_withholding(supply, [("cpa", a, 1500)], traded_wh=3500, cfg=cfg)
    assert (unmet, found) == (500, [])
