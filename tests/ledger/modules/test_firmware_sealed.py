"""Sealed firmware images under privacy mode (issue 19 item 4, the firmware-image linkage
channel): a pseudonym's attested leaf and its readings carry ``image_commitment(image, r)``
with a salt ``r`` only its meter and the DSO hold, so the ledger sees no image. A flash is
still a mismatch; on an advisory the DSO opens exactly the affected pseudonyms
(``privacy/meter_image`` with ``salt``); a patch opens the record it replaces. A sealed record
trades only under the DSO's vouch (``firmware/vouch``) made after its registration and after
the latest advisory, so a missed or late opening holds the pseudonym out of the market."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridledger.ledger.modules.firmware.types import image_commitment
from gridledger.ledger.modules.privacy.records import pseudo_cp
from gridledger.meter import SignedRelease
from gridledger.meter.device import patch_body
from gridledger.sim.keys import sim_key
from gridledger.sim.privacy_view import ImageScan
from tests.privacy.net import Issued, PrivacyNet, firmware_net, issue, order, t_order, t_read

SEED = 31


def _net(tmp: Path) -> tuple[PrivacyNet, SignedRelease, SignedRelease]:
    return firmware_net(tmp, SEED)


def _sealed(w: PrivacyNet, old: SignedRelease, new: SignedRelease) -> Issued:
    """User 0's meter runs the old (soon advised) image, user 1's the new one; one sealed
    pseudonym each for slot 5."""
    return issue(w, 1, {0: [5], 1: [5]}, at=t_order(5) - 300, seal=True,
                 firmware={0: old.manifest.image_sha3, 1: new.manifest.image_sha3})


def _advise(w: PrivacyNet, at: int, version: str = "1.0.0") -> None:
    body = {"id": "DSO-7", "vendor": "acme", "model": "AM-1", "versions": [version],
            "severity": "high"}
    w.ok([w.tx(w.dso, "firmware/advisory", body)], at)
    w.ok([w.tx(sim_key(SEED, "validator", i), "firmware/approve", {"advisory": "DSO-7"})
          for i in range(3)], at + 1)


def _salt(iss: Issued, user: int) -> bytes:
    salts = iss.statements[user].salts
    assert salts is not None
    return bytes(salts[0])


def _vouch(w: PrivacyNet, through: int, at: int) -> None:
    """The DSO vouches for the sealed records of slots up to ``through`` (in its own block)."""
    w.ok([w.tx(w.dso, "firmware/vouch", {"through_slot": through})], at)


def _orders(w: PrivacyNet, iss: Issued, at: int = t_order(5)) -> dict[str, str | None]:
    (p0,), (p1,) = iss.own[0], iss.own[1]
    out = w.run([order(w, p0, 5, "buy", 500, 200_000), order(w, p1, 5, "buy", 500, 200_000)],
                at)
    return {"p0": out[0].rule, "p1": out[1].rule}


def _record(w: PrivacyNet, ps: Any) -> dict[str, Any]:
    out: dict[str, Any] = w.net.entry.app.query(f"firmware/meter/{pseudo_cp(ps.address)}")
    return out


def test_a_sealed_leaf_puts_no_image_on_the_ledger(tmp_path: Path) -> None:
    """The record holds the commitment (sealed, no model or version); no block holds either
    meter's image, in a transaction or an event; nobody is quarantined."""
    w, old, new = _net(tmp_path)
    iss = _sealed(w, old, new)
    rec = _record(w, iss.own[0][0])
    assert rec["sealed"] and not rec["quarantined"] and rec["version"] is None
    assert rec["firmware"] == image_commitment(old.manifest.image_sha3, _salt(iss, 0))
    _vouch(w, 5, t_order(5) - 250)
    assert _orders(w, iss) == {"p0": None, "p1": None}
    scan = ImageScan(frozenset({old.manifest.image_sha3, new.manifest.image_sha3}))
    paths = [Path(v.store_path) for v in w.net.validators]
    w.net.close()   # the stores as a validator leaves them (read-only afterwards)
    for path in paths:
        scan.scan(path)
    assert scan.shown == {}


def test_without_sealing_the_store_shows_each_pseudonyms_image(tmp_path: Path) -> None:
    """Defence removed (the leaves bind the images in clear, as before issue 19 item 4):
    the registration shows each pseudonym's image — the cohort it belongs to."""
    w, old, new = _net(tmp_path)
    issue(w, 1, {0: [5], 1: [5]}, at=t_order(5) - 300,
          firmware={0: old.manifest.image_sha3, 1: new.manifest.image_sha3})
    scan = ImageScan(frozenset({old.manifest.image_sha3, new.manifest.image_sha3}))
    path = Path(w.net.validators[0].store_path)
    w.net.close()
    scan.scan(path)
    assert scan.shown.get("privacy/register") == 1 and scan.total >= 1


