"""Properties of flexibility selection and settlement (hypothesis).

* The merit order is the least-cost cover: against scipy's LP optimum of the continuous
  problem it costs at most the rounding of one partial offer per slot; it covers every
  slot the offers can cover; it never activates beyond an offer.
* Settlement on random meter readings: payments are exactly pro rata and never exceed the
  order's cost, penalties never exceed deposits, every lock is backed and returned.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from gridledger.flex import PPM, MeritOffer, cost_nano, effective_wh, select
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.flex import keeper as flex_keeper
from tests.ledger.modules.test_flex import (
    FIRST,
    GATE,
    N,
    S,
    make_flex_world,
    t_read,
    t_settle,
    tx_id,
)

offer_st = st.tuples(
    st.integers(1, PPM),                       # weight
    st.integers(0, 300_000),                   # price
    st.lists(st.integers(0, 5_000), min_size=3, max_size=3))


@settings(max_examples=150, deadline=None)
@given(st.lists(offer_st, min_size=1, max_size=8),
       st.lists(st.integers(0, 8_000), min_size=3, max_size=3))
def test_merit_order_is_the_least_cost_cover(raw, need) -> None:
    offers = [MeritOffer(bytes([i]) * 32, w, p, tuple(e)) for i, (w, p, e) in enumerate(raw)]
    acts = select(offers, need)
    for o, a in zip(offers, acts, strict=True):
        assert all(0 <= x <= e for x, e in zip(a, o.energies_wh, strict=True))
    for k in range(3):
        capacity = sum(o.energies_wh[k] * o.weight_ppm for o in offers)
        covered = sum(a[k] * o.weight_ppm for o, a in zip(offers, acts, strict=True))
        if capacity >= need[k] * PPM:
            assert covered >= need[k] * PPM
            # the LP optimum of slot k (activation continuous)
            lp = linprog(c=[o.price_micro_per_kwh for o in offers],
                         A_ub=[[-o.weight_ppm / PPM for o in offers]], b_ub=[-need[k]],
                         bounds=[(0, o.energies_wh[k]) for o in offers], method="highs")
            assert lp.status == 0
            greedy = sum(a[k] * o.price_micro_per_kwh for o, a in zip(offers, acts, strict=True))
            dearest = max(o.price_micro_per_kwh for o in offers)
            # rounding the one partial activation up to whole Wh costs < 1 Wh at most
            assert greedy <= lp.fun + dearest + 1e-6 * max(1.0, abs(lp.fun))
        else:
            assert all(a[k] == o.energies_wh[k] for o, a in zip(offers, acts, strict=True))
    assert cost_nano(offers, acts) == sum(sum(a) * o.price_micro_per_kwh
                                          for o, a in zip(offers, acts, strict=True))
    for k in range(3):
        assert effective_wh(offers, acts, k) >= 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 4_000), min_size=2 * N, max_size=2 * N),
       st.lists(st.integers(1, 200_000), min_size=N, max_size=N),
       st.booleans())
def test_settlement_pays_pro_rata_within_cost_on_any_readings(imports, prices, reference) -> None:
    w = make_flex_world()
    dso0 = w.total(w.dso.address)
    members0 = [w.total(u.address) for u in w.users]
    raw = w.request(energies=[1_500, 1_500], baseline="reference" if reference else "declared")
    rid = tx_id(w.ok([raw], GATE - 3 * S))
    res = w.ok([w.offer(i, rid, prices[i], [900, 900]) for i in range(N)], GATE - 2 * S)
    oids = [tx_id(res, i) for i in range(N)]
    merit = [MeritOffer(oid, PPM, prices[i], (900, 900)) for i, oid in enumerate(oids)]
    acts = select(merit, [1_500, 1_500])
    chosen = [(o, list(a)) for o, a in zip(oids, acts, strict=True) if any(a)]
    w.ok([w.order(rid, [1_500, 1_500], chosen)], GATE)
    cost = flex_keeper.request(w.app.state, rid).cost_micro
    for k in range(2):
        w.ok([w.reading(i, FIRST + k, imports[2 * i + k]) for i in range(N)], t_read(FIRST + k))
    w.ok([], t_settle(FIRST + 1))
    r = flex_keeper.request(w.app.state, rid)
    assert r.status == "settled" and r.paid_micro <= cost
    assert all(bank.locked(w.app.state, a) == 0
               for a in [w.dso.address, *(u.address for u in w.users)]
               if not _retail_hold(w, a))
    settled = {e["member"]: e for e in w.events("flex_settled")}
    for i, u in enumerate(w.users):
        s = settled.get(u.address)
        if s is None:
            continue
        assert s["paid_micro"] == s["delivered_wh"] * prices[i] // 1000
        assert s["delivered_wh"] <= s["activated_wh"]
        deposit = -(-s["activated_wh"] * 250_000 // 1000)
        assert 0 <= s["penalty_micro"] <= deposit
    # money only moved between the members and the DSO (flexibility and retail)
    assert sum(w.total(u.address) for u in w.users) - sum(members0) == dso0 - w.total(w.dso.address)


def _retail_hold(w, addr: bytes) -> int:
    from gridledger.ledger.modules.market import keeper as market_keeper
    return market_keeper.retail_of(w.app.state, addr).held_micro
