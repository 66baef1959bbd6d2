"""``verify-chain``: replay a ledger store from genesis and check every byte a node reads.

The store is opened read-only. Every row of every table is checked:

* ``meta``: the genesis document builds an application; the validator index and the index
  flag are well formed; no other keys.
* ``blocks``: height and ``prev_hash`` link, strict decoding (header, certificate,
  transactions: one encoding each), ``tx_root`` over the stored transactions, the header's
  validator-set hash and quorum certificate against the validator set of the parent state
  (sets changed by governance are followed), re-execution giving the header's
  ``state_root`` and ``receipts_root``, and the stored receipts byte-equal to the
  recomputed ones.
* ``snapshots``: each one, at any height, byte-equal to the replayed state at its height.
* ``txindex``: exactly the rows the stored receipts give.
* ``evidence``: each row decodes; equivocation evidence is two valid votes of the named
  validator (in the set of that height) for two headers at that height.

The first failure is named with its table, row and height.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridledger.errors import GridLedgerError
from gridledger.ledger import codec
from gridledger.ledger.app import Application
from gridledger.ledger.block import (
    Certificate,
    Header,
    tx_root,
    verify_certificate,
    verify_vote_signature,
)
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.modules import Module
from gridledger.ledger.valset import keys_hash
from gridledger.node.store import (
    STORE_SUFFIX,
    TXINDEX_READY,
    BlockStore,
    encode_snapshot,
    index_entries,
    index_rows,
)

TABLES = ("meta", "blocks", "snapshots", "evidence", "txindex")


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    blocks: int
    state_root: bytes
    bad_height: int | None = None
    reason: str = ""
    table: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_height is None


class _Bad(Exception):
    """A finding: the table, row and height of the first bad byte."""

    def __init__(self, table: str, row: str, height: int, what: str) -> None:
        super().__init__(f"{table} row {row}: {what}")
        self.table, self.height = table, height


def _check_evidence(row: int, height: int, kind: str, body: Any, chain_id: str,
                    keys: Sequence[tuple[str, bytes]]) -> None:
    where = ("evidence", f"id {row}", height)
    if kind == "fault":
        if (not isinstance(body, dict) or sorted(body) != ["reason", "validator"]
                or type(body["validator"]) is not int or type(body["reason"]) is not str):
            raise _Bad(*where, "fault evidence is not {validator, reason}")
        return
    if kind != "equivocation":
        raise _Bad(*where, f"unknown evidence kind {kind!r}")
    try:
        i, hashes, sigs = body["validator"], body["header_hashes"], body["sigs"]
        ok_shape = (sorted(body) == ["header_hashes", "height", "sigs", "validator"]
                    and body["height"] == height and type(i) is int and 0 <= i < len(keys)
                    and len(hashes) == 2 == len(sigs) and hashes[0] != hashes[1])
    except (TypeError, KeyError):
        ok_shape = False
    if not ok_shape:
        raise _Bad(*where, "equivocation evidence is not two votes of one validator of this height")
    alg, pk = keys[i]
    if not all(type(h) is bytes and type(s) is bytes
               and verify_vote_signature(alg, pk, chain_id, height, h, s)
               for h, s in zip(hashes, sigs, strict=True)):
        raise _Bad(*where, f"equivocation evidence: a vote does not verify under validator {i}'s key")


class BlockFault(Exception):
    """One block fails a check: ``part`` (header, certificate, transactions, receipts, log
    position) says which of its stored pieces, ``what`` why."""

    def __init__(self, part: str, what: str) -> None:
        super().__init__(what)
        self.part, self.what = part, what


def decode_block(height: int, header_raw: bytes, cert_raw: bytes,
                 txs: Callable[[], list[bytes]]) -> tuple[Header, Certificate, list[bytes]]:
    """Strict decoding of one stored block (one encoding each); raises ``BlockFault``."""
    part = "header"
    try:
        header = Header.decode(header_raw)
        part = "certificate"
        cert = Certificate.decode(cert_raw)
        part = "transactions"
        tx_list = txs()
    except GridLedgerError as exc:
        raise BlockFault(part, f"undecodable: {exc}") from exc
    if header.height != height:
        raise BlockFault("header", "header height/chain id")
    return header, cert, tx_list


def check_certified(chain_id: str, prev_hash: bytes, keys: Sequence[tuple[str, bytes]],
                    header: Header, cert: Certificate, txs: Sequence[bytes]) -> None:
    """What needs no execution: chain id, the hash link, ``tx_root`` over ``txs``, the
    validator-set hash and the quorum certificate against ``keys`` (the set of the header's
    height). Raises ``BlockFault``."""
    if header.chain_id != chain_id:
        raise BlockFault("header", "header height/chain id")
    if header.prev_hash != prev_hash:
        raise BlockFault("header", "prev_hash does not link to the previous block")
    if header.tx_root != tx_root(txs):
        raise BlockFault("transactions", "tx_root does not match the stored transactions")
    if header.validator_set_hash != keys_hash(keys):
        raise BlockFault("header", "validator_set_hash is not the active validator set")
    try:
        verify_certificate(header, cert, keys)
    except GridLedgerError as exc:
        raise BlockFault("certificate", f"certificate: {exc}") from exc


def replay_block(app: Application, header: Header, txs: Sequence[bytes], receipts: bytes) -> None:
    """Execute ``txs`` on ``app`` and commit, if that gives ``header`` and byte-equal
    ``receipts``; otherwise discard and raise ``BlockFault``."""
    try:
        got, result = app.finalize_block(txs, header.slot_time)
    except GridLedgerError as exc:
        raise BlockFault("transactions", f"execution: {exc}") from exc
    if got.state_root != header.state_root:
        app.discard()
        raise BlockFault("header", "re-execution gives a different state_root")
    if got.receipts_root != header.receipts_root or result.encode_receipts() != receipts:
        app.discard()
        raise BlockFault("receipts", "receipts differ from re-execution")
    if got.hash != header.hash:
        app.discard()
        raise BlockFault("header", "header fields differ")
    app.commit()


def _replay(store: BlockStore, modules: Sequence[Module] | None) -> tuple[int, bytes]:
    """Check everything; returns (blocks, final state root) or raises ``_Bad``."""
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise _Bad(missing[0], "-", 0, "table missing: not a ledger store")
    meta = {str(k): bytes(v) for k, v in store.db.execute("SELECT key, value FROM meta")}
    for key, value in sorted(meta.items()):
        if key == "validator_index" and not value.isdigit():
            raise _Bad("meta", key, 0, "validator index is not a number")
        if key == TXINDEX_READY and value != b"1":
            raise _Bad("meta", key, 0, "index flag is not 1")
        if key not in ("genesis", "validator_index", TXINDEX_READY):
            raise _Bad("meta", key, 0, "unknown meta key")
    if "genesis" not in meta:
        raise _Bad("meta", "genesis", 0, "no genesis document in store")
    try:
        genesis = Genesis.decode(meta["genesis"])
        app = Application(genesis, modules)
    except Exception as exc:
        raise _Bad("meta", "genesis", 0, f"genesis does not build: {exc}") from exc

    snapshots = set(store.snapshot_heights())
    evidence: dict[int, list[tuple[int, str, Any]]] = {}
    for rid, h, kind, body in store.db.execute("SELECT id, height, kind, body FROM evidence ORDER BY id"):
        try:
            obj = codec.decode(bytes(body))
        except GridLedgerError as exc:
            raise _Bad("evidence", f"id {rid}", int(h), f"undecodable: {exc}") from exc
        evidence.setdefault(int(h), []).append((int(rid), str(kind), obj))
    index: dict[bytes, tuple[int, int]] = {}
    expected = 1
    for blk in store.blocks(1):
        h = blk.height
        where = ("blocks", f"height {h}", h)
        if h != expected:
            raise _Bad("blocks", f"height {expected}", expected,
                       f"block {expected} is missing (next stored is {h})")
        try:
            header, cert, txs = decode_block(h, blk.header, blk.cert, blk.tx_list)
            if blk.log_end < 0:  # a position in the orderer's log (an embedded run starts at 0)
                raise BlockFault("log position", f"log position {blk.log_end} is negative")
            keys = app.validator_keys()  # the set active at height h (state after h - 1)
            check_certified(app.chain_id, app.last_hash, keys, header, cert, txs)
            for rid, kind, body in evidence.pop(h, []):
                _check_evidence(rid, h, kind, body, app.chain_id, keys)
            replay_block(app, header, txs, blk.receipts)
        except BlockFault as fault:
            raise _Bad(*where, fault.what) from fault
        for tx, rh, ok in index_rows(index_entries(blk.receipts), h):
            if ok or tx not in index:
                index[tx] = (rh, ok)
        if h in snapshots:
            snapshots.discard(h)
            if store.snapshot_bytes(h) != encode_snapshot(app.state.snapshot_items()):
                raise _Bad("snapshots", f"height {h}", h,
                           f"state does not match the replayed state of block {h}")
        expected += 1
    tip = expected - 1
    for h in sorted(snapshots):
        raise _Bad("snapshots", f"height {h}", h, f"snapshot without a stored block {h}")
    for h, rows in sorted(evidence.items()):
        if h != tip + 1:  # evidence of the height that did not finalise (a halt) is allowed
            raise _Bad("evidence", f"id {rows[0][0]}", h, f"evidence for height {h} beyond the tip {tip}")
        for rid, kind, body in rows:
            _check_evidence(rid, h, kind, body, app.chain_id, app.validator_keys())
    stored = {tx: (h, int(ok)) for tx, h, ok in store.index()}
    for tx in sorted(set(stored) | set(index)):
        if stored.get(tx) != index.get(tx):
            h = (index.get(tx) or stored[tx])[0]
            raise _Bad("txindex", f"tx {tx.hex()[:16]}…", h,
                       f"index says {stored.get(tx)}, the receipts say {index.get(tx)}")
    return tip, app.state.root()


def verify_store(path: str | Path, modules: Sequence[Module] | None = None) -> VerifyReport:
    """Check one SQLite store (opened read-only); never raises for bad content, reports it."""
    path = Path(path)
    try:
        store = BlockStore(path, readonly=True)
    except Exception as exc:  # not a SQLite file at all
        return VerifyReport(path, 0, b"", 0, f"store unreadable: {exc}", "-")
    try:
        blocks, root = _replay(store, modules)
        return VerifyReport(path, blocks, root)
    except _Bad as bad:
        return VerifyReport(path, max(0, bad.height - 1), b"", bad.height, str(bad), bad.table)
    except Exception as exc:  # a corrupt SQLite file is a finding, not a crash
        return VerifyReport(path, 0, b"", 0, f"store unreadable: {exc}", "-")
    finally:
        store.close()


def find_stores(root: str | Path) -> list[Path]:
    """Every ledger store under ``root`` (a file or a directory), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob(f"*{STORE_SUFFIX}") if p.is_file())


