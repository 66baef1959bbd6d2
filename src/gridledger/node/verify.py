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

import hashlib
import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    StoredBlock,
    encode_snapshot,
    fold_wal,
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
    replayed: bool = field(default=True, compare=False)
    """False when the store was checked against another store's replay of the same chain
    (its blocks byte-equal to replayed ones) instead of re-executing its own blocks: the
    same verdict, ``compare=False`` so that reports compare by verdict."""

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
        got, result = app.finalize_block(txs, header.slot_time, set_aside=False)
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


def _check_meta(store: BlockStore) -> bytes:
    """The ``meta`` table's checks; returns the genesis document's bytes (raises ``_Bad``)."""
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
    return meta["genesis"]


def _evidence_rows(store: BlockStore, after_id: int = 0) -> dict[int, list[tuple[int, str, Any]]]:
    """Evidence rows with an id above ``after_id``, decoded, by height (raises ``_Bad``)."""
    evidence: dict[int, list[tuple[int, str, Any]]] = {}
    for rid, h, kind, body in store.db.execute(
            "SELECT id, height, kind, body FROM evidence WHERE id>? ORDER BY id", (after_id,)):
        try:
            obj = codec.decode(bytes(body))
        except GridLedgerError as exc:
            raise _Bad("evidence", f"id {rid}", int(h), f"undecodable: {exc}") from exc
        evidence.setdefault(int(h), []).append((int(rid), str(kind), obj))
    return evidence


def _check_index(store: BlockStore, index: dict[bytes, tuple[int, int]]) -> None:
    """The ``txindex`` table holds exactly ``index`` (tx id -> (height, ok)), the rows the
    stored receipts give."""
    stored = {tx: (h, int(ok)) for tx, h, ok in store.index()}
    for tx in sorted(set(stored) | set(index)):
        if stored.get(tx) != index.get(tx):
            h = (index.get(tx) or stored[tx])[0]
            raise _Bad("txindex", f"tx {tx.hex()[:16]}…", h,
                       f"index says {stored.get(tx)}, the receipts say {index.get(tx)}")


def _add_index(index: dict[bytes, tuple[int, int]], receipts: bytes, h: int) -> None:
    for tx, rh, ok in index_rows(index_entries(receipts), h):
        if ok or tx not in index:
            index[tx] = (rh, ok)


def _row_digest(blk: StoredBlock) -> bytes:
    """One digest of what a block row holds beside its log position (length-prefixed, so
    no two rows share one)."""
    d = hashlib.sha256()
    for part in (blk.header, blk.txs, blk.receipts, blk.cert):
        d.update(len(part).to_bytes(8, "big"))
        d.update(part)
    return d.digest()


Keys = Sequence[tuple[str, bytes]]


@dataclass
class Replayed:
    """What the replay of one store established, so that another store of the same chain
    is checked without executing its blocks again: block execution is a pure function of
    the genesis and the blocks (that is what lets every validator agree), so a store whose
    rows hold the same bytes as rows that re-executed to their headers' roots and receipts
    would re-execute to them too (issue 17: the demo replayed its 4 identical stores 4
    times). Every other row of that store is still checked (meta, evidence, snapshots
    byte-equal to the replayed state, txindex)."""

    genesis: bytes
    rows: dict[int, bytes] = field(default_factory=dict)
    """Height -> ``_row_digest`` of a block row that passed every check at that height."""
    roots: dict[int, bytes] = field(default_factory=dict)
    """Height -> the state root after that block (re-executed)."""
    snapshots: dict[int, bytes] = field(default_factory=dict)
    """Height -> SHA-256 of the replayed state's snapshot encoding (the heights the
    replayed store holds snapshots at)."""
    key_sets: list[tuple[int, Keys]] = field(default_factory=list)
    """(height, the validator set active from that height on), in height order."""

    def keys_at(self, height: int) -> Keys:
        """The validator set active at ``height`` (the state after block ``height - 1``)."""
        return next(keys for h, keys in reversed(self.key_sets) if h <= height)


