"""``audit-export`` (threat row 9) in the shared default day: the regulator's bundle of the
day's ledger verifies with nothing else (pinned to the community's genesis), and the copy
with one altered transaction byte fails naming that byte. Its defence-removal test needs no
run: tests/node/test_audit.py (with the ledger checks removed a forgery passes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gridledger.node.audit import verify_bundle
from gridledger.node.verify import find_stores, verify_stores
from gridledger.sim.attacks.audit import AuditExport
from gridledger.sim.engine import Engine
from gridledger.sim.scenario import Scenario, check_scenario

from .conftest import DemoRun


def test_default_day_audit_bundle(default_day: DemoRun) -> None:
    s = default_day.summary
    a = s["attacks"]["audit-export"]
    assert a["injected"] == 1 and a["detected"] == 1 and a["mitigated"] and a["loss"] == 0, a
    assert a["genuine_verifies"] and a["genuine_findings"] == [] and a["altered_byte_named"]
    assert a["blocks"] == s["ledger"]["blocks"] and a["proofs"] > 0
    assert f"byte {a['altered_byte']}" in a["finding"] and a["altered_record"] in a["finding"]
    bundle = default_day.out / a["bundle"]
    assert bundle.stat().st_size == a["bundle_bytes"]
    assert s["threat_rows"]["9"]["mitigated"]
    # the file on disk is what the regulator checks: light pass only here (the run's own
    # check re-executed it already)
    assert verify_bundle(bundle, replay=False).ok
    assert a["genuine_replayed_by"].startswith("verify-chain of validator-0"), a


def test_the_genuine_bundle_takes_verify_chains_replay_only_for_the_same_blocks(
        tmp_path: Path) -> None:
    """The demo does not re-execute the genuine bundle: its block records are byte-equal to
    validator 0's rows, which verify-chain re-executed. Without verify-chain's report the
    scenario replays the bundle itself; with a report that failed the store, the genuine
    bundle does not count as verified."""
    sc = Scenario(participants=8, slots=3, validators=1, seed=7, start_slot_of_day=40,
                  attacks=("audit-export",))
    eng = Engine(sc, check_scenario(sc), tmp_path)
    eng.run()
    eng.after_run()
    audit = eng.attacks[0]
    assert isinstance(audit, AuditExport)
    alone = audit._result()   # no verify-chain report yet: replayed here
    assert alone["mitigated"] and alone["genuine_replayed_by"].startswith("this check")
    assert audit.checked is not None and audit.checked["same_rows"]
    reports = verify_stores(find_stores(tmp_path / "ledger"))
    audit.after_verify(reports)
    taken = audit._result()
    assert taken["mitigated"] and taken["genuine_replayed_by"].startswith("verify-chain of")
    assert {k: v for k, v in taken.items() if k != "genuine_replayed_by"} == \
        {k: v for k, v in alone.items() if k != "genuine_replayed_by"}
    failed = [dataclasses.replace(r, bad_height=2, reason="state root differs") for r in reports]
    audit.after_verify(failed)
    assert not audit._result()["genuine_verifies"] and not audit._result()["mitigated"]
    # a bundle whose blocks are not the store's rows is replayed, never taken on trust
    audit.checked["same_rows"] = False
    audit.after_verify(reports)
    assert audit._result()["genuine_replayed_by"].startswith("this check")