PARALLEL_FROM_BYTES = 4 << 20
"""Stores smaller than this in all are replayed here: starting a process (~1 s of imports)
would cost more than it saves."""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # verify_store reports it
        return 0


def verify_workers(paths: Sequence[Path], workers: int = 2) -> int:
    """How many processes ``verify_stores`` replays ``paths`` in (1: only this one)."""
    n = max(1, min(workers, len(paths), os.cpu_count() or 1))
    return 1 if sum(_size(p) for p in paths) < PARALLEL_FROM_BYTES else n


def verify_stores(paths: Sequence[Path], workers: int = 2,
                  progress: Callable[[int, int], None] | None = None) -> list[VerifyReport]:
    """``verify_store`` of each path (reports in the order given), on up to ``workers``
    cores: this process replays its share while ``workers - 1`` fresh interpreters
    (``python -c``, nothing inherited but the environment) replay theirs. Each store is still
    replayed whole and alone; the processes only use the machine's other cores (issue 17).
    Not a fork (the caller may hold threads: a signature pool, a progress bar) and not a
    multiprocessing spawn (it re-runs the caller's main script). A worker that fails to
    report leaves its stores to be replayed here: a report is never lost.
    ``progress(stores done, stores)`` before the first and as stores are done."""
    paths = list(paths)
    reports: dict[str, VerifyReport] = {}

    def done(p: Path, r: VerifyReport) -> None:
        reports[str(p)] = r
        if progress is not None:
            progress(len(reports), len(paths))

    if progress is not None:
        progress(0, len(paths))
    n = verify_workers(paths, workers)
    if n == 1:
        for p in paths:
            done(p, verify_store(p))
        return [reports[str(p)] for p in paths]
    shares = [paths[i::n] for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, *map(str, share)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for share in shares[1:]]
    for p in shares[0]:
        done(p, verify_store(p))
    for proc, share in zip(procs, shares[1:], strict=True):
        out, _ = proc.communicate()
        got = _parse_reports(out) if proc.returncode == 0 else {}
        for p in share:
            done(p, got.get(str(p)) or verify_store(p))
    return [reports[str(p)] for p in paths]


_WORKER = "from gridledger.node.verify import _worker_main; _worker_main()"


def _worker_main() -> None:
    """``verify_stores``' worker: one JSON report per store named in ``sys.argv``."""
    for arg in sys.argv[1:]:
        r = verify_store(arg)
        print(json.dumps({"path": arg, "blocks": r.blocks, "state_root": r.state_root.hex(),
                          "bad_height": r.bad_height, "reason": r.reason, "table": r.table}),
              flush=True)


def _parse_reports(out: str) -> dict[str, VerifyReport]:
    reports = {}
    for line in out.splitlines():
        try:
            d = json.loads(line)
            reports[str(d["path"])] = VerifyReport(
                Path(d["path"]), int(d["blocks"]), bytes.fromhex(d["state_root"]),
                None if d["bad_height"] is None else int(d["bad_height"]), str(d["reason"]),
                str(d["table"]))
        except (ValueError, KeyError, TypeError):  # a garbled line: that store is replayed here
            continue
    return reports


def verify_dir(root: str | Path, workers: int = 2) -> list[VerifyReport]:
    """``verify_store`` of every store under ``root`` (sorted), ``workers`` processes at once."""
    return verify_stores(find_stores(root), workers)