class _Replay:
    """``verify_store``'s replay of one store, block by block: ``advance`` checks and
    re-executes every block stored so far (called again, it goes on from there: a store a
    node is still writing can be followed), ``finish`` checks what needs the whole store
    (evidence beyond the tip, snapshots without a block, the transaction index). Raises
    ``_Bad`` naming the first bad row."""

    def __init__(self, store: BlockStore, modules: Sequence[Module] | None) -> None:
        self.store = store
        genesis_raw = _check_meta(store)
        try:
            genesis = Genesis.decode(genesis_raw)
            self.app = Application(genesis, modules)
        except Exception as exc:
            raise _Bad("meta", "genesis", 0, f"genesis does not build: {exc}") from exc
        self.done = Replayed(genesis_raw, key_sets=[(1, self.app.validator_keys())])
        self.evidence = _evidence_rows(store)
        self.evidence_id = max((rid for rows in self.evidence.values() for rid, _, _ in rows),
                               default=0)
        self.index: dict[bytes, tuple[int, int]] = {}
        self.tip = 0

    def advance(self) -> int:
        """Check and replay the blocks stored beyond the tip so far; returns the new tip."""
        app, done = self.app, self.done
        for blk in self.store.blocks(self.tip + 1):
            h = blk.height
            where = ("blocks", f"height {h}", h)
            if h != self.tip + 1:
                raise _Bad("blocks", f"height {self.tip + 1}", self.tip + 1,
                           f"block {self.tip + 1} is missing (next stored is {h})")
            try:
                header, cert, txs = decode_block(h, blk.header, blk.cert, blk.tx_list)
                if blk.log_end < 0:  # a position in the orderer's log (an embedded run starts at 0)
                    raise BlockFault("log position", f"log position {blk.log_end} is negative")
                keys = app.validator_keys()  # the set active at height h (state after h - 1)
                check_certified(app.chain_id, app.last_hash, keys, header, cert, txs)
                for rid, kind, body in self.evidence.pop(h, []):
                    _check_evidence(rid, h, kind, body, app.chain_id, keys)
                replay_block(app, header, txs, blk.receipts)
            except BlockFault as fault:
                raise _Bad(*where, fault.what) from fault
            _add_index(self.index, blk.receipts, h)
            # read while the blocks cursor is open: the same read transaction, so a block
            # and the snapshot a writer stored with it are seen together
            stored = self.store.snapshot_bytes(h)
            if stored is not None:
                encoded = encode_snapshot(app.state.snapshot_items())
                if stored != encoded:
                    raise _Bad("snapshots", f"height {h}", h,
                               f"state does not match the replayed state of block {h}")
                done.snapshots[h] = hashlib.sha256(encoded).digest()
            done.rows[h] = _row_digest(blk)
            done.roots[h] = header.state_root
            after = app.validator_keys()
            if list(after) != list(done.key_sets[-1][1]):
                done.key_sets.append((h + 1, after))
            self.tip = h
        return self.tip

    def finish(self) -> tuple[int, bytes]:
        """The checks that need the whole store; returns (blocks, final state root)."""
        app, tip = self.app, self.tip
        for h, rows in _evidence_rows(self.store, self.evidence_id).items():  # added meanwhile
            if h <= tip:
                for rid, kind, body in rows:
                    _check_evidence(rid, h, kind, body, app.chain_id, self.done.keys_at(h))
            else:
                self.evidence.setdefault(h, []).extend(rows)
        for h in sorted(set(self.store.snapshot_heights()) - set(self.done.snapshots)):
            raise _Bad("snapshots", f"height {h}", h, f"snapshot without a stored block {h}"
                       if h > tip else f"snapshot at {h} stored after its block was checked")
        for h, rows in sorted(self.evidence.items()):
            if h != tip + 1:  # evidence of the height that did not finalise (a halt) is allowed
                raise _Bad("evidence", f"id {rows[0][0]}", h, f"evidence for height {h} beyond the tip {tip}")
            for rid, kind, body in rows:
                _check_evidence(rid, h, kind, body, app.chain_id, app.validator_keys())
        _check_index(self.store, self.index)
        return tip, app.state.root()


