"""Issue 16 in the demo: granular certificates on the shared default day (``day``), in
the demo's default mode — under privacy mode every household earns and claims them under
its per-slot pseudonyms (issue 19).

It issues certificates from the members' unflagged metered export, transfers them with
delivered P2P energy and has members cancel them within their hourly import (no honest
claim refused); its export loads in the EnergyTag model and one certificate is audited with
the CLI alone. ``double-claim`` and ``phantom-generation`` run in it with their defences
(detected, loss 0); one short extra run removes the defences (the damage shows).
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gridledger.certificates import ENERGYTAG_FIELDS, load_csv, load_export
from gridledger.cli.main import app
from gridledger.ledger.modules.certificates import handlers as cert_handlers
from gridledger.ledger.modules.certificates import keeper as cert_keeper
from gridledger.ledger.modules.certificates.invariants import Invariants
from gridledger.ledger.modules.certificates.issuance import Issuer
from gridledger.node.store import BlockStore
from gridledger.node.verify import find_stores
from gridledger.sim.demo import run_demo
from gridledger.sim.features.certificates import Certificates
from gridledger.sim.scenario import Scenario
from tests.ledger.modules.test_certificates import _NoFlags
from tests.sim.conftest import DemoRun

MIDDAY = 40

# The EnergyTag GC bundle fields as the FEA demonstration registry models the standard (v2):
# gc_registry/certificate/schemas.py @111858c, GranularCertificateBundleReadFull, and
# GranularCertificateBundleBase / IssuanceMetaDataBase for the required ones.
READ_FULL = {
    "certificate_bundle_status", "account_id", "certificate_bundle_id_range_start",
    "certificate_bundle_id_range_end", "bundle_quantity", "issuance_id", "energy_carrier",
    "energy_source", "face_value", "issuance_post_energy_carrier_conversion",
    "registry_configuration", "device_id", "device_name", "device_technology_type",
    "device_production_start_date", "device_capacity", "device_location", "device_type",
    "production_starting_interval", "production_ending_interval", "expiry_datestamp",
    "is_storage", "sdr_allocation_id", "discharging_start_datetime",
    "discharging_end_datetime", "storage_efficiency_factor", "country_of_issuance",
    "connected_grid_identification", "issuing_body", "legal_status", "issuance_purpose",
    "support_received", "quality_scheme_reference", "dissemination_level",
    "issue_market_zone", "emissions_factor_production_device", "emissions_factor_source",
    "hash", "is_deleted"}
BASE_REQUIRED = {
    "issuance_id", "certificate_bundle_status", "account_id", "certificate_bundle_id_range_start",
    "certificate_bundle_id_range_end", "bundle_quantity", "energy_carrier", "energy_source",
    "face_value", "issuance_post_energy_carrier_conversion", "device_id",
    "production_starting_interval", "production_ending_interval", "expiry_datestamp",
    "is_storage"}
METADATA_REQUIRED = {"country_of_issuance", "connected_grid_identification", "issuing_body",
                     "issue_market_zone"}
STATUSES = {"Active", "Cancelled", "Claimed", "Expired", "Withdrawn", "Locked", "Reserved",
            "Bundle Split"}


def run(tmp: Path, attacks: tuple[str, ...], slots: int = 16) -> dict[str, Any]:
    """One short midday run (20 participants, 1 validator): for the defence-removal test."""
    sc = Scenario(participants=20, slots=slots, validators=1, attacks=attacks, seed=7,
                  start_slot_of_day=MIDDAY)
    summary, _ = run_demo(sc, tmp)
    assert summary["invariants"]["money_conserved"] and summary["invariants"]["energy_balanced"]
    return summary


@pytest.fixture(scope="session")
def day(default_day: DemoRun) -> DemoRun:
    """The shared default day, in the demo's default mode (privacy mode: households earn and
    claim certificates under per-slot pseudonyms, certified under the DSO's pseudonym class;
    clear mode: under their own cps and registered devices)."""
    return default_day


def test_day_issues_transfers_and_matches(day: DemoRun) -> None:
    s = day.summary
    c = s["certificates"]
    assert 0 < c["issued_wh"] <= c["unflagged_export_wh"] <= c["metered_export_wh"]
    assert c["issued_within_export"] and (c["devices"] > 0 or c["pseudonym_class"])
    if s["privacy"]["mode"] == "on":     # no household's device is named on the ledger
        assert c["devices"] == 0 and c["pseudonym_class"]["solar_w"] > 0
    assert c["transferred_wh"] > 0 and c["cancelled_wh"] > 0 and c["capped_wh"] == 0
    assert 0 < c["matching_score_mean"] <= 1
    assert c["residual_wh"] == c["consumption_wh"] - c["cancelled_wh"] - c["stored_wh"]
    assert all(0 <= m["score"] <= 1 and m["cancelled_wh"] + m["stored_wh"] <= m["consumption_wh"]
               for m in c["members"])
    assert sum(f["energy_wh"] for f in c["flows"] if f["from"] != "grid (residual mix)") == \
        c["cancelled_wh"]
    assert len(c["hours"]) >= 12 and all(s["invariants"].values()), s["invariants"]
    # every refused claim is the double-claim attacker's: no honest claim failed
    dc = s["attacks"]["double-claim"]
    assert s["detections"]["certificate_claims_refused"] == \
        dc["refused_at_admission"] + dc["refused_in_execution"]


def test_report_section_from_the_summary(day: DemoRun) -> None:
    sec, = Certificates.report_sections(day.summary)
    assert sec.section_id == "provenance" and "fig-provenance" in sec.body_html
    assert "fig-matching" in sec.body_html and "sankey" in sec.body_html.lower()


def test_report_page_has_the_provenance_section(day: DemoRun) -> None:
    page = (day.out / "report.html").read_text()
    assert 'id="provenance"' in page and 'id="fig-matching"' in page
    assert 'id="fig-provenance"' in page


def test_export_has_the_energytag_fields(day: DemoRun, tmp_path: Path) -> None:
    store, s, out = day.out, day.summary, tmp_path
    cli = CliRunner()
    res = cli.invoke(app, ["certificates", "export", str(store), "--format", "energytag",
                           "--out", str(out / "certificates.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "certificates.json").read_text())
    recs = doc["granular_certificate_bundles"]
    assert recs and len(recs) == len(doc["ledger_index"])
    for r in recs:
        assert set(r) == READ_FULL | {"beneficiary"}
        assert all(r[f] is not None for f in BASE_REQUIRED | METADATA_REQUIRED)
        assert r["certificate_bundle_status"] in STATUSES
        assert r["bundle_quantity"] == (r["certificate_bundle_id_range_end"]
                                        - r["certificate_bundle_id_range_start"] + 1)
        assert r["production_starting_interval"].startswith("2016-")
    assert sum(r["bundle_quantity"] for r in recs) == s["certificates"]["issued_wh"]
    assert {r["issuing_body"] for r in recs} == {"gridledger-demo validator quorum"}
    typed = load_export((out / "certificates.json").read_text()).granular_certificate_bundles
    assert len(typed) == len(recs) and sum(r.bundle_quantity for r in typed) == \
        s["certificates"]["issued_wh"]
    res = cli.invoke(app, ["certificates", "export", str(store), "--format", "csv",
                           "--out", str(out / "certificates.csv")])
    assert res.exit_code == 0, res.output
    with (out / "certificates.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:len(ENERGYTAG_FIELDS)] == list(ENERGYTAG_FIELDS)
    assert len(rows) == len(recs)
    assert load_csv((out / "certificates.csv").read_text()) == typed
    bad = cli.invoke(app, ["certificates", "export", str(store), "--format", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.output


def test_membership_proof_audit_with_the_cli_alone(day: DemoRun, tmp_path: Path) -> None:
    store, out = day.out, tmp_path
    cli = CliRunner()
    res = cli.invoke(app, ["certificates", "export", str(store), "--out",
                           str(out / "certificates.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "certificates.json").read_text())
    cancelled = next(ix for r, ix in zip(doc["granular_certificate_bundles"], doc["ledger_index"],
                                         strict=True)
                     if r["certificate_bundle_status"] == "Cancelled")
    proof = out / "proof.json"
    res = cli.invoke(app, ["certificates", "prove", str(store), cancelled["bundle_id"],
                           "--out", str(proof)])
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["certificates", "verify", str(proof)])
    assert res.exit_code == 0 and "ok bundle" in res.output and "cancelled" in res.output, res.output
    # pinned to the community's genesis (as its validators' store has it), and to another
    bs = BlockStore(find_stores(store)[0], readonly=True)
    genesis = bs.genesis()
    bs.close()
    assert genesis is not None
    res = cli.invoke(app, ["certificates", "verify", str(proof), "--genesis-hash", genesis.hash.hex()])
    assert res.exit_code == 0 and "ok bundle" in res.output, res.output
    res = cli.invoke(app, ["certificates", "verify", str(proof), "--genesis-hash", "00" * 32])
    assert res.exit_code == 1 and "BAD" in res.output and "genesis" in res.output, res.output
    # the auditor's check fails for an altered record, a forged state, a forged quorum
    d = json.loads(proof.read_text())
    for name, change in [("status", lambda d: d["energytag"].update(certificate_bundle_status="Active")),
                         ("owner", lambda d: d["energytag"].update(account_id=1)),
                         ("value", lambda d: d["membership"].update(
                             value=d["membership"]["value"][:-2] + "00")),
                         ("votes", lambda d: d.update(certificate=d["certificate"][:-8] + "00" * 4))]:
        forged = json.loads(json.dumps(d))
        change(forged)
        p = out / f"forged-{name}.json"
        p.write_text(json.dumps(forged))
        res = cli.invoke(app, ["certificates", "verify", str(p)])
        assert res.exit_code == 1 and "BAD" in res.output, (name, res.output)
    # a bundle that does not exist: an absence proof, which verifies — from live state; inside
    # an archived hour it is refused, naming why (not implemented: the archive's sorted leaves
    # would have to prove the gap)
    starts = {ix["bundle_id"] for ix in doc["ledger_index"]}
    archived = [ix for ix in doc["ledger_index"] if ix.get("archived_hour") is not None]
    if archived:
        slot, start = archived[0]["bundle_id"].split(":")
        inside = next(m for m in (f"{slot}:{int(start) + k}" for k in range(1, 10_000))
                      if m not in starts)
        res = cli.invoke(app, ["certificates", "prove", str(store), inside, "--out",
                               str(out / "none-archived.json")])
        assert res.exit_code == 1 and "absence proof inside an archive" in res.output, res.output
    # absence from live state: an id inside a live bundle's range, or (a day whose hours were
    # all archived after its dispute window) a slot a day past the last one
    live = [ix for ix in doc["ledger_index"] if ix.get("archived_hour") is None]
    if live:
        slot, start = live[-1]["bundle_id"].split(":")
        missing = next(m for m in (f"{slot}:{int(start) + k}" for k in range(1, 10_000))
                       if m not in starts)
    else:
        last = max(int(ix["bundle_id"].split(":")[0]) for ix in doc["ledger_index"])
        missing = f"{last + 96}:1"
    res = cli.invoke(app, ["certificates", "prove", str(store), missing, "--out",
                           str(out / "none.json")])
    assert res.exit_code == 0 and "absence" in res.output, res.output
    res = cli.invoke(app, ["certificates", "verify", str(out / "none.json")])
    assert res.exit_code == 0 and f"no bundle {missing}" in res.output, res.output


def _check_defended(s: dict[str, Any], name: str) -> dict[str, Any]:
    r = s["attacks"][name]
    assert r["injected"] > 0 and r["detected"] > 0 and r["mitigated"] and r["loss"] == 0, r
    assert s["invariants"]["honest_not_worse"]
    return r


def test_double_claim_refused(day: DemoRun) -> None:
    r = _check_defended(day.summary, "double-claim")
    assert r["detected"] == r["injected"] and r["refused_at_admission"] > 0
    assert r["claimed_wh"] == r["cancelled_held_wh"]


def test_phantom_generation_flagged_and_not_certified(day: DemoRun) -> None:
    r = _check_defended(day.summary, "phantom-generation")
    assert r["detected"] == r["injected"] and r["phantom_certified_wh"] == 0
    c = day.summary["certificates"]
    assert c["withheld_wh"] > 0 and c["issued_wh"] <= c["metered_export_wh"]


@pytest.mark.slow
def test_both_attacks_without_their_defences(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled bundles look active to the handlers, issuance ignores the DSO's flags, and
    no invariant checks claims or issuance: the attacker's second cancellation and transfer
    go through (energy counted twice) and the phantom export of flagged slots is certified."""
    real = cert_keeper.bundle

    def always_active(state: Any, slot: int, start: int) -> Any:
        b = real(state, slot, start)
        return None if b is None else replace(b, status="active")

    real_init = Issuer.__init__

    def blind(self: Issuer, registry: Any, market: Any, metering: Any, book: Any) -> None:
        real_init(self, registry, market, _NoFlags(metering), book)

    monkeypatch.setattr(cert_handlers.keeper, "bundle", always_active)
    monkeypatch.setattr(Issuer, "__init__", blind)
    monkeypatch.setattr(Invariants, "open_hours", lambda self, state: None)
    attacks = run(tmp_path, ("double-claim", "phantom-generation"))["attacks"]
    dc, ph = attacks["double-claim"], attacks["phantom-generation"]
    assert not dc["mitigated"] and dc["loss"] > 0, dc
    assert not ph["mitigated"] and ph["loss"] > 0 and ph["phantom_certified_wh"] == ph["loss"], ph
