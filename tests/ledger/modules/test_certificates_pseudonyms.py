"""Granular certificates under pseudonyms (issue 19 x issue 16): a household metered under
per-slot stand-in cps ``ps:<addr>`` still earns certificates for its export, they move
with its trades and its buyers claim them — under ONE device class the DSO attests for
every pseudonym (``certificates/pseudonym_class``), so nothing on the ledger labels a
pseudonym with its household's equipment. Runs on the privacy net (four validators, real
pseudonym issuance and reading keys) with a ``certificates`` genesis section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridledger.errors import InvalidBody
from gridledger.ledger.modules.certificates.types import parse_pseudonym_class
from gridledger.ledger.modules.privacy.records import pseudo_cp
from gridledger.sim.privacy_view import names_any
from tests.privacy.net import (
    SETTLE,
    Issued,
    PrivacyNet,
    S,
    issue,
    order,
    pool_net,
    read,
    t_clear,
    t_order,
    t_read,
)

CLASS = {"solar_w": 8000, "storage_w": 5000, "storage_wh": 20000, "efficiency_pct": 90}
SETTLED_AT = 6 * S + SETTLE       # the block that settles slot 5


def _trade(w: PrivacyNet, *, pclass: bool = True, export_wh: int = 1000,
           discharged_wh: int | None = None, flag: bool = False) -> Issued:
    """User 0's slot-5 pseudonym sells 1 kWh to user 1's; both meters read through their
    reading keys (user 0's battery sub-meter too, when ``discharged_wh`` is given); slot 5
    settles."""
    iss = issue(w, 1, {0: [5], 1: [5]}, at=t_order(5) - 200)
    s0, b1 = iss.own[0][0], iss.own[1][0]
    pre = [w.tx(w.dso, "certificates/pseudonym_class", CLASS)] if pclass else []
    w.ok([*pre, order(w, s0, 5, "sell", 1000, 150_000), order(w, b1, 5, "buy", 1000, 200_000)],
         t_order(5))
    w.ok([], t_clear(5))
    txs = [read(w, iss, s0, 5, 0, export_wh), read(w, iss, b1, 5, 1000, 0)]
    if discharged_wh is not None:
        txs.append(w.tx(iss.reading_key(s0), "certificates/storage_reading",
                        {"slot": 5, "charged_wh": 0, "discharged_wh": discharged_wh}))
    w.ok(txs, t_read(5))
    if flag:
        w.ok([w.tx(w.dso, "metering/flag", {"slot": 5, "cp": pseudo_cp(s0.address),
                                            "import_wh": 0, "export_wh": 200,
                                            "evidence": bytes(32)})], t_read(5) + 10)
    w.ok([], SETTLED_AT)
    return iss


def _households(w: PrivacyNet) -> tuple[frozenset[bytes], frozenset[str]]:
    addrs = {u.address for u in w.users} | {m.address for m in w.meters}
    return frozenset(addrs), frozenset(f"cp{i}" for i in range(len(w.users)))


def test_a_pseudonym_earns_certificates_its_buyer_claims(tmp_path: Path) -> None:
    """The seller's pseudonym is issued solar GCs for its metered export under the class;
    settlement moves them to the buyer's pseudonym, which cancels them against its import.
    No certificate event names a household (address or cp)."""
    w = pool_net(tmp_path, sections={"certificates": {}})
    iss = _trade(w)
    s0, b1 = iss.own[0][0], iss.own[1][0]
    (issued,) = w.events("certificates_issued")
    assert (issued["cp"], issued["owner"], issued["energy_wh"], issued["technology"]) == \
        (pseudo_cp(s0.address), s0.address, 1000, "solar_pv")
    (moved,) = [e for e in w.events("certificates_transferred") if "trade" in e]
    assert (moved["from"], moved["to"], moved["energy_wh"]) == (s0.address, b1.address, 1000)
    out = w.ok([w.tx(b1.key, "certificates/cancel",
                     {"items": [[5, issued["start"], 1000]]})], SETTLED_AT + 60)
    assert out[0].events[0]["energy_wh"] == 1000
    app = w.net.entry.app
    (row,) = app.query(f"certificates/matching/{b1.address.hex()}")
    assert (row["consumption_wh"], row["cancelled_wh"]) == (1000, 1000)
    assert app.query("certificates/pseudonym_class")["solar_w"] == CLASS["solar_w"]
    assert app.query("certificates/devices") == []      # no household's device is named
    addrs, cps = _households(w)
    for t in ("certificates_issued", "certificates_transferred", "certificates_cancelled",
              "pseudonym_class_set"):
        assert not any(names_any(e, addrs, cps) for e in w.events(t)), t


def test_battery_discharge_under_a_pseudonym_is_not_labelled_solar(tmp_path: Path) -> None:
    """The battery sub-meter reports through the pseudonym's reading key: what the battery
    discharged is storage, uncertified (its charge was recorded under another pseudonym, and
    following the battery across pseudonyms would link them); only the rest is solar."""
    w = pool_net(tmp_path, sections={"certificates": {}})
    _trade(w, discharged_wh=400)
    (issued,) = w.events("certificates_issued")
    assert (issued["technology"], issued["energy_wh"]) == ("solar_pv", 600)
    tot = w.net.entry.app.query("certificates/totals")
    assert (tot["issued_wh"], tot["uncertified_wh"]) == (600, 400)


def test_a_flagged_pseudonymous_reading_issues_nothing(tmp_path: Path) -> None:
    """The DSO's false-data flag on a stand-in cp withholds issuance, as for a clear cp."""
    w = pool_net(tmp_path, sections={"certificates": {}})
    _trade(w, flag=True)
    assert w.events("certificates_issued") == []
    (withheld,) = w.events("certificates_withheld")
    assert (withheld["reason"], withheld["energy_wh"]) == ("flagged", 1000)


def test_without_the_class_pseudonyms_earn_nothing(tmp_path: Path) -> None:
    """Defence removed (no class attested): the same settled trade issues no certificate —
    the state privacy mode was in before (households lost their provenance)."""
    w = pool_net(tmp_path, sections={"certificates": {}})
    _trade(w, pclass=False)
    assert w.events("certificates_issued") == []
    assert w.net.entry.app.query("certificates/totals")["issued_wh"] == 0


def test_only_the_dso_sets_the_class_and_bad_bodies_name_the_rule(tmp_path: Path) -> None:
    w = pool_net(tmp_path, sections={"certificates": {}})
    out = w.run([w.tx(w.users[0], "certificates/pseudonym_class", CLASS)], t_order(5))
    assert not out[0].ok
    bad: dict[str, Any] = {**CLASS, "storage_wh": 0}
    with pytest.raises(InvalidBody, match="storage needs both"):
        parse_pseudonym_class(bad)
    with pytest.raises(InvalidBody):
        parse_pseudonym_class({**CLASS, "extra": 1})