def _replay(store: BlockStore, modules: Sequence[Module] | None) -> tuple[int, bytes]:
    """Check everything; returns (blocks, final state root) or raises ``_Bad``."""
    r = _Replay(store, modules)
    r.advance()
    return r.finish()


def _same_chain(store: BlockStore, ref: Replayed) -> tuple[int, bytes] | None:
    """Check ``store`` against a replay of the same chain without executing anything:
    (blocks, final state root) if every row is byte-equal to a replayed row (or, for
    evidence, snapshots and the index, checks out against the replay), else None (the
    store must be replayed itself, which names its first bad row)."""
    try:
        if _check_meta(store) != ref.genesis:
            return None
        index: dict[bytes, tuple[int, int]] = {}
        tip = 0
        for blk in store.blocks(1):
            if blk.height != tip + 1 or blk.log_end < 0 or ref.rows.get(blk.height) != _row_digest(blk):
                return None
            tip = blk.height
            _add_index(index, blk.receipts, tip)
        for h in store.snapshot_heights():
            raw = store.snapshot_bytes(h)
            if h > tip or raw is None or ref.snapshots.get(h) != hashlib.sha256(raw).digest():
                return None
        chain_id = Genesis.decode(ref.genesis).chain_id
        for h, rows in _evidence_rows(store).items():
            if h > tip + 1:
                return None
            for rid, kind, body in rows:
                _check_evidence(rid, h, kind, body, chain_id, ref.keys_at(h))
        _check_index(store, index)
    except (_Bad, GridLedgerError):
        return None
    if tip == 0:
        return None  # nothing compared: the replay's own checks decide
    return tip, ref.roots[tip]


def _verify(path: Path, reference: Replayed | None = None,
            follow: Callable[[], bool] | None = None,
            modules: Sequence[Module] | None = None) -> tuple[VerifyReport, Replayed | None]:
    """``verify_store`` of ``path``, and what its replay established (None when it was not
    replayed: it did not open, or it matched ``reference`` row for row). With ``follow``
    the store is still being written: its blocks are replayed as they come for as long as
    ``follow()`` (which may wait a little) returns True."""
    try:
        store = BlockStore(path, readonly=True)
    except Exception as exc:  # not a SQLite file at all
        return VerifyReport(path, 0, b"", 0, f"store unreadable: {exc}", "-"), None
    replay: _Replay | None = None
    try:
        if reference is not None:
            same = _same_chain(store, reference)
            if same is not None:
                return VerifyReport(path, *same, replayed=False), None
        replay = _Replay(store, modules)
        while follow is not None and follow():
            replay.advance()
        replay.advance()
        blocks, root = replay.finish()
        return VerifyReport(path, blocks, root), replay.done
    except _Bad as bad:
        return (VerifyReport(path, max(0, bad.height - 1), b"", bad.height, str(bad), bad.table),
                None if replay is None else replay.done)
    except Exception as exc:  # a corrupt SQLite file is a finding, not a crash
        return VerifyReport(path, 0, b"", 0, f"store unreadable: {exc}", "-"), None
    finally:
        store.close()


def verify_store(path: str | Path, modules: Sequence[Module] | None = None) -> VerifyReport:
    """Check one SQLite store (opened read-only); never raises for bad content, reports it."""
    return _verify(Path(path), modules=modules)[0]


def _verify_chain(paths: Sequence[Path], done: Callable[[Path, VerifyReport], None],
                  follow: Callable[[], bool] | None = None) -> None:
    """``done(path, report)`` for stores of one chain, in order: the first is replayed
    (followed while it is written, with ``follow``); each other one is checked against the
    first replay (``_same_chain``) and replayed itself only where it differs."""
    reference: Replayed | None = None
    for i, p in enumerate(paths):
        report, replayed = _verify(p, reference, follow if i == 0 else None)
        while i == 0 and follow is not None and follow():
            pass  # the others are still being written: wait for the writer to finish
        reference = reference or replayed
        done(p, report)


