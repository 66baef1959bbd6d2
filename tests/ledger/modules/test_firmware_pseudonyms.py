"""Firmware registry under privacy mode: a pseudonym's readings come from the reading key
its household's meter holds (``privacy.meter_keys``) and carry the image that meter runs,
so they are checked like every other reading — by the pseudonym's stand-in cp
``ps:<addr>``. Runs on the privacy net (four validators, real admission and certificates)
with a ``firmware`` genesis section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridledger.ledger.modules.metering import keeper as metering
from gridledger.ledger.modules.privacy.records import pseudo_cp
from gridledger.ledger.modules.reputation.keeper import reputation_of
from gridledger.meter import SignedRelease
from gridledger.sim.keys import sim_key
from tests.privacy.net import PrivacyNet, firmware_net, issue, t_order, t_read

SEED = 31                 # the privacy net's seed: its validators are sim_key(31, "validator", i)


def _net(tmp: Path) -> tuple[PrivacyNet, SignedRelease, SignedRelease]:
    net, old, new = firmware_net(tmp, SEED)
    return net, old, new


def _reading(w: PrivacyNet, key: Any, slot: int, import_wh: int, firmware: bytes) -> bytes:
    return w.tx(key, "metering/reading", {"slot": slot, "import_wh": import_wh, "export_wh": 0,
                                          "firmware": firmware})


def test_a_pseudonyms_reading_is_checked_against_the_registry(tmp_path: Path) -> None:
    """An advisory in force (the DSO's, approved by the validator quorum) quarantines the
    pseudonym whose meter runs the advised image at its first reading: the reading is taken
    but marked, never settles on its own figure, settles on the DSO's estimate without a
    reputation charge, and the stand-in cp takes no new exposure. A pseudonym whose meter
    runs a good image is untouched."""
    w, old, new = _net(tmp_path)
    at = t_order(5) - 200
    iss = issue(w, 1, {0: [5], 1: [5]}, at=at)
    (p0,), (p1,) = iss.own[0], iss.own[1]
    cp0, cp1 = pseudo_cp(p0.address), pseudo_cp(p1.address)
    validators = [sim_key(SEED, "validator", i) for i in range(4)]
    body = {"id": "DSO-7", "vendor": "acme", "model": "AM-1", "versions": ["1.0.0"],
            "severity": "high"}
    w.ok([w.tx(w.dso, "firmware/advisory", body)], at + 3)
    out = w.ok([w.tx(v, "firmware/approve", {"advisory": "DSO-7"}) for v in validators[:3]],
               at + 4)
    assert [e["source"] for o in out for e in o.events if e["type"] == "advisory_in_force"] \
        == ["quorum"]

    out = w.ok([_reading(w, iss.reading_key(p0), 5, 700, old.manifest.image_sha3),
                _reading(w, iss.reading_key(p1), 5, 300, new.manifest.image_sha3)], t_read(5))
    readings = {e["cp"]: e for o in out for e in o.events if e["type"] == "reading"}
    assert readings[cp0]["quarantine"] == "advised-firmware"
    assert "quarantine" not in readings[cp1]
    assert [e["cp"] for o in out for e in o.events if e["type"] == "meter_quarantined"] == [cp0]
    app = w.net.entry.app
    assert app.query(f"firmware/meter/{cp0}")["reason"] == "advised-firmware"
    assert not app.query(f"firmware/meter/{cp1}")["quarantined"]
    assert metering.trusted_reading_of(w.state, 5, cp0) is None
    assert metering.trusted_reading_of(w.state, 5, cp1).import_wh == 300  # type: ignore[union-attr]
    # the stand-in cp takes no new exposure (in its slot, a commitment or replacement would
    # be refused the same way as an order)
    assert [q["cp"] for q in app.query("firmware/quarantined/")] == [cp0]

    score = reputation_of(w.state, p0.address)
    out = w.ok([w.tx(w.dso, "metering/flag", {"slot": 5, "cp": cp0, "import_wh": 650,
                                              "export_wh": 0, "evidence": bytes(32)})],
               t_read(5) + 10)
    (flagged,) = [e for o in out for e in o.events if e["type"] == "reading_flagged"]
    assert flagged["quarantine"] == "advised-firmware"
    assert reputation_of(w.state, p0.address) == score
    assert metering.trusted_reading_of(w.state, 5, cp0).import_wh == 650  # type: ignore[union-attr]
