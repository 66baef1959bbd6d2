"""Audit bundles (docs/threat-model.md row 9): one file a regulator checks with the CLI alone.

``gridledger audit export DIR OUT`` writes, from one validator's store, every certified
header with its quorum certificate, every block's transactions and receipts, the genesis
document (the validator set, parameters and module versions the chain started with) and
membership proofs of the audited state (by default every ``bank/`` key: supply, balances,
locks) against the tip's certified state root. ``gridledger audit verify OUT`` needs nothing
else: the first validator set comes from the genesis inside, later sets from re-execution.

File layout (all integers big-endian)::

    "GLAUDIT\\x01"                                   8 bytes
    record*        kind u8 | height u32 | length u32 | payload
    integrity      8-byte SHA-256 prefix of each 256-byte chunk of everything above
    trailer        chunk count u32 | SHA-256 of the integrity table | "GLAUDEND"

Records, in order: ``manifest`` (CBOR {format, chain_id, tip, genesis_hash, tip_hash,
prefixes, proofs}), ``genesis``, then per height 1..tip ``header``, ``certificate``,
``transactions``, ``receipts`` (the bytes the store holds), then one ``proof`` per key (CBOR
{key, value, bucket, index, bucket_size, bucket_leaves, top_path}).

What is trusted comes from the ledger alone: the genesis hash is block 1's ``prev_hash``,
each header is certified by a quorum of the set of its height, ``tx_root`` and
``receipts_root`` bind the blocks' contents, re-execution must give every header's state root
and byte-equal receipts, and each proof must verify against the tip's certified state root
(and, with re-execution, the proofs must cover every key under their prefixes). The integrity
table authenticates nothing — anyone rewriting the bundle can recompute it — it only
*locates* accidental or careless damage: one altered byte is named by its offset, record and
original value. A forger who recomputes the table is still stopped by the ledger checks,
which name the record (kind and height) and its byte range.

Sources: the bundle is this project's format; SHA-256 per FIPS 180-4 (``hashlib``).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from gridledger.crypto.merkle import merkle_root
from gridledger.errors import GridLedgerError
from gridledger.files import replacing
from gridledger.ledger import codec
from gridledger.ledger.app import Application
from gridledger.ledger.block import Certificate, Header
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.state import MembershipProof, verify_membership
from gridledger.ledger.valset import keys_hash
from gridledger.node.store import BlockStore
from gridledger.node.validator import restore_app
from gridledger.node.verify import (
    BlockFault,
    check_certified,
    decode_block,
    replay_block,
)

MAGIC = b"GLAUDIT\x01"
END = b"GLAUDEND"
FORMAT = 2  # 2: flat state buckets (proofs carry bucket_leaves; issue 17, eleventh session)
CHUNK_BYTES = 256
DIGEST_BYTES = 8
FRAME = struct.Struct(">BII")      # kind, height, payload length
TRAILER = struct.Struct(">I32s8s")  # integrity chunk count, SHA-256 of the table, END
DEFAULT_PREFIXES: tuple[bytes, ...] = (b"bank/",)
"""State the bundle proves by default: the money (supply, every balance and lock)."""


class Kind(IntEnum):
    MANIFEST = 0
    GENESIS = 1
    HEADER = 2
    CERTIFICATE = 3
    TRANSACTIONS = 4
    RECEIPTS = 5
    PROOF = 6


BLOCK_PARTS = (Kind.HEADER, Kind.CERTIFICATE, Kind.TRANSACTIONS, Kind.RECEIPTS)
_PART_KIND = {"header": Kind.HEADER, "certificate": Kind.CERTIFICATE,
              "transactions": Kind.TRANSACTIONS, "receipts": Kind.RECEIPTS}


@dataclass(frozen=True)
class Record:
    """One framed record; ``offset`` is where its frame starts in the file."""

    kind: Kind
    height: int  # block height, or the proof's number for proofs, 0 otherwise
    payload: bytes
    offset: int

    @property
    def name(self) -> str:
        if self.kind in BLOCK_PARTS:
            return f"block {self.height} {self.kind.name.lower()}"
        if self.kind is Kind.PROOF:
            return f"proof {self.height}"
        return self.kind.name.lower()

    @property
    def start(self) -> int:
        """Offset of the payload's first byte."""
        return self.offset + FRAME.size

    @property
    def end(self) -> int:
        return self.start + len(self.payload)

    def where(self) -> str:
        return f"{self.name} (bytes {self.start}..{self.end - 1})"


