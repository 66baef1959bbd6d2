"""Regulation and standardisation (docs/threat-model.md row 9): ``audit-export``.

After the run, a regulator receives the day's ledger as an audit bundle (``node.audit``)
exported from validator 0's store, and checks it with nothing else: it must pass. Then the
bundle is doctored the way a careless or dishonest intermediary would — one byte of a
transaction in the middle of the day changed — and checked again: it must fail, naming that
byte. *Detected* and *mitigated* are read from what ``verify_bundle`` reported.

The regulator's re-execution of the genuine bundle is the computation verify-chain already
did on validator 0's store: the bundle's block records are byte-equal to that store's rows
(checked here, record by record) and its header chain ends at the same tip hash, so they
re-execute to the same roots (block execution is a pure function of genesis and blocks — the
argument verify-chain uses for a chain's other stores, ``node.verify.Replayed``). The demo
therefore checks the genuine bundle without replay and takes verify-chain's verdict on that
store (``after_verify``); the CLI (``gridledger audit verify``) replays, as a regulator
does. Without verify-chain's report (``result`` before it) the bundle is replayed here.
"""

from __future__ import annotations

import mmap
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from gridledger.node.audit import (
    BLOCK_PARTS,
    AuditReport,
    Kind,
    export_bundle,
    iter_records,
    record_at_offset,
    verify_bundle,
)
from gridledger.node.store import STORE_SUFFIX, BlockStore
from gridledger.node.verify import VerifyReport
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
        self.checked: dict[str, Any] | None = None
        self.verified: VerifyReport | None = None
        self.outcome: dict[str, Any] | None = None

    def after_run(self) -> None:
        # the regulator's check needs only the closed stores: it runs while verify-chain
        # finishes its replay on the other core (issue 17)
        self._checked()

    def after_verify(self, reports: Sequence[VerifyReport]) -> None:
        store = self._checked()["store"]
        self.verified = next((r for r in reports if r.path.resolve() == store.resolve()), None)

    def result(self) -> dict[str, Any]:
        if self.outcome is None:
            self.outcome = self._result()
        return self.outcome

    def _checked(self) -> dict[str, Any]:
        if self.checked is None:
            self.checked = self._check()
        return self.checked

    def _genuine_replayed(self, c: dict[str, Any]) -> tuple[bool, str]:
        """(the genuine bundle re-executes to its headers, by whom)."""
        v, light = self.verified, c["genuine"]
        if v is not None and c["same_rows"]:
            same = v.ok and v.blocks == light.blocks and v.state_root == light.state_root
            return same, f"verify-chain of {v.path.name} (the same blocks, byte for byte)"
        t0 = time.perf_counter()
        full = verify_bundle(c["out"], genesis_hash=self.eng.community.genesis.hash)
        self.figures["audit_verify_s"] += round(time.perf_counter() - t0, 3)
        c["genuine"] = full
        return full.ok, "this check (replayed from the bundle's genesis)"

    def _result(self) -> dict[str, Any]:
        c = self._checked()
        replayed, by = self._genuine_replayed(c)
        genuine: AuditReport = c["genuine"]
        bad: AuditReport = c["bad"]
        named = [f for f in bad.findings if f.offset == c["offset"]]
        detected = int(not bad.ok)
        genuine_ok = genuine.ok and replayed
        mitigated = genuine_ok and detected == 1 and bool(named)
        exported, target = c["exported"], c["target"]
        return self.record(1, detected, mitigated, 0,
                           bundle=str(c["out"].relative_to(c["out"].parent.parent)),
                           bundle_bytes=exported.size_bytes, blocks=exported.blocks,
                           proofs=exported.proofs, genuine_verifies=genuine_ok,
                           genuine_findings=[str(f) for f in genuine.findings],
                           genuine_replayed_by=by,
                           altered_byte=c["offset"], altered_record=target.name,
                           finding=str(bad.findings[0]) if bad.findings else "",
                           altered_byte_named=bool(named),
                           note="injected = one doctored bundle (one byte of a transaction "
                                "changed); the genuine bundle verifies with the CLI alone")

    def _check(self) -> dict[str, Any]:
        data_dir = Path(self.eng.net.data_dir)
        store = sorted(data_dir.glob(f"*{STORE_SUFFIX}"))[0]
        out = data_dir.parent / "audit" / "ledger.glaudit"
        t0 = time.perf_counter()
        exported = export_bundle(store, out)
        t1 = time.perf_counter()
        # the regulator pins the community's published genesis hash (a bundle alone is only
        # self-consistent); every check but re-execution here (see the module docstring)
        pinned = self.eng.community.genesis.hash
        genuine = verify_bundle(out, replay=False, genesis_hash=pinned)
        with open(out, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            # mapped, not read (nor copied in memory): a year's bundle is gigabytes (issue 17)
            raw: bytes = m  # type: ignore[assignment]
            same_rows = _rows_equal(raw, store)
            t2 = time.perf_counter()
            # one byte of a transaction in a block from the middle of the run
            txs = [(r.offset, r.height) for r in iter_records(raw)
                   if r.kind is Kind.TRANSACTIONS and len(r.payload) > 64]
            target = record_at_offset(raw, *txs[len(txs) // 2])
        offset = target.start + self.rng.randrange(len(target.payload))
        flip = 1 << self.rng.randrange(8)
        # the doctored bundle: a copy in the run's own folder, that one byte changed on disk
        bad_path = out.with_name("ledger-doctored.glaudit")
        shutil.copyfile(out, bad_path)
        with open(bad_path, "r+b") as g:
            g.seek(offset)
            was = g.read(1)[0]
            g.seek(offset)
            g.write(bytes([was ^ flip]))
        bad = verify_bundle(bad_path, genesis_hash=pinned)
        t3 = time.perf_counter()
        self.figures = {"audit_export_s": round(t1 - t0, 3), "audit_verify_s": round(t2 - t1, 3),
                        "audit_verify_doctored_s": round(t3 - t2, 3)}
        return {"store": store, "out": out, "exported": exported, "genuine": genuine,
                "same_rows": same_rows, "bad": bad, "offset": offset, "target": target}

    def timings(self) -> dict[str, Any]:
        return dict(self.figures)


def _rows_equal(raw: bytes, store_path: Path) -> bool:
    """Whether every block record of the bundle ``raw`` is byte-equal to the same part of
    the same block in the store at ``store_path``, and the store has no other block."""
    parts = {Kind.HEADER: "header", Kind.CERTIFICATE: "cert", Kind.TRANSACTIONS: "txs",
             Kind.RECEIPTS: "receipts"}
    store = BlockStore(store_path, readonly=True)
    try:
        seen: set[int] = set()
        blk = None
        for rec in iter_records(raw):
            if rec.kind not in BLOCK_PARTS:
                continue
            if blk is None or blk.height != rec.height:
                blk = store.block(rec.height)
            if blk is None or getattr(blk, parts[rec.kind]) != rec.payload:
                return False
            seen.add(rec.height)
        return seen == set(range(1, store.tip() + 1))
    finally:
        store.close()
