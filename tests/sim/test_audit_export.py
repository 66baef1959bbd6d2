"""``audit-export`` (threat row 9) in the shared default day: the regulator's bundle of the
day's ledger verifies with nothing else (pinned to the community's genesis), and the copy
with one altered transaction byte fails naming that byte. Its defence-removal test needs no
run: tests/node/test_audit.py (with the ledger checks removed a forgery passes)."""

from __future__ import annotations

from gridledger.node.audit import verify_bundle

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