def _chains(paths: Sequence[Path]) -> list[list[Path]]:
    """``paths`` by chain (the same genesis document), each chain's longest store first
    (its replay covers the most of the others); stores that do not open are alone."""
    keyed: dict[bytes, list[tuple[int, int, Path]]] = {}
    alone: list[list[Path]] = []
    for i, p in enumerate(paths):
        try:
            store = BlockStore(p, readonly=True)
            try:
                genesis, tip = store.get_meta("genesis"), store.tip()
            finally:
                store.close()
        except Exception:  # verify_store names what is wrong with it
            genesis, tip = None, 0
        if genesis is None:
            alone.append([p])
        else:
            keyed.setdefault(genesis, []).append((-tip, i, p))
    return [[p for _, _, p in sorted(rows)] for rows in keyed.values()] + alone


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
    """How many processes ``verify_stores`` replays ``paths`` in (1: only this one): one
    per chain among them, up to ``workers`` and the cores."""
    if sum(_size(p) for p in paths) < PARALLEL_FROM_BYTES:
        return 1
    return max(1, min(workers, len(_chains(paths)), os.cpu_count() or 1))


def verify_stores(paths: Sequence[Path], workers: int = 2,
                  progress: Callable[[int, int], None] | None = None) -> list[VerifyReport]:
    """``verify_store`` of each path (reports in the order given). Each chain among the
    stores (same genesis) is replayed once, from its longest store; every other store of
    that chain is checked row by row against that replay and replayed itself only if a
    row differs (issue 17: a demo's four validators hold the same blocks, and replaying
    identical bytes four times checks nothing more). Chains are replayed on up to
    ``workers`` cores: this process takes its share while ``workers - 1`` fresh
    interpreters (``python -c``, nothing inherited but the environment) take theirs.
    Not a fork (the caller may hold threads: a signature pool, a progress bar) and not a
    multiprocessing spawn (it re-runs the caller's main script). A worker that fails to
    report leaves its stores to be checked here: a report is never lost.
    ``progress(stores done, stores)`` before the first and as stores are done."""
    paths = list(paths)
    reports: dict[str, VerifyReport] = {}

    def done(p: Path, r: VerifyReport) -> None:
        reports[str(p)] = r
        if progress is not None:
            progress(len(reports), len(paths))

    if progress is not None:
        progress(0, len(paths))
    chains = _chains(paths)
    n = verify_workers(paths, workers)
    shares = [[p for c in chains[i::n] for p in c] for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, *map(str, share)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for share in shares[1:]]
    for chain in chains[0::n]:
        _verify_chain(chain, done)
    for proc, share in zip(procs, shares[1:], strict=True):
        out, _ = proc.communicate()
        got = _parse_reports(out) if proc.returncode == 0 else {}
        missing = [p for p in share if str(p) not in got]
        for p in share:
            if str(p) in got:
                done(p, got[str(p)])
        for chain in _chains(missing):
            _verify_chain(chain, done)
    return [reports[str(p)] for p in paths]


FOLLOW_POLL_S = 0.5
"""How long a follower waits for new blocks before it looks again."""
FOLLOW_NICE = 10
"""How much nicer than the run the follower is while the run writes the stores (``_follow_main``). Its replay
is needed only once the run ends; until then it should take the time the run's own
processes leave: a demo's block phase keeps both cores busy (the validator host's two
executions, the pool's signature checks), and a follower at equal priority stretched it
while the other phases leave the second core idle (issue 17)."""


