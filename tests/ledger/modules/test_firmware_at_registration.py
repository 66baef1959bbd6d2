"""Firmware bound at pseudonym registration (issue 19 item 2; the firmware engineer's
proposal "firmware under pseudonyms"): a per-slot pseudonym trades BEFORE its first
reading, so a firmware of record taken from readings never refuses its orders. The meter
binds the image it runs into each pseudonym's attested reading-key leaf; ``privacy/register``
makes that image the pseudonym's firmware of record, so an advisory — in force before or
after registration — quarantines the stand-in cp at once and its orders are refused
``meter-quarantined``."""

from __future__ import annotations

from pathlib import Path

from gridledger.ledger.modules.privacy.records import pseudo_cp
from gridledger.meter import SignedRelease
from gridledger.privacy.ledger_io import (
    attest_body,
    certify_batch,
    make_pseudonyms,
    register_bodies,
)
from gridledger.privacy.meter_keys import attest_readings, issue_reading_keys
from gridledger.sim.keys import sim_key
from tests.privacy.net import (
    COMMUNITY,
    EPOCH_SLOTS,
    FEEDER,
    PrivacyNet,
    firmware_net,
    issue,
    order,
    t_order,
)

SEED = 31


def _net(tmp: Path) -> tuple[PrivacyNet, SignedRelease, SignedRelease]:
    net, old, new = firmware_net(tmp, SEED)
    return net, old, new


def _advise(w: PrivacyNet, at: int) -> None:
    body = {"id": "DSO-7", "vendor": "acme", "model": "AM-1", "versions": ["1.0.0"],
            "severity": "high"}
    w.ok([w.tx(w.dso, "firmware/advisory", body)], at)
    w.ok([w.tx(sim_key(SEED, "validator", i), "firmware/approve", {"advisory": "DSO-7"})
          for i in range(3)], at + 1)


def _orders(w: PrivacyNet, p0: object, p1: object) -> dict[str, str | None]:
    out = w.run([order(w, p0, 5, "buy", 500, 200_000), order(w, p1, 5, "buy", 500, 200_000)],
                t_order(5))
    return {"p0": out[0].rule, "p1": out[1].rule}


def test_an_advisory_after_registration_refuses_the_pseudonyms_orders(tmp_path: Path) -> None:
    """User 0's meter runs the advised image, user 1's the fix: once the advisory is in
    force, user 0's registered pseudonym is quarantined before it ever read, and its order
    is refused; user 1's goes through."""
    w, old, new = _net(tmp_path)
    at = t_order(5) - 300
    iss = issue(w, 1, {0: [5], 1: [5]}, at=at,
                firmware={0: old.manifest.image_sha3, 1: new.manifest.image_sha3})
    (p0,), (p1,) = iss.own[0], iss.own[1]
    app = w.net.entry.app
    assert app.query(f"firmware/meter/{pseudo_cp(p0.address)}")["firmware"] == \
        old.manifest.image_sha3
    _advise(w, at + 3)
    assert app.query(f"firmware/meter/{pseudo_cp(p0.address)}")["reason"] == "advised-firmware"
    assert _orders(w, p0, p1) == {"p0": "meter-quarantined", "p1": None}


def test_an_advisory_in_force_quarantines_at_registration(tmp_path: Path) -> None:
    w, old, new = _net(tmp_path)
    at = t_order(5) - 300
    _advise(w, at - 10)
    iss = issue(w, 1, {0: [5], 1: [5]}, at=at,
                firmware={0: old.manifest.image_sha3, 1: new.manifest.image_sha3})
    cp0 = pseudo_cp(iss.own[0][0].address)
    assert [e["cp"] for e in w.events("meter_quarantined")] == [cp0]
    assert _orders(w, iss.own[0][0], iss.own[1][0]) == {"p0": "meter-quarantined", "p1": None}


def test_without_the_binding_the_quarantined_meter_trades(tmp_path: Path) -> None:
    """Defence removed (pseudonyms registered without the image): the same advisory does
    not reach the pseudonym before its first reading — its order goes through."""
    w, _old, _new = _net(tmp_path)
    at = t_order(5) - 300
    iss = issue(w, 1, {0: [5], 1: [5]}, at=at)
    _advise(w, at + 3)
    assert _orders(w, iss.own[0][0], iss.own[1][0]) == {"p0": None, "p1": None}


def test_a_relay_cannot_swap_the_bound_image(tmp_path: Path) -> None:
    """The image is inside the DSO's attested leaf: a registration naming another image
    (say, the fixed one for a meter on the advised one) does not verify."""
    w, old, new = _net(tmp_path)
    at = t_order(5) - 300
    w.ok([w.tx(w.users[0], "privacy/join", {"epoch": 1, "tickets": 1})], at)
    own = make_pseudonyms(w.users[0], w.trustee_set, 1, [(5, 5)], FEEDER)
    keys, st = issue_reading_keys(w.meters[0], COMMUNITY, "cp0", 1, [own[0].address],
                                  firmware=old.manifest.image_sha3)
    att = attest_readings(COMMUNITY, 1, [st], {"cp0": w.meters[0].public_key}, {"cp0": 1})
    batch = certify_batch(w.trustee_keys, w.trustee_set, [own[0].entry], 1, EPOCH_SLOTS)
    w.ok([w.tx(w.dso, "privacy/attest", attest_body(att)),
          w.tx(w.trustee_keys[0].signing_key, "privacy/certify", batch.certify_body)], at + 1)
    (body,) = register_bodies(w.trustee_set, batch, att,
                              {a: k.public_key for a, k in keys.items()},
                              {own[0].address: old.manifest.image_sha3})
    body["leaves"][0]["reading_firmware"] = new.manifest.image_sha3
    (out,) = w.run([w.tx(w.trustee_keys[1].signing_key, "privacy/register", body)], at + 2)
    assert out.rule == "reading-not-attested"


def test_a_meter_flashed_mid_epoch_is_quarantined_before_its_next_pseudonym_trades(
        tmp_path: Path) -> None:
    """The DSO saw a flashed image in the meter's reading under an earlier pseudonym; it
    reports the image for the meter's next pseudonym (``privacy/meter_image``), which is
    then a firmware mismatch: its order is refused. Only the DSO may report; an unknown
    pseudonym is named."""
    w, old, _new = _net(tmp_path)
    at = t_order(5) - 300
    iss = issue(w, 1, {0: [5], 1: [5]}, at=at,
                firmware={0: old.manifest.image_sha3, 1: old.manifest.image_sha3})
    (p0,), (p1,) = iss.own[0], iss.own[1]
    homebrew = b"\x66" * 32
    body = {"pseudonym": p0.address, "firmware": homebrew}
    (by_member,) = w.run([w.tx(w.users[0], "privacy/meter_image", body)], at + 3)
    assert not by_member.ok
    (unknown,) = w.run([w.tx(w.dso, "privacy/meter_image",
                             {"pseudonym": b"\x01" * 32, "firmware": homebrew})], at + 4)
    assert unknown.rule == "unknown-pseudonym"
    (out,) = w.ok([w.tx(w.dso, "privacy/meter_image", body)], at + 5)
    assert [e["reason"] for e in out.events if e["type"] == "meter_quarantined"] == \
        ["firmware-mismatch"]
    assert _orders(w, p0, p1) == {"p0": "meter-quarantined", "p1": None}
