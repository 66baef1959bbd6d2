"""The market's, metering's and disputes' published views (``Application.query``): what the
simulator, CLI and API read instead of the modules' keys."""

from __future__ import annotations

import dataclasses

from gridledger.ledger.modules.registry import keeper as registry_keeper
from tests.ledger.modules.world import make_world, t_clear, t_order, t_read, t_settle

SLOT = 3


def test_views_follow_a_slot_from_book_to_dispute() -> None:
    w = make_world()
    q = w.app.query
    assert {"market/slot", "market/trades", "market/book", "market/retail",
            "metering/readings", "metering/pending", "disputes/decision"} <= set(w.app.views())
    c, _reveal = w.commit(2, SLOT, "buy", 10, 1)
    w.ok([w.order(0, SLOT, "sell", 1_000, 100_000), w.order(1, SLOT, "buy", 1_000, 200_000), c],
         t_order(SLOT))
    book = q(f"market/book/{SLOT}")
    assert sorted(o["side"] for o in book["orders"]) == ["buy", "sell"]
    assert book["sealed_unrevealed"] == 1  # a sealed bid shows only as a count
    assert q(f"market/slot/{SLOT}") is None
    assert book["status"] is None and book["trades"] == []
    w.ok([], t_clear(SLOT))
    assert q(f"market/slot/{SLOT}")["status"] == "cleared"
    book = q(f"market/book/{SLOT}")
    assert book["status"] == "cleared" and book["price_micro_per_kwh"] == 150_000
    assert len(book["trades"]) == 1 and {o["filled_wh"] for o in book["orders"]} == {1_000}
    assert book["sealed_unrevealed"] == 0  # never revealed: forfeited at clearing
    (trade,) = q(f"market/trades/{SLOT}")
    assert trade["energy_wh"] == 1_000 and "delivered_wh" not in trade
    flag = w.tx(w.dso, "metering/flag", {"slot": SLOT, "cp": "cp1", "import_wh": 1_000,
                                         "export_wh": 0, "evidence": bytes(32)})
    w.ok([w.reading(0, SLOT, 0, 1_000), w.reading(1, SLOT, 900, 0), flag], t_read(SLOT))
    assert q("metering/pending") == [SLOT]
    assert q(f"metering/readings/{SLOT}") == [
        {"cp": "cp0", "import_wh": 0, "export_wh": 1_000, "flagged": False},
        {"cp": "cp1", "import_wh": 1_000, "export_wh": 0, "flagged": True}]  # the estimate
    w.ok([], t_settle(SLOT))
    assert q(f"market/slot/{SLOT}")["status"] == "settled" and q("metering/pending") == []
    assert q(f"market/trades/{SLOT}")[0]["delivered_wh"] == 1_000
    retail = q(f"market/retail/{w.addr(1).hex()}")
    assert retail["held_micro"] == w.retail_hold(w.addr(1)) > 0 and retail["debt_micro"] == 0
    claim = w.tx(w.users[1], "disputes/claim", {"slot": SLOT, "trade": 0, "claim": "non-receipt"})
    w.ok([claim], t_settle(SLOT) + 10)
    d = q(f"disputes/decision/{SLOT}/0/non-receipt")
    assert d["outcome"] == "rejected" and d["evidence"]["buyer_import_wh"] == 1_000
    assert q(f"disputes/decision/{SLOT}/0/non-delivery") is None


def test_a_pseudonym_trades_and_reports_only_in_its_slots() -> None:
    """The registry's ``pseudonym-slot``: orders (market) and readings for the pseudonym's
    stand-in cp (metering) outside the certificate's slots are refused."""
    w = make_world()
    rec = registry_keeper.participant(w.app.state, w.addr(0))
    assert rec is not None
    registry_keeper.put_participant(w.app.state, w.addr(0),
                                    dataclasses.replace(rec, valid_slots=(SLOT, SLOT)))
    r = w.block([w.order(0, SLOT + 1, "buy", 100, 1), w.order(0, SLOT, "buy", 100, 1)],
                t_order(SLOT))
    assert [x.rule or "ok" for x in r.receipts] == ["pseudonym-slot", "ok"]
    r = w.block([w.reading(0, SLOT - 1, 1, 0), w.reading(0, SLOT, 1, 0)], t_read(SLOT))
    assert [x.rule or "ok" for x in r.receipts] == ["pseudonym-slot", "ok"]