class StoreFollower:
    """``verify_stores`` of the stores of one chain while a node is still writing them, on
    another core: a worker process (``python -c``, as ``verify_stores``' workers) replays
    the first store block by block as it is written; ``reports`` (once the writer is done)
    lets it replay the rest and check every other store against that replay, exactly as
    ``verify_stores`` would afterwards (issue 17: the demo's verify-chain ran after the
    run, on one core, while the other idled during it)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self.proc: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-c", _FOLLOW_WORKER, *map(str, self.paths)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            # its own session: a Ctrl-C at the terminal stops the run (which then asks for
            # the reports), not the follower; the end of its stdin stops it in any case
            start_new_session=True)

    def writer_done(self) -> None:
        """Tell the worker the writer closed the stores: it replays the last blocks and
        checks the other stores at once, at the run's priority again (``FOLLOW_NICE``),
        while the caller does other work before ``reports`` (the demo: the scenarios'
        after-run checks)."""
        proc = self.proc
        if proc is not None and proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.write("done\n")
                proc.stdin.close()
            except OSError:  # the worker is gone: ``reports`` checks everything here
                pass

    def reports(self, progress: Callable[[int, int], None] | None = None) -> list[VerifyReport]:
        """Every store's report, in order (call after the writer closed the stores).
        ``progress(stores done, stores)`` as ``verify_stores`` calls it. A worker that fails
        to report leaves its stores to be checked here."""
        reports: dict[str, VerifyReport] = {}
        total = len(self.paths)
        if progress is not None:
            progress(0, total)
        self.writer_done()
        proc, self.proc = self.proc, None
        if proc is not None and proc.stdout is not None:
            for line in proc.stdout:
                for path, r in _parse_reports(line).items():
                    reports[path] = r
                    if progress is not None:
                        progress(len(reports), total)
            proc.wait()
        for p in self.paths:  # the worker read them to the end while the writer closed them
            fold_wal(p)
        missing = [p for p in self.paths if str(p) not in reports]
        if missing:
            base = len(reports)
            rest = verify_stores(missing, progress=None if progress is None else
                                 lambda d, _n: progress(base + d, total))
            reports.update({str(p): r for p, r in zip(missing, rest, strict=True)})
        return [reports[str(p)] for p in self.paths]

    def close(self) -> None:
        """Stop the worker without reports (a run that failed)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None


_WORKER = "from gridledger.node.verify import _worker_main; _worker_main()"
_FOLLOW_WORKER = "from gridledger.node.verify import _follow_main; _follow_main()"


def _emit(p: Path, r: VerifyReport) -> None:
    print(json.dumps({"path": str(p), "blocks": r.blocks, "state_root": r.state_root.hex(),
                      "bad_height": r.bad_height, "reason": r.reason, "table": r.table,
                      "replayed": r.replayed}), flush=True)


def _worker_main() -> None:
    """``verify_stores``' worker: one JSON report per store named in ``sys.argv``."""
    for chain in _chains([Path(a) for a in sys.argv[1:]]):
        _verify_chain(chain, _emit)


def _follow_main() -> None:
    """``StoreFollower``'s worker: follows the first store named in ``sys.argv`` until a
    line (or the end) arrives on stdin, then reports every store as ``_worker_main``."""
    base = _renice(FOLLOW_NICE, relative=True)

    def writing() -> bool:
        ready, _, _ = select.select([sys.stdin], [], [], FOLLOW_POLL_S)
        if ready and base is not None:
            _renice(base)  # the run is over: the rest is on its critical path
        return not ready

    _verify_chain([Path(a) for a in sys.argv[1:]], _emit, writing)


def _renice(value: int, relative: bool = False) -> int | None:
    """Set this process's niceness to ``value`` (``relative``: that much above the current
    one, at most 19); returns the one it had (None: unchanged — no ``os.setpriority``, or
    raising the priority back is not permitted to this user)."""
    try:
        was = os.getpriority(os.PRIO_PROCESS, 0)
        value = min(19, was + value) if relative else value
        if was != value:
            os.setpriority(os.PRIO_PROCESS, 0, value)
    except (AttributeError, OSError):
        return None
    return was


def _parse_reports(out: str) -> dict[str, VerifyReport]:
    reports = {}
    for line in out.splitlines():
        try:
            d = json.loads(line)
            reports[str(d["path"])] = VerifyReport(
                Path(d["path"]), int(d["blocks"]), bytes.fromhex(d["state_root"]),
                None if d["bad_height"] is None else int(d["bad_height"]), str(d["reason"]),
                str(d["table"]), bool(d.get("replayed", True)))
        except (ValueError, KeyError, TypeError):  # a garbled line: that store is replayed here
            continue
    return reports


def verify_dir(root: str | Path, workers: int = 2) -> list[VerifyReport]:
    """``verify_store`` of every store under ``root`` (sorted), ``workers`` processes at once."""
    return verify_stores(find_stores(root), workers)