@dataclass(frozen=True)
class Finding:
    """A reason the bundle fails: what, and where (record, exact byte when located)."""

    what: str
    record: str = ""
    offset: int | None = None

    def __str__(self) -> str:
        at = f"byte {self.offset}" if self.offset is not None else ""
        place = ", ".join(x for x in (at, self.record) if x)
        return f"{place}: {self.what}" if place else self.what


@dataclass(frozen=True)
class AuditReport:
    path: Path
    size_bytes: int
    chain_id: str = ""
    blocks: int = 0
    genesis_hash: bytes = b""
    tip_hash: bytes = b""
    state_root: bytes = b""
    proofs: int = 0
    replayed: bool = False
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass
class ExportReport:
    path: Path
    source: Path
    blocks: int
    proofs: int
    size_bytes: int
    tip_hash: bytes
    state_root: bytes
    prefixes: tuple[bytes, ...] = field(default_factory=tuple)


# -- export --------------------------------------------------------------------------------
def _frame(kind: Kind, height: int, payload: bytes) -> bytes:
    return FRAME.pack(kind, height, len(payload)) + payload


def _integrity(body: bytes) -> bytes:
    view, sha = memoryview(body), hashlib.sha256
    return b"".join([sha(view[i:i + CHUNK_BYTES]).digest()[:DIGEST_BYTES]
                     for i in range(0, len(body), CHUNK_BYTES)])


def _proof_obj(p: MembershipProof) -> dict[str, Any]:
    return {"key": p.key, "value": p.value, "bucket": p.bucket, "index": p.index,
            "bucket_size": p.bucket_size, "bucket_leaves": list(p.bucket_leaves),
            "top_path": list(p.top_path)}


def export_bundle(store_path: str | Path, out: str | Path,
                  prefixes: Sequence[bytes] = DEFAULT_PREFIXES,
                  check: bool = False) -> ExportReport:
    """Write the audit bundle of the store at ``store_path`` (opened read-only) to ``out``.

    The tip state is rebuilt from the store's latest snapshot and later blocks, each checked
    against its header (``StateRootMismatch`` otherwise), so the proofs are of certified
    state. Blocks before that snapshot are copied as stored: ``check`` verifies the written
    bundle without re-execution (hash links, roots, certificates, proofs; about a third of
    the export's time) before it replaces ``out``, so a store damaged there is refused
    instead of exported as a bundle the regulator's ``audit verify`` fails (the CLI checks;
    the demo verifies its bundle itself). Raises ``GridLedgerError`` for a store without
    genesis or blocks, or one that fails ``check`` (nothing is written then).
    """
    source, out = Path(store_path), Path(out)
    store = BlockStore(source, readonly=True)
    try:
        genesis = store.genesis()
        tip = store.tip()
        if genesis is None or tip == 0:
            raise GridLedgerError(f"{source}: no genesis or no block to export")
        # a live node's store grows while we read it: everything is taken at ``tip``
        app, _ = restore_app(store, genesis, upto=tip)
        keys = sorted({k for p in prefixes for k in app.state.keys_with_prefix(p)})
        proofs = [codec.encode(_proof_obj(app.state.prove(k))) for k in keys]
        last = store.block(tip)
        if last is None:
            raise GridLedgerError(f"{source}: block {tip} vanished while exporting")
        tip_header = Header.decode(last.header)
        manifest = {"format": FORMAT, "chain_id": genesis.chain_id, "tip": tip,
                    "genesis_hash": genesis.hash, "tip_hash": tip_header.hash,
                    "prefixes": list(prefixes), "proofs": len(proofs)}
        with replacing(out) as tmp:  # a full disk, Ctrl-C: no half-written .part left behind
            size = _write_bundle(tmp, store, manifest, genesis, proofs)
            if check:
                found = verify_bundle(tmp, replay=False)
                if not found.ok:
                    raise GridLedgerError(
                        f"{source}: not exported: its blocks do not make a valid bundle: "
                        f"{found.findings[0]} (gridledger verify-chain {source} names the damage)")
        return ExportReport(out, source, tip, len(proofs), size, tip_header.hash,
                            tip_header.state_root, tuple(prefixes))
    finally:
        store.close()


