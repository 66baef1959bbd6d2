"""Properties of the certificates module: whatever the trades, readings, flags, sub-meter
readings and the holders' transfers, cancellations and stores (valid or not), after every
block the module's invariants hold (``tests.conftest.apply``), no GC is created or lost,
nobody claims more than its metered import, issuance never exceeds metered export, and two
validators applying the same blocks reach the same state root."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.ledger.app import Application
from gridledger.ledger.modules.certificates import keeper
from tests.conftest import apply
from tests.ledger.modules.world import make_world, t_clear, t_order, t_read, t_settle

N = 4
SLOTS = (8, 9)                    # one hour: claims of both slots count against it
DEVICES = [["cp0", 6_000, 0, 0, 100], ["cp1", 3_000, 2_000, 4_000, 90],
           ["cp2", 0, 3_000, 6_000, 80]]

trade_st = st.tuples(st.integers(0, N - 1), st.integers(0, N - 1), st.sampled_from(SLOTS),
                     st.integers(1, 2_000))
reading_st = st.tuples(st.integers(0, 2_500), st.integers(0, 2_500))
storage_st = st.one_of(st.none(), st.tuples(st.integers(0, 600), st.integers(0, 600)))
# (as the bundle's owner?, other user, action, recipient, bundle pick, Wh)
action_st = st.tuples(st.sampled_from([True, True, True, False]), st.integers(0, N - 1),
                      st.sampled_from(["transfer", "cancel", "cancel", "store"]),
                      st.integers(0, N - 1), st.integers(0, 50), st.integers(1, 1_500))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trades=st.lists(trade_st, min_size=1, max_size=6),
       readings=st.lists(reading_st, min_size=N * len(SLOTS), max_size=N * len(SLOTS)),
       storage=st.lists(storage_st, min_size=2 * len(SLOTS), max_size=2 * len(SLOTS)),
       flags=st.lists(st.booleans(), min_size=N * len(SLOTS), max_size=N * len(SLOTS)),
       actions=st.lists(action_st, min_size=0, max_size=16))
def test_certificates_conserved_and_claims_bounded(trades: list[Any], readings: list[Any],
                                                   storage: list[Any], flags: list[bool],
                                                   actions: list[Any]) -> None:
    w = make_world(N)
    blocks: list[tuple[list[bytes], int]] = []

    def run(txs: list[bytes], at: int) -> None:
        w.block(txs, at)
        blocks.append((txs, at))

    run([w.tx(w.dso, "certificates/register_devices", {"devices": DEVICES})], 100)
    for slot in SLOTS:
        orders = []
        for seller, buyer, s, e in trades:
            if s == slot and seller != buyer:
                orders += [w.order(seller, slot, "sell", e, 50_000),
                           w.order(buyer, slot, "buy", e, 200_000)]
        run(orders, t_order(slot))
        run([], t_clear(slot))
    owner_of = {w.addr(i): i for i in range(N)}
    at = 0

    def act(batch: list[Any]) -> None:
        nonlocal at
        for as_owner, user, action, to, pick, wh in batch:
            bundles = [(slot, s, b) for slot in SLOTS
                       for s, b in keeper.bundles_of_slot(w.app.state, slot)]
            if action == "store" and as_owner:   # batteries at cp1 and cp2 store their own
                bundles = [x for x in bundles if x[2].owner in (w.addr(1), w.addr(2))] or bundles
            if not bundles:
                return
            slot, start, b = bundles[pick % len(bundles)]
            actor = owner_of.get(b.owner, user) if as_owner else user
            item = [[slot, start, wh % (b.size(start) + 20) + 1]]   # sometimes too many
            key = w.users[actor]
            if action == "transfer":
                tx = w.tx(key, "certificates/transfer", {"to": w.addr(to), "items": item})
            else:
                tx = w.tx(key, f"certificates/{action}", {"items": item})
            run([tx], at)
            at += 1

    for k, slot in enumerate(SLOTS):
        txs = []
        for i in range(N):
            imp, exp = readings[k * N + i]
            txs.append(w.reading(i, slot, imp, exp))
            if flags[k * N + i] and (k * N + i) % 3 == 0:
                txs.append(w.tx(w.dso, "metering/flag", {
                    "slot": slot, "cp": f"cp{i}", "import_wh": imp, "export_wh": exp // 2,
                    "evidence": b"\x22" * 32}))
        for j, cp_index in enumerate((1, 2)):
            sr = storage[k * 2 + j]
            if sr is not None:
                txs.append(w.tx(w.meters[cp_index], "certificates/storage_reading",
                                {"slot": slot, "charged_wh": sr[0], "discharged_wh": sr[1]}))
        run(txs, max(at, t_read(slot)))
        run([], t_settle(slot))
        at = t_settle(slot) + 1
        act(actions[k * len(actions) // 2:(k + 1) * len(actions) // 2])

    st_ = w.app.state
    t = keeper.totals(st_)
    held = sum(b.size(s) for slot in SLOTS for s, b in keeper.bundles_of_slot(st_, slot))
    assert held == t.issued_wh                              # no GC created or lost
    for slot in SLOTS:
        for _cp, iss in keeper.issuances_of_slot(st_, slot):
            assert iss.solar_wh + iss.storage_wh <= iss.export_wh
            assert not (iss.flagged and iss.solar_wh + iss.storage_wh)
    for _hour, _addr, m in keeper.all_matchings(st_):
        assert m.cancelled_wh + m.stored_wh <= m.consumption_wh
    # determinism: a second validator replaying the blocks reaches the same root
    other = Application(w.app.genesis)
    for txs, when in blocks:
        apply(other, txs, when)
    assert other.state.root() == st_.root()