def test_a_reading_whose_commitment_differs_is_a_firmware_mismatch(tmp_path: Path) -> None:
    """A reading attesting the commitment it was registered with is taken as it is; one
    attesting another value (a flashed image, or the image in clear) is taken under
    quarantine ``firmware-mismatch`` — without the ledger learning any image."""
    w, old, new = _net(tmp_path)
    iss = _sealed(w, old, new)
    (p0,), (p1,) = iss.own[0], iss.own[1]
    good = image_commitment(new.manifest.image_sha3, _salt(iss, 1))
    flashed = image_commitment(b"\x66" * 32, _salt(iss, 0))

    def reading(ps: Any, fw: bytes) -> bytes:
        return w.tx(iss.reading_key(ps), "metering/reading",
                    {"slot": 5, "import_wh": 400, "export_wh": 0, "firmware": fw})

    out = w.ok([reading(p0, flashed), reading(p1, good)], t_read(5))
    marks = {e["cp"]: e.get("quarantine") for o in out for e in o.events if e["type"] == "reading"}
    assert marks == {pseudo_cp(p0.address): "firmware-mismatch", pseudo_cp(p1.address): None}


def test_the_dso_opens_exactly_the_advised_pseudonym(tmp_path: Path) -> None:
    """An advisory cannot reach a sealed record by itself; the DSO, which holds each
    pseudonym's image and salt, opens the advised one: quarantined ``advised-firmware``, its
    order refused; the other pseudonym stays sealed and trades. A wrong salt, a wrong image,
    an opening by anyone but the DSO, or of a record that is not sealed: refused, named."""
    w, old, new = _net(tmp_path)
    iss = _sealed(w, old, new)
    (p0,), (p1,) = iss.own[0], iss.own[1]
    at = t_order(5) - 290
    _advise(w, at)
    assert not _record(w, p0)["quarantined"]     # sealed: the ledger cannot tell
    img, salt = old.manifest.image_sha3, _salt(iss, 0)
    opening = {"pseudonym": p0.address, "firmware": img, "salt": salt}
    bad = [w.tx(w.dso, "privacy/meter_image", {**opening, "salt": b"\x00" * 32}),
           w.tx(w.dso, "privacy/meter_image", {**opening, "firmware": new.manifest.image_sha3}),
           w.tx(w.users[0], "privacy/meter_image", opening)]
    rules = [o.rule for o in w.run(bad, at + 2)]
    assert rules[:2] == ["image-opening", "image-opening"]
    assert rules[2] == "unauthorized"
    assert not _record(w, p0)["quarantined"]     # state untouched
    (out,) = w.ok([w.tx(w.dso, "privacy/meter_image", opening)], at + 3)
    kinds = [(e["type"], e.get("reason")) for e in out.events]
    assert ("image_opened", None) in kinds and ("meter_quarantined", "advised-firmware") in kinds
    rec = _record(w, p0)
    assert rec["firmware"] == img and not rec["sealed"] and rec["reason"] == "advised-firmware"
    (again,) = w.run([w.tx(w.dso, "privacy/meter_image", opening)], at + 4)
    assert again.rule == "image-opening"         # opened already: nothing sealed to open
    assert _record(w, p1)["sealed"]
    _vouch(w, 5, at + 5)     # the DSO reviewed the rest: the other pseudonym trades
    assert _orders(w, iss) == {"p0": "meter-quarantined", "p1": None}


def _sealed_on_old(tmp_path: Path) -> tuple[Any, Any, Any, Any, Any, int]:
    """A network whose meter 0 runs 1.0.0 under one sealed pseudonym (slot 5): (network,
    old release, fix release 1.1.0 — approved by genesis to install over 1.0.0, issuance,
    the pseudonym, a time before its order)."""
    w, old, fix = _net(tmp_path)
    iss = issue(w, 1, {0: [5]}, at=t_order(5) - 300, seal=True,
                firmware={0: old.manifest.image_sha3})
    (p0,) = iss.own[0]
    return w, old, fix, iss, p0, t_order(5) - 290


def test_a_patch_after_the_opening_lifts_the_quarantine(tmp_path: Path) -> None:
    """The DSO opened the advised pseudonym; its meter installs the fix: the record takes
    the fix's image and keeps the salt, the quarantine is lifted, and readings attesting the
    commitment to the new image are taken as they are."""
    w, old, fix, iss, p0, at = _sealed_on_old(tmp_path)
    _advise(w, at + 2)
    salt, key = _salt(iss, 0), iss.reading_key(p0)
    w.ok([w.tx(w.dso, "privacy/meter_image", {"pseudonym": p0.address,
                                              "firmware": old.manifest.image_sha3,
                                              "salt": salt})], at + 4)
    # the DSO opened the record: a plain patch applies (the upgrade path is checked
    # against the opened image)
    (out,) = w.ok([w.tx(key, "firmware/patch", patch_body(fix, fix.manifest.image_sha3))],
                  at + 5)
    assert [e["type"] for e in out.events][:2] == ["meter_patched", "meter_released"]
    rec = _record(w, p0)
    assert rec["firmware"] == fix.manifest.image_sha3 and not rec["quarantined"]
    r = w.ok([w.tx(key, "metering/reading",
                   {"slot": 5, "import_wh": 10, "export_wh": 0,
                    "firmware": image_commitment(fix.manifest.image_sha3, salt)})], t_read(5))
    assert [e.get("quarantine") for e in r[0].events if e["type"] == "reading"] == [None]


