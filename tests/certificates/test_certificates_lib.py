"""The certificates library on a real ledger: the EnergyTag record of a bundle, hourly
matching scores, and a proof of one bundle against a header certified by a quorum of
four validators — checked with nothing but the proof, and refused when anything in it is
forged."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from gridledger.certificates import (
    ENERGYTAG_FIELDS,
    ENERGYTAG_REQUIRED,
    BundleProof,
    ExportError,
    MemberMatching,
    account_number,
    check_proof,
    csv_rows,
    device_name,
    device_number,
    load_csv,
    load_export,
    make_proof,
    matching_by_member,
    score_mean,
    to_energytag,
)
from gridledger.ledger.block import Certificate, Header, sign_vote
from gridledger.ledger.modules.certificates import keeper
from gridledger.sim.keys import sim_key
from tests.ledger.modules.test_certificates import SLOT, cancel, mine, register, traded_slot
from tests.ledger.modules.world import World, make_world, t_settle


@pytest.fixture(scope="module")
def world() -> World:
    w = make_world(4, consumers=(1,), n_validators=4)
    w.ok([register(w, ["cp0", 8_000, 0, 0, 100])], 100)
    traded_slot(w)
    (start, _), = mine(w, 1)
    w.ok([cancel(w, 1, (SLOT, start, 500))], t_settle(SLOT) + 10)
    return w


def certified(w: World) -> tuple[Header, Certificate]:
    """A header for the world's current state, certified by its four validators."""
    keys = w.app.validator_keys()
    header, _ = w.app.finalize_block([], w.app.slot_time + 1)
    w.app.commit()
    votes = [sign_vote(k, header, i) for i, k in enumerate(w.validators)]
    assert [(k.alg, k.public_key.raw) for k in w.validators] == keys
    return header, Certificate.from_votes(votes[:3])          # quorum 3 of 4


def test_energytag_record_of_a_bundle(world: World) -> None:
    cfg = world.app.query("certificates/config")
    dev, = world.app.query("certificates/devices")
    for b in world.app.query(f"certificates/bundles/{SLOT}"):
        rec = to_energytag(b, dev, cfg)
        assert tuple(rec) == ENERGYTAG_FIELDS
        assert all(rec[f] not in (None, "") for f in ENERGYTAG_REQUIRED)
        assert rec["bundle_quantity"] == b["energy_wh"] and rec["face_value"] == 1
        assert rec["production_starting_interval"] == "1970-01-01T02:00:00Z"   # slot 8 x 900 s
        assert rec["production_ending_interval"] == "1970-01-01T02:15:00Z"
        # hour 2 closes at 3 h + settle window (900 s) + claim window (3600 s)
        assert rec["expiry_datestamp"] == "1970-01-01T04:15:00Z"
        assert rec["certificate_bundle_status"] == {"active": "Active", "cancelled": "Cancelled"}[
            b["status"]]
        assert (rec["beneficiary"] is not None) == (b["status"] == "cancelled")
        assert rec["device_capacity"] == 8_000 and not rec["is_storage"]
    recs = [to_energytag(b, dev, cfg) for b in world.app.query("certificates/bundles")]
    index = [{"bundle_id": b["id"], "state_key": b["key"], "account": bytes(b["owner"]).hex(),
              "device": device_name(b)} for b in world.app.query("certificates/bundles")]
    header, rows = csv_rows(recs, index)
    assert header[-4:] == ["ledger_bundle_id", "ledger_state_key", "ledger_account",
                           "ledger_device"] and len(rows) == len(recs)
    # the lineage hash covers immutable fields only: the same GCs in another state hash alike
    a = to_energytag({**world.app.query(f"certificates/bundles/{SLOT}")[0], "status": "expired"},
                     dev, cfg)
    assert a["hash"] == recs[0]["hash"]


def _doc(world: World) -> dict[str, Any]:
    cfg, (dev,) = world.app.query("certificates/config"), world.app.query("certificates/devices")
    bundles = world.app.query("certificates/bundles")
    return {"data_model": "x", "fields": list(ENERGYTAG_FIELDS), "chain_id": "c", "height": 1,
            "state_root": "00", "header_hash": "00",
            "granular_certificate_bundles": [to_energytag(b, dev, cfg) for b in bundles],
            "ledger_index": [{"certificate_bundle_id_range_start": b["start"], "bundle_id": b["id"],
                              "state_key": b["key"], "account": bytes(b["owner"]).hex(),
                              "device": device_name(b)} for b in bundles]}


