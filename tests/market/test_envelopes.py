"""Operating envelopes: each owner's net import / export stays within its caps."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.market import Order, clear_slot
from tests.market.books import OWNERS, books, oid

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

envelopes = st.dictionaries(
    st.sampled_from(OWNERS), st.tuples(st.integers(0, 8_000), st.integers(0, 8_000)), max_size=6
)


@FAST
@given(books(max_orders=20), envelopes, st.sampled_from(["uniform", "pay_as_bid", "continuous"]))
def test_net_flows_within_envelope(orders: list[Order], env: dict[bytes, tuple[int, int]], mech: str) -> None:
    r = clear_slot(orders, mech, envelopes=env)  # type: ignore[arg-type]
    net: dict[bytes, int] = {}
    for t in r.trades:
        net[t.buyer] = net.get(t.buyer, 0) + t.energy_wh
        net[t.seller] = net.get(t.seller, 0) - t.energy_wh
    for owner, (imp, exp) in env.items():
        assert -exp <= net.get(owner, 0) <= imp
    # clipped + filled + unmatched remainder == submitted, for every order
    rest = {u.order_id: u.energy_wh for u in r.unmatched}
    for o in orders:
        total = r.filled_wh_by_order[o.order_id] + rest.get(o.order_id, 0) + r.clipped_wh_by_order.get(o.order_id, 0)
        assert total == o.energy_wh
        if o.owner not in env:
            assert o.order_id not in r.clipped_wh_by_order


@FAST
@given(books(max_orders=20), envelopes, st.data())
def test_envelopes_permutation_invariant(orders: list[Order], env: dict[bytes, tuple[int, int]], data: st.DataObject) -> None:
    perm = data.draw(st.permutations(orders))
    env2 = dict(reversed(list(env.items())))  # mapping order must not matter either
    assert clear_slot(perm, envelopes=env2) == clear_slot(orders, envelopes=env)


def test_clip_in_price_priority() -> None:
    a = OWNERS[0]
    orders = [
        Order(oid(1), a, "buy", 3000, 10),
        Order(oid(2), a, "buy", 3000, 50),  # highest bid: admitted first
        Order(oid(3), a, "buy", 3000, 30),
        Order(oid(4), a, "sell", 2000, 5),
        Order(oid(5), OWNERS[1], "sell", 20_000, 0),
    ]
    r = clear_slot(orders, envelopes={a: (4000, 500)})
    # import cap 4000: 3000 of the 50-bid, 1000 of the 30-bid, none of the 10-bid;
    # export cap 500: 1500 of the 2000 Wh ask is clipped.
    assert dict(r.clipped_wh_by_order) == {oid(1): 3000, oid(3): 2000, oid(4): 1500}
    assert r.filled_wh_by_order[oid(2)] == 3000 and r.filled_wh_by_order[oid(3)] == 1000
    # Clipped energy cannot flow, so the retail fallback does not see it either.
    assert all(u.order_id != oid(1) for u in r.unmatched)


def test_zero_envelope_blocks_owner() -> None:
    orders = [Order(oid(1), OWNERS[0], "buy", 1000, 50), Order(oid(2), OWNERS[1], "sell", 1000, 0)]
    assert clear_slot(orders, envelopes={OWNERS[1]: (0, 0)}).trades == ()