def test_a_patch_to_a_sealed_record_must_open_it(tmp_path: Path) -> None:
    """A sealed (unopened) record: the patch must open it (the upgrade path is checked
    against the committed image) — missing or wrong opening ``image-opening``."""
    w, old, fix, iss, p0, at = _sealed_on_old(tmp_path)
    key, salt = iss.reading_key(p0), _salt(iss, 0)
    body = patch_body(fix, fix.manifest.image_sha3)
    out = w.run([w.tx(key, "firmware/patch", body),
                 w.tx(key, "firmware/patch", {**body, "opens": old.manifest.image_sha3,
                                              "salt": b"\x01" * 32})], at + 2)
    assert [o.rule for o in out] == ["image-opening", "image-opening"]
    assert _record(w, p0)["sealed"]
    (ok,) = w.ok([w.tx(key, "firmware/patch", {**body, "opens": old.manifest.image_sha3,
                                               "salt": salt})], at + 3)
    assert [e["type"] for e in ok.events][:2] == ["image_opened", "meter_patched"]
    rec = _record(w, p0)
    assert rec["firmware"] == fix.manifest.image_sha3 and not rec["sealed"]


def test_a_sealed_record_trades_only_under_a_dso_vouch_made_after_it_and_the_advisory(
        tmp_path: Path) -> None:
    """Regression (issue 19, a privacy week: the DSO's opening of the exploiter's pseudonym
    for the slot after each day's registration never came, and its 6 orders were placed):
    a sealed record's image is invisible to the ledger, so the ledger does not rely on the
    DSO opening it in time. Orders from a sealed pseudonym are refused
    ``meter-quarantined`` until a DSO vouch covers it — made in a later block than its
    registration and than the latest advisory, through at least its slot. An advisory
    voids the earlier vouch for every sealed record at once; the DSO opens the advised one
    and vouches again: the advised pseudonym stays out, the other trades. Only the DSO
    vouches, and a vouch never moves back."""
    w, old, new = _net(tmp_path)
    iss = _sealed(w, old, new)
    (p0,), (p1,) = iss.own[0], iss.own[1]
    at = t_order(5) - 290
    assert _record(w, p0)["unvouched"] and _record(w, p1)["unvouched"]
    assert _orders(w, iss, at - 5) == {"p0": "meter-quarantined", "p1": "meter-quarantined"}
    _vouch(w, 4, at)                       # short of their slot
    assert _record(w, p1)["unvouched"]
    _vouch(w, 5, at + 1)
    assert not _record(w, p0)["unvouched"] and not _record(w, p1)["unvouched"]
    # the advisory voids the vouch for every sealed record (the ledger cannot tell which)
    _advise(w, at + 2)
    assert _record(w, p0)["unvouched"] and _record(w, p1)["unvouched"]
    assert not _record(w, p0)["quarantined"]      # no reading or opening says so yet
    # the DSO forgets to open p0 but vouches: its signed statement is false, on the ledger;
    # the rule it follows: open first, then vouch
    rules = [o.rule for o in w.run([w.tx(w.users[0], "firmware/vouch", {"through_slot": 9}),
                                    w.tx(w.dso, "firmware/vouch", {"through_slot": 3})],
                                   at + 4)]
    assert rules == ["unauthorized", "vouch-backwards"]
    w.ok([w.tx(w.dso, "privacy/meter_image", {"pseudonym": p0.address,
                                              "firmware": old.manifest.image_sha3,
                                              "salt": _salt(iss, 0)})], at + 5)
    _vouch(w, 5, at + 6)
    assert _orders(w, iss) == {"p0": "meter-quarantined", "p1": None}


def test_without_the_vouch_rule_a_missed_opening_lets_the_advised_pseudonym_trade(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Defence removed (sealed records need no vouch, as before): the advisory is in force,
    the DSO has not opened the advised pseudonym yet, and its order is placed."""
    from gridledger.ledger.modules.firmware import keeper

    monkeypatch.setattr(keeper, "unvouched", lambda state, rec: False)
    w, old, new = _net(tmp_path)
    iss = _sealed(w, old, new)
    _advise(w, t_order(5) - 290)
    assert _orders(w, iss) == {"p0": None, "p1": None}