def _write_bundle(tmp: Path, store: BlockStore, manifest: dict[str, Any], genesis: Genesis,
                  proofs: list[bytes]) -> int:
    """Write the bundle's bytes to ``tmp``; returns its size."""
    sha = hashlib.sha256()
    table = bytearray()
    pending = b""  # bytes not yet a whole chunk of the integrity table
    size = 0
    with open(tmp, "wb") as f:
        def put(data: bytes) -> None:
            nonlocal pending, size
            f.write(data)
            size += len(data)
            pending += data
            whole = len(pending) - len(pending) % CHUNK_BYTES
            table.extend(_integrity(pending[:whole]))
            pending = pending[whole:]

        put(MAGIC)
        put(_frame(Kind.MANIFEST, 0, codec.encode(manifest)))
        put(_frame(Kind.GENESIS, 0, genesis.encode()))
        for blk in store.blocks(1):
            if blk.height > manifest["tip"]:
                break
            put(_frame(Kind.HEADER, blk.height, blk.header)
                + _frame(Kind.CERTIFICATE, blk.height, blk.cert)
                + _frame(Kind.TRANSACTIONS, blk.height, blk.txs)
                + _frame(Kind.RECEIPTS, blk.height, blk.receipts))
        for i, p in enumerate(proofs):
            put(_frame(Kind.PROOF, i, p))
        table.extend(_integrity(pending))
        sha.update(table)
        f.write(bytes(table) + TRAILER.pack(len(table) // DIGEST_BYTES, sha.digest(), END))
        size += len(table) + TRAILER.size
    return size


# -- integrity: locating damage --------------------------------------------------------------
def _body_length(size: int) -> int:
    """Length of the part the integrity table covers, from the file size alone: with n
    chunks, size = body + 8 n + trailer and n = ceil(body / 256)."""
    rest = size - TRAILER.size
    n = -(-rest // (CHUNK_BYTES + DIGEST_BYTES))
    return rest - DIGEST_BYTES * n


def _diff(have: bytes, want: bytes, base: int) -> list[int]:
    return [base + i for i, (a, b) in enumerate(zip(have, want, strict=True)) if a != b]


def _repair(chunk: bytes, digest: bytes) -> tuple[int, int] | None:
    """(position, original byte) of the single byte whose change gives ``digest``."""
    buf = bytearray(chunk)
    for i, now in enumerate(chunk):
        for b in range(256):
            if b == now:
                continue
            buf[i] = b
            if hashlib.sha256(buf).digest()[:DIGEST_BYTES] == digest:
                return i, b
        buf[i] = now
    return None


def locate(raw: bytes) -> list[tuple[int, str]]:
    """Damaged bytes of a bundle as (offset, what), found with the integrity table."""
    body_len = _body_length(len(raw))
    if body_len < len(MAGIC):
        return [(0, f"file of {len(raw)} bytes is too short to be an audit bundle")]
    n = -(-body_len // CHUNK_BYTES)
    tail = len(raw) - TRAILER.size
    table = raw[body_len:tail]
    count, table_hash, end = TRAILER.unpack(raw[tail:])
    out: list[tuple[int, str]] = []
    out += [(o, "trailer end marker altered") for o in _diff(end, END, tail + 36)]
    out += [(o, f"trailer chunk count altered (the file size gives {n})")
            for o in _diff(count.to_bytes(4, "big"), n.to_bytes(4, "big"), tail)]
    table_ok = hashlib.sha256(table).digest() == table_hash

    def chunk_of(i: int) -> bytes:
        return raw[i * CHUNK_BYTES:min((i + 1) * CHUNK_BYTES, body_len)]

    # the body's table as the exporter computes it, compared whole: one pass over memory
    # views (no copy of each chunk), entry by entry only where the tables differ
    with memoryview(raw) as whole:   # released before the caller closes a mapped file
        got = _integrity(whole[:body_len])  # type: ignore[arg-type]
    bad = [] if got == table else [
        i for i in range(n) if got[i * DIGEST_BYTES:(i + 1) * DIGEST_BYTES]
        != table[i * DIGEST_BYTES:(i + 1) * DIGEST_BYTES]]
    if not table_ok and not bad:
        out += [(o, "trailer table hash altered")
                for o in _diff(table_hash, hashlib.sha256(table).digest(), tail + 4)]
    for i in bad:
        chunk = chunk_of(i)
        entry = table[i * DIGEST_BYTES:(i + 1) * DIGEST_BYTES]
        if not table_ok:  # the table changed: this entry is what was altered
            want = hashlib.sha256(chunk).digest()[:DIGEST_BYTES]
            out += [(o, f"integrity table entry {i} altered")
                    for o in _diff(entry, want, body_len + i * DIGEST_BYTES)]
            continue
        fix = _repair(chunk, entry)
        if fix is None:
            out.append((i * CHUNK_BYTES, f"bytes {i * CHUNK_BYTES}..{i * CHUNK_BYTES + len(chunk) - 1}"
                                         " altered (more than one byte)"))
        else:
            pos, was = fix
            out.append((i * CHUNK_BYTES + pos,
                        f"altered: 0x{chunk[pos]:02x}, exported as 0x{was:02x}"))
    return out


# -- parsing and ledger checks ----------------------------------------------------------------
class _Fail(Exception):
    def __init__(self, what: str, record: Record | None = None, offset: int | None = None) -> None:
        super().__init__(what)
        self.what, self.record, self.offset = what, record, offset


def _records(raw: bytes, body_len: int) -> Iterator[Record]:
    if raw[:len(MAGIC)] != MAGIC:
        raise _Fail("not an audit bundle (no GLAUDIT\\x01 magic)", offset=0)
    pos = len(MAGIC)
    while pos < body_len:
        if pos + FRAME.size > body_len:
            raise _Fail("a record frame runs past the records", offset=pos)
        kind, height, length = FRAME.unpack_from(raw, pos)
        if kind not in Kind.__members__.values():
            raise _Fail(f"record frame with unknown kind {kind}", offset=pos)
        if pos + FRAME.size + length > body_len:
            raise _Fail(f"{Kind(kind).name.lower()} record of {length} bytes runs past the "
                        "records", offset=pos + 5)
        yield Record(Kind(kind), height, raw[pos + FRAME.size:pos + FRAME.size + length], pos)
        pos += FRAME.size + length


def iter_records(raw: bytes) -> Iterator[Record]:
    """The records of an undamaged bundle's bytes (or memory map), in file order, one at a
    time; ``ValueError`` naming the offset if the framing is broken."""
    try:
        yield from _records(raw, _body_length(len(raw)))
    except _Fail as fail:
        raise ValueError(f"byte {fail.offset}: {fail.what}") from fail


def records_of(raw: bytes) -> list[Record]:
    """The records of an undamaged bundle's bytes, in file order; ``ValueError`` naming the
    offset if the framing is broken."""
    try:
        return list(_records(raw, _body_length(len(raw))))
    except _Fail as fail:
        raise ValueError(f"byte {fail.offset}: {fail.what}") from fail


def _expect(records: Iterator[Record], kind: Kind, height: int, after: int) -> Record:
    rec = next(records, None)
    want = Record(kind, height, b"", after).name
    if rec is None:
        raise _Fail(f"bundle ends where {want} should be", offset=after)
    if rec.kind is not kind or rec.height != height:
        raise _Fail(f"{rec.name} where {want} should be", rec, rec.offset)
    return rec


def _decode(rec: Record) -> Any:
    try:
        return codec.decode(rec.payload)
    except GridLedgerError as exc:
        raise _Fail(f"undecodable: {exc}", rec) from exc


def _receipts_root(rec: Record) -> bytes:
    obj = _decode(rec)
    if not isinstance(obj, dict) or sorted(obj) != ["block", "txs"] or not isinstance(obj["txs"], list):
        raise _Fail("receipts are not {txs, block}", rec)
    return merkle_root([codec.encode(r) for r in obj["txs"]] + [codec.encode(obj["block"])])


@dataclass
class _Block:
    """A block after pass 1: what pass 2 needs, its records by offset only (pass 2 reads
    them again), so a check holds one block's transactions at a time, not the chain's
    (issue 17: a year's bundle is gigabytes)."""

    header: Header
    cert: Certificate
    offsets: dict[Kind, int]


def record_at_offset(raw: bytes, offset: int, height: int) -> Record:
    """The record (of block ``height``) whose frame starts at ``offset`` of a bundle whose
    framing was checked."""
    kind, _h, length = FRAME.unpack_from(raw, offset)
    return Record(Kind(kind), height, raw[offset + FRAME.size:offset + FRAME.size + length], offset)


def _tx_list(rec: Record) -> list[bytes]:
    txs = _decode(rec)
    if not isinstance(txs, list) or not all(type(t) is bytes for t in txs):
        raise _Fail("transactions are not a list of byte strings", rec)
    return txs


def _check(raw: bytes, body_len: int, replay: bool) -> dict[str, Any]:
    """Every ledger check, first failure raised as ``_Fail``; returns the figures."""
    records = _records(raw, body_len)
    manifest_rec = _expect(records, Kind.MANIFEST, 0, len(MAGIC))
    manifest = _decode(manifest_rec)
    names = ["chain_id", "format", "genesis_hash", "prefixes", "proofs", "tip", "tip_hash"]
    if not isinstance(manifest, dict) or sorted(manifest) != names or manifest["format"] != FORMAT:
        raise _Fail(f"manifest is not {{{', '.join(names)}}} of format {FORMAT}", manifest_rec)
    tip, n_proofs = manifest["tip"], manifest["proofs"]
    if type(tip) is not int or type(n_proofs) is not int or tip < 1 or n_proofs < 0:
        raise _Fail("manifest tip/proofs are not counts", manifest_rec)
    genesis_rec = _expect(records, Kind.GENESIS, 0, manifest_rec.end)
    try:
        genesis = Genesis.decode(genesis_rec.payload)
        app = Application(genesis)
    except Exception as exc:  # any failure to build the chain's start is this record's
        raise _Fail(f"genesis does not build: {exc}", genesis_rec) from exc
    if manifest["chain_id"] != genesis.chain_id or manifest["genesis_hash"] != genesis.hash:
        raise _Fail("manifest names another chain or genesis", manifest_rec)

    # pass 1, no execution: decode, hash links, tx and receipts roots, certificates by the
    # genesis set (a block after a validator-set change is certified in pass 2)
    blocks: list[_Block] = []
    keys0 = app.validator_keys()
    prev, after = genesis.hash, genesis_rec.end
    for h in range(1, tip + 1):
        recs = {}
        for kind in BLOCK_PARTS:
            recs[kind] = _expect(records, kind, h, after)
            after = recs[kind].end
        try:
            txs_rec = recs[Kind.TRANSACTIONS]
            header, cert, txs = decode_block(h, recs[Kind.HEADER].payload,
                                             recs[Kind.CERTIFICATE].payload,
                                             partial(_tx_list, txs_rec))
            if header.validator_set_hash == keys_hash(keys0):
                check_certified(genesis.chain_id, prev, keys0, header, cert, txs)
            elif header.prev_hash != prev or header.chain_id != genesis.chain_id:
                raise BlockFault("header", "prev_hash does not link to the previous block")
            elif header.tx_root != merkle_root(txs):
                raise BlockFault("transactions", "tx_root does not match the transactions")
        except BlockFault as fault:
            raise _Fail(fault.what, recs[_PART_KIND.get(fault.part, Kind.HEADER)]) from fault
        if _receipts_root(recs[Kind.RECEIPTS]) != header.receipts_root:
            raise _Fail("receipts do not give the header's receipts_root", recs[Kind.RECEIPTS])
        blocks.append(_Block(header, cert, {k: r.offset for k, r in recs.items()}))
        prev = header.hash
    if manifest["tip_hash"] != prev:
        raise _Fail("manifest tip_hash is not the last header's hash", manifest_rec)
    tip_header = blocks[-1].header
    proofs: list[tuple[MembershipProof, Record]] = []
    for i in range(n_proofs):
        rec = _expect(records, Kind.PROOF, i, after)
        after = rec.end
        obj = _decode(rec)
        try:
            proof = MembershipProof(obj["key"], obj["value"], obj["bucket"], obj["index"],
                                    obj["bucket_size"], obj["bucket_leaves"], obj["top_path"])
            ok = verify_membership(tip_header.state_root, proof)
        except (TypeError, KeyError, ValueError) as exc:
            raise _Fail(f"proof is not a membership proof: {exc}", rec) from exc
        if not ok:
            raise _Fail(f"does not prove key {obj['key']!r} in the state root of block {tip}", rec)
        proofs.append((proof, rec))
    extra = next(records, None)
    if extra is not None:
        raise _Fail("record after the last proof", extra, extra.offset)

    # pass 2: re-execution from genesis (validator-set changes followed)
    if replay:
        for b in blocks:
            recs = {k: record_at_offset(raw, off, b.header.height) for k, off in b.offsets.items()}
            try:
                txs = _tx_list(recs[Kind.TRANSACTIONS])
                check_certified(genesis.chain_id, app.last_hash, app.validator_keys(),
                                b.header, b.cert, txs)
                replay_block(app, b.header, txs, recs[Kind.RECEIPTS].payload)
            except BlockFault as fault:
                raise _Fail(fault.what, recs[_PART_KIND.get(fault.part, Kind.HEADER)]) from fault
        prefixes = manifest["prefixes"]
        if not isinstance(prefixes, list) or not all(type(p) is bytes for p in prefixes):
            raise _Fail("manifest prefixes are not byte strings", manifest_rec)
        want = sorted({k for p in prefixes for k in app.state.keys_with_prefix(p)})
        got = [p.key for p, _ in proofs]
        if got != want:
            missing = sorted(set(want) - set(got))
            raise _Fail(f"proofs do not cover the state under {prefixes!r}: "
                        f"{len(missing)} keys missing, first {missing[:1]!r}", manifest_rec)
    return {"chain_id": genesis.chain_id, "blocks": tip, "genesis_hash": genesis.hash,
            "tip_hash": prev, "state_root": tip_header.state_root, "proofs": len(proofs)}


def _record_at(raw: bytes, body_len: int, offset: int) -> str:
    """Which part of the file ``offset`` is in (for a located byte)."""
    if offset >= body_len:
        return "integrity table" if offset < len(raw) - TRAILER.size else "trailer"
    if offset < len(MAGIC):
        return "magic"
    try:
        for rec in _records(raw, body_len):
            if rec.offset <= offset < rec.end:
                part = "frame" if offset < rec.start else "payload"
                return f"{rec.name} {part} (bytes {rec.offset}..{rec.end - 1})"
    except _Fail:
        pass
    return "record framing"


def verify_bundle(path: str | Path, replay: bool = True,
                  genesis_hash: bytes | None = None) -> AuditReport:
    """Check the bundle at ``path`` with no other input; never raises for its content.

    ``replay`` re-executes every block from the genesis inside (the full check; also follows
    validator-set changes). ``genesis_hash`` pins the chain: a bundle is only
    self-consistent, so one made up from scratch (its own genesis, its own validator keys)
    would pass without the community's published genesis hash. Findings name the altered
    byte when the integrity table locates it, and always the record (kind, height, byte
    range) a ledger check fails on.
    """
    path = Path(path)
    with open(path, "rb") as f:
        # mapped, not read: the pages are the file's (the OS drops them under pressure), so a
        # year's bundle does not need its size in anonymous memory (issue 17)
        raw = _map(f)
        try:
            return _verify(path, raw, replay, genesis_hash)
        finally:
            if isinstance(raw, mmap.mmap):
                raw.close()


def _map(f: BinaryIO) -> bytes:
    """The file's bytes, memory-mapped read-only (an empty file: ``b""``: mmap refuses it)."""
    if os.fstat(f.fileno()).st_size == 0:
        return b""
    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # type: ignore[return-value]


def looks_like_bundle(path: str | Path) -> bool:
    """Whether the file at ``path`` starts or ends as an audit bundle does (its magic, or its
    end marker with at most one byte altered): anything else is another kind of file, not a
    damaged bundle."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - len(END)))
        tail = f.read(len(END))
    return head == MAGIC or (len(tail) == len(END)
                             and sum(a != b for a, b in zip(tail, END, strict=True)) <= 1)


def _not_whole(raw: bytes) -> Finding | None:
    """One finding when the file is not a whole bundle — another file, a bundle cut short or
    with bytes after its end — instead of a finding per byte: the integrity table is found
    from the file size, so in such a file every entry would look altered. ``None`` when the
    file starts and ends as a bundle does (up to one altered byte in its end marker, which
    ``locate`` names)."""
    if len(raw) < len(MAGIC) + TRAILER.size:
        return None  # locate: too short
    end = bytes(raw[-len(END):])
    if sum(a != b for a, b in zip(end, END, strict=True)) <= 1:
        return None
    if raw[:len(MAGIC)] != MAGIC:
        return Finding(f"not an audit bundle: the file ({len(raw):,} bytes) neither starts "
                       "with GLAUDIT\\x01 nor ends with GLAUDEND", "", 0)
    at = raw.rfind(END)
    if at >= 0:
        return Finding(f"{len(raw) - at - len(END):,} bytes follow the bundle's end marker "
                       f"(bytes {at}..{at + len(END) - 1}): something was appended to it",
                       "trailer", at + len(END))
    last, pos = "the magic", len(MAGIC)
    while pos + FRAME.size <= len(raw):  # the whole records before the cut
        kind, height, length = FRAME.unpack_from(raw, pos)
        if kind not in Kind.__members__.values() or pos + FRAME.size + length > len(raw):
            break
        last = Record(Kind(kind), height, b"", pos).name
        pos += FRAME.size + length
    return Finding(f"truncated: the file ends at byte {len(raw):,} without the GLAUDEND "
                   f"end marker (cut short in copying?); the last whole record is {last}",
                   "", len(raw))


def _verify(path: Path, raw: bytes, replay: bool, genesis_hash: bytes | None) -> AuditReport:
    cut = _not_whole(raw)
    if cut is not None:
        return AuditReport(path, len(raw), findings=(cut,))
    findings: list[Finding] = []
    body_len = _body_length(len(raw))
    damaged = locate(raw)
    for off, what in damaged:
        findings.append(Finding(what, _record_at(raw, body_len, off), off))
    figures: dict[str, Any] = {}
    if body_len >= len(MAGIC):
        try:
            figures = _check(raw, body_len, replay)
        except _Fail as fail:
            rec = fail.record.where() if fail.record is not None else ""
            offset = fail.offset
            if fail.record is not None:  # a located byte inside the failing record wins
                offset = next((o for o, _ in damaged
                               if fail.record.offset <= o < fail.record.end), offset)
            findings.insert(0, Finding(fail.what, rec, offset))
    if genesis_hash is not None and figures and figures["genesis_hash"] != genesis_hash:
        findings.insert(0, Finding(f"the chain starts from genesis "
                                   f"{figures['genesis_hash'].hex()}, not the pinned "
                                   f"{genesis_hash.hex()}", "genesis"))
    return AuditReport(path, len(raw), figures.get("chain_id", ""), figures.get("blocks", 0),
                       figures.get("genesis_hash", b""), figures.get("tip_hash", b""),
                       figures.get("state_root", b""), figures.get("proofs", 0),
                       replay and bool(figures), tuple(findings))