def test_export_loads_in_the_model_types(world: World) -> None:
    """The export reads back into the model's types (ints, UTC datetimes, enumerations), as
    JSON and as CSV; a record a registry would refuse is refused, naming the field."""
    doc = _doc(world)
    loaded = load_export(json.dumps(doc))
    recs = loaded.granular_certificate_bundles
    assert len(recs) >= 2 and {r.certificate_bundle_status for r in recs} == {"Active", "Cancelled"}
    for r, b in zip(recs, world.app.query("certificates/bundles"), strict=True):
        assert r.account_id == account_number(bytes(b["owner"])) and r.energy_source == "solar_pv"
        assert r.device_id == device_number("cp0/solar_pv")
        assert r.production_starting_interval.isoformat() == "1970-01-01T02:00:00+00:00"
        assert r.model_dump(mode="json") == doc["granular_certificate_bundles"][recs.index(r)]
    header, rows = csv_rows(doc["granular_certificate_bundles"], doc["ledger_index"])
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    assert load_csv(buf.getvalue()) == recs
    bad: list[tuple[str, Any]] = [
        ("account_id", "ab" * 32),                    # an address, not the model's integer
        ("certificate_bundle_status", "Green"),       # not a CertificateStatus
        ("bundle_quantity", 7),                       # disagrees with the id range
        ("energy_source", "solar"),                   # not an EnergySourceType
        ("production_ending_interval", "1970-01-01T04:00:00Z"),   # longer than an hour
        ("device_name", "cp9"),                       # hash no longer matches
        ("extra_field", 1)]
    for field, value in bad:
        forged = json.loads(json.dumps(doc))
        forged["granular_certificate_bundles"][0][field] = value
        with pytest.raises(ExportError, match=r"granular_certificate_bundles\.0"):
            load_export(json.dumps(forged))
    forged = json.loads(json.dumps(doc))
    forged["ledger_index"][0]["account"] = "11" * 32
    with pytest.raises(ExportError, match="ledger_index"):
        load_export(json.dumps(forged))


def test_matching_scores() -> None:
    rows = [{"address": b"a", "hour": 1, "consumption_wh": 1_000, "cancelled_wh": 250,
             "stored_wh": 0},
            {"address": b"a", "hour": 2, "consumption_wh": 1_000, "cancelled_wh": 750,
             "stored_wh": 100},
            {"address": b"b", "hour": 1, "consumption_wh": 0, "cancelled_wh": 0, "stored_wh": 0}]
    m = matching_by_member(rows)
    assert m[b"a"] == MemberMatching(b"a", 2_000, 1_000, 100, 2)
    assert m[b"a"].score == 0.5 and m[b"a"].residual_wh == 900
    assert score_mean(m.values()) == 0.5          # b consumed nothing: not averaged
    assert score_mean([]) == 0.0


def _proof(w: World, header: Header, cert: Certificate, bundle_id: str) -> BundleProof:
    slot, start = (int(x) for x in bundle_id.split(":"))
    key = keeper.bundle_key(slot, start).hex()
    present = w.app.state.get(bytes.fromhex(key)) is not None
    sp = w.app.query(f"{'proof' if present else 'absence'}/{key}")
    rec = None
    if present:
        b = w.app.query(f"certificates/bundle/{bundle_id}")
        rec = to_energytag(b, w.app.query("certificates/devices")[0],
                           w.app.query("certificates/config"))
    return make_proof(bundle_id, w.app.genesis, header.encode(), cert.encode(),
                      w.app.validator_keys(), sp, rec)


def test_proof_against_a_certified_header(world: World) -> None:
    header, cert = certified(world)
    (start, _), = mine(world, 1, status="cancelled")
    p = _proof(world, header, cert, f"{SLOT}:{start}")
    p = BundleProof.from_json(json.loads(json.dumps(p.to_json())))      # through JSON
    r = check_proof(p)
    assert r.ok and r.exists and r.genesis_validator_set, r.failures
    assert r.bundle is not None and r.bundle["status"] == "cancelled"
    assert r.bundle["owner"] == world.addr(1) and r.bundle["energy_wh"] == 500
    absent = check_proof(_proof(world, header, cert, f"{SLOT}:{start + 1}"))
    assert absent.ok and not absent.exists
    # pinned to the chain's published genesis hash: this chain passes, any other fails
    assert check_proof(p, world.app.genesis.hash).ok
    other = check_proof(p, bytes(32))
    assert not other.ok and any("genesis" in f for f in other.failures), other.failures


def _forge(p: BundleProof, **changes: Any) -> BundleProof:
    d = p.to_json()
    for k, v in changes.items():
        d[k] = v(d[k]) if callable(v) else v
    return BundleProof.from_json(d)


def test_forged_proofs_are_refused(world: World) -> None:
    header, cert = certified(world)
    (start, _), = mine(world, 1, status="cancelled")
    p = _proof(world, header, cert, f"{SLOT}:{start}")
    other = sim_key(99, "validator", 0)
    few = Certificate(cert.height, cert.header_hash, cert.votes[:2])
    cases = {
        "record says active": _forge(p, energytag=lambda e: {**e, "certificate_bundle_status": "Active"}),
        "record names another holder": _forge(p, energytag=lambda e: {**e, "account_id": 17}),
        "value changed": _forge(p, membership=lambda m: {**m, "value": m["value"][:-2] + "ff"}),
        "two votes": _forge(p, certificate=few.encode().hex()),
        "other keys": _forge(p, validator_keys=[[other.alg, other.public_key.raw.hex()]] * 4),
        "other bundle": _forge(p, bundle_id=f"{SLOT}:{start + 1}"),
        "claimed but absent": _forge(_proof(world, header, cert, f"{SLOT}:{start + 1}"),
                                     energytag=p.energytag),
        "garbage": _forge(p, header="00"),
    }
    for name, forged in cases.items():
        r = check_proof(forged)
        assert not r.ok and r.failures, name
