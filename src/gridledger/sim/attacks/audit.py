"""Regulation and standardisation (docs/threat-model.md row 9): ``audit-export``.

After the run, a regulator receives the day's ledger as an audit bundle (``node.audit``)
exported from validator 0's store, and checks it with nothing else: it must pass. Then the
bundle is doctored the way a careless or dishonest intermediary would — one byte of a
transaction in the middle of the day changed — and checked again: it must fail, naming that
byte. *Detected* and *mitigated* are read from what ``verify_bundle`` reported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from gridledger.node.audit import Kind, export_bundle, records_of, verify_bundle
from gridledger.node.store import STORE_SUFFIX
from gridledger.sim.attack_base import Attack


class AuditExport(Attack):
    name: ClassVar[str] = "audit-export"
    threat: ClassVar[str] = "9 regulation and standardisation"
    defence: ClassVar[str] = (
        "audit bundle checked with the CLI alone: genesis validator set, hash links, quorum "
        "certificates, transaction and receipts roots, re-execution, proofs at the certified "
        "tip; an integrity table names an altered byte")
    measured_at_end: ClassVar[bool] = True  # the bundle is the finished chain

    def setup(self) -> None:
        self.figures: dict[str, float] = {}
        self.outcome: dict[str, Any] | None = None

    def after_run(self) -> None:
        # the regulator's check needs only the closed stores: it runs while verify-chain
        # finishes its replay on the other core (issue 17)
        self.result()

    def result(self) -> dict[str, Any]:
        if self.outcome is None:
            self.outcome = self._check()
        return self.outcome

    def _check(self) -> dict[str, Any]:
        data_dir = Path(self.eng.net.data_dir)
        store = sorted(data_dir.glob(f"*{STORE_SUFFIX}"))[0]
        out = data_dir.parent / "audit" / "ledger.glaudit"
        t0 = time.perf_counter()
        exported = export_bundle(store, out)
        t1 = time.perf_counter()
        # the regulator pins the community's published genesis hash (a bundle alone is only
        # self-consistent)
        pinned = self.eng.community.genesis.hash
        genuine = verify_bundle(out, genesis_hash=pinned)
        t2 = time.perf_counter()
        raw = out.read_bytes()
        # one byte of a transaction in a block from the middle of the run
        txs = [r for r in records_of(raw) if r.kind is Kind.TRANSACTIONS and len(r.payload) > 64]
        target = txs[len(txs) // 2]
        offset = target.start + self.rng.randrange(len(target.payload))
        doctored = bytearray(raw)
        doctored[offset] ^= 1 << self.rng.randrange(8)
        bad_path = out.with_name("ledger-doctored.glaudit")
        bad_path.write_bytes(bytes(doctored))
        bad = verify_bundle(bad_path, genesis_hash=pinned)
        t3 = time.perf_counter()
        self.figures = {"audit_export_s": round(t1 - t0, 3), "audit_verify_s": round(t2 - t1, 3),
                        "audit_verify_doctored_s": round(t3 - t2, 3)}
        named = [f for f in bad.findings if f.offset == offset]
        detected = int(not bad.ok)
        mitigated = genuine.ok and detected == 1 and bool(named)
        return self.record(1, detected, mitigated, 0,
                           bundle=str(out.relative_to(data_dir.parent)),
                           bundle_bytes=exported.size_bytes, blocks=exported.blocks,
                           proofs=exported.proofs, genuine_verifies=genuine.ok,
                           genuine_findings=[str(f) for f in genuine.findings],
                           altered_byte=offset, altered_record=target.name,
                           finding=str(bad.findings[0]) if bad.findings else "",
                           altered_byte_named=bool(named),
                           note="injected = one doctored bundle (one byte of a transaction "
                                "changed); the genuine bundle verifies with the CLI alone")

    def timings(self) -> dict[str, Any]:
        return dict(self.figures)
