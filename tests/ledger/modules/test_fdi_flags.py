"""docs/threat-model.md row 1 on the ledger: a meter that under-reports is flagged by the DSO's
detector; settlement then uses the network estimate, so the cheater gains nothing.
Without the flag (defence off) the same under-report would have paid off."""

from __future__ import annotations

from gridledger.ledger.modules.reputation import reputation_of
from tests.ledger.modules.world import make_world, t_clear, t_order, t_read, t_settle

SLOT = 3
EVIDENCE = b"\x11" * 32


def _slot(flag: bool) -> tuple[int, int, list]:
    """Buyer 1 buys 1,000 Wh from seller 0, really takes 1,600 Wh, reports 800 Wh."""
    w = make_world(3)
    before = w.total(w.addr(1))
    w.ok([w.order(0, SLOT, "sell", 1_000, 100_000), w.order(1, SLOT, "buy", 1_000, 200_000)],
         t_order(SLOT))
    w.ok([], t_clear(SLOT))
    txs = [w.reading(0, SLOT, 0, 1_000), w.reading(1, SLOT, 800, 0)]
    if flag:
        txs.append(w.tx(w.dso, "metering/flag", {"slot": SLOT, "cp": "cp1", "import_wh": 1_600,
                                                 "export_wh": 0, "evidence": EVIDENCE}))
    read = w.ok(txs, t_read(SLOT))
    settled = w.ok([], t_settle(SLOT))
    paid = before - w.total(w.addr(1))
    events = [e for r in read.receipts for e in r.events] + settled.block_events
    return paid, reputation_of(w.app.state, w.addr(1)), events


def test_flagged_under_reporter_pays_for_what_the_network_saw():
    cheat_unflagged, rep_unflagged, _ = _slot(flag=False)
    cheat_flagged, rep_flagged, events = _slot(flag=True)
    # unflagged, the cheater even got 200 Wh of "unused" purchase credited at feed-in;
    # flagged, it pays its real 600 Wh over the trade at the tariff and gets no credit
    assert cheat_flagged - cheat_unflagged == 600 * 250_000 // 1000 + 200 * 80_000 // 1000
    assert rep_flagged < rep_unflagged
    flagged = [e for e in events if e["type"] == "reading_flagged"]
    assert flagged and flagged[0]["reported_import_wh"] == 800
    assert flagged[0]["estimate_import_wh"] == 1_600


def test_only_the_dso_flags_once_per_slot_in_the_window():
    w = make_world(3)
    w.ok([w.order(0, SLOT, "sell", 500, 100_000)], t_order(SLOT))
    body = {"slot": SLOT, "cp": "cp1", "import_wh": 10, "export_wh": 0, "evidence": EVIDENCE}
    early = w.block([w.tx(w.dso, "metering/flag", body)], t_clear(SLOT))
    assert early.receipts[0].rule == "flag-window"
    res = w.block([w.tx(w.users[2], "metering/flag", body),
                   w.tx(w.dso, "metering/flag", body), w.tx(w.dso, "metering/flag", body)],
                  t_read(SLOT))
    assert [r.rule for r in res.receipts] == ["unauthorized", "", "one-flag-per-slot"]
