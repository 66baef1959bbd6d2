"""``gridledger certificates`` — export granular certificates, prove one, verify a proof.

``export`` and ``prove`` read a validator's store (a demo ``--out`` folder, a node data
folder or one ``.sqlite`` file): the state at its certified tip, rebuilt from the latest
snapshot and the blocks after it. ``verify`` needs nothing but the proof file: it is the
auditor's side.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from gridledger.cli.args import fail, hex32
from gridledger.errors import GridLedgerError
from gridledger.files import read_bounded, replacing

if TYPE_CHECKING:
    from gridledger.certificates import BundleProof, Handoff
    from gridledger.ledger.app import Application

# The ledger and certificate modules are imported by the commands that use them, not here:
# this module is imported by every ``gridledger`` command (even ``--help``), before the
# entry point can turn a Ctrl-C into exit 130, and those imports took ~1.3 s of its start.

# a proof is a quorum certificate, one state path and one record: tens of KB (an ample bound)
PROOF_MAX_BYTES = 8 * 1024 * 1024

certificates_app = typer.Typer(
    help="Granular certificates (EnergyTag): export, prove one, verify a proof.",
    no_args_is_help=True)
console = Console(soft_wrap=True)  # a line naming a file stays whole when piped
FORMATS = ("energytag", "csv")
STORE_HELP = "A demo --out folder, a node data folder or one .sqlite store."


_fail = fail


class Tip:
    """A store's certified tip: the application at it, its header and certificate."""

    def __init__(self, path: Path) -> None:
        from gridledger.certificates import genesis_validator_keys
        from gridledger.ledger.block import Header
        from gridledger.ledger.valset import keys_hash
        from gridledger.node.store import BlockStore
        from gridledger.node.validator import restore_app

        self.path = path
        store = BlockStore(path, readonly=True)
        try:
            genesis = store.genesis()
            if genesis is None:
                raise GridLedgerError(f"{path}: no genesis document in the store")
            tip = store.tip()
            blk = store.block(tip)
            if blk is None:
                raise GridLedgerError(f"{path}: the store holds no certified block")
            # at ``tip``: a live node's store grows while it is read
            self.app, _ = restore_app(store, genesis, upto=tip)
            self.genesis = genesis
            self.header_raw, self.cert_raw = blk.header, blk.cert
            self.header = Header.decode(blk.header)
        except BaseException:
            store.close()
            raise
        # kept open: archived certificate records are read from its blocks (app.history)
        self.store = store
        if self.app.state.root() != self.header.state_root:
            store.close()
            raise GridLedgerError(f"{path}: replayed state does not match the tip's header")
        self.genesis_keys_hash = keys_hash(genesis_validator_keys(genesis))

    def close(self) -> None:
        """Close the store (a read-only store's -wal/-shm side files go with it)."""
        self.store.close()

    def query(self, path: str) -> Any:
        return self.app.query(path)

    def handoffs(self) -> tuple[Handoff, ...]:
        """One ``Handoff`` per change of the validator set up to the tip: the last block
        each old set certified, with the new set proven in its state (rebuilt from the
        latest snapshot at or below it, then replayed)."""
        from gridledger.certificates import handoff_at
        from gridledger.ledger.block import Header
        from gridledger.node.store import BlockStore
        from gridledger.node.validator import restore_app

        store = BlockStore(self.path, readonly=True)
        try:
            changes, prev = [], self.genesis_keys_hash
            for blk in store.blocks(1):
                h = Header.decode(blk.header)
                if h.validator_set_hash != prev:
                    changes.append(h.height - 1)
                prev = h.validator_set_hash
                if h.height >= self.header.height:
                    break
            out = []
            for height in changes:
                last = store.block(height)
                if height < 1 or last is None:
                    raise GridLedgerError(f"{self.path}: the validator set changed at height "
                                          f"{height + 1} but block {height} is not stored")
                app, _ = restore_app(store, self.genesis, upto=height)
                out.append(handoff_at(app, last.header, last.cert))
            return tuple(out)
        finally:
            store.close()


def _store(directory: Path) -> Path:
    from gridledger.node.verify import find_stores

    if not directory.exists():
        _fail(f"{directory} does not exist")
    stores = find_stores(directory)
    if not stores:
        _fail(f"no ledger store (*.sqlite) under {directory}")
    return stores[0]


def _out_file(path: Path | None) -> None:
    """``--out`` names a file to write: not an existing folder, in a folder (or a place for
    one), checked before the store is read."""
    if path is None:
        return
    if path.is_dir():
        _fail(f"--out {path} is a folder; name the file to write")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        _fail(f"--out {path}: {parent} is not a folder")


def _write(target: Path, write: Any) -> None:
    """Write ``target`` (``write(path)``) through a temporary file: a failure (exit 1) leaves
    neither a partial file nor a changed old one."""
    try:
        with replacing(target) as tmp:
            write(tmp)
    except OSError as exc:
        _fail(f"cannot write {target}: {exc}", 1)


def _tip(directory: Path) -> Tip:
    """The certified tip of the first store under ``directory``; exit 2 if that file is not
    a readable ledger store (usage), 1 if the store is one but does not hold together."""
    path = _store(directory)
    try:
        return Tip(path)
    except sqlite3.DatabaseError as exc:
        _fail(f"{path} is not a readable ledger store: {exc}")
    except GridLedgerError as exc:
        msg = str(exc)
        _fail(msg if str(path) in msg else f"{path}: {msg}", 1)


def records(app: Application) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(EnergyTag records, ledger index) of every bundle in ``app``'s state, in id order.

    Every record is checked against ``EnergyTagBundle`` before it is written, and the
    integer account and device numbers must be unique (``ExportError`` otherwise)."""
    from pydantic import ValidationError

    from gridledger.certificates import EnergyTagBundle, ExportError, device_name, to_energytag

    cfg = app.query("certificates/config")
    devices = {d["cp"]: d for d in app.query("certificates/devices")}
    # a pseudonym's stand-in cp has no device of its own: the DSO's class for pseudonyms
    pclass = app.query("certificates/pseudonym_class")
    zones: dict[tuple[int, str], str] = {}
    out, index = [], []
    numbers: dict[tuple[str, int], str] = {}
    for b in sorted(app.query("certificates/bundles"), key=lambda b: b["start"]):
        slot = int(b["slot"])
        if (slot, b["cp"]) not in zones:
            for i in app.query(f"certificates/issuances/{slot}"):
                zones[(slot, i["cp"])] = i["zone"]
        rec = to_energytag(b, devices.get(b["cp"]) or pclass, cfg, zones.get((slot, b["cp"])))
        owner, device = bytes(b["owner"]).hex(), device_name(b)
        for kind, number, name in (("account_id", rec["account_id"], owner),
                                   ("device_id", rec["device_id"], device)):
            if numbers.setdefault((kind, number), name) != name:
                raise ExportError(f"{kind} {number} would name both {numbers[(kind, number)]} "
                                  f"and {name}")
        try:
            EnergyTagBundle.model_validate(rec)
        except ValidationError as exc:
            raise ExportError(f"bundle {b['id']} does not fit the EnergyTag model: {exc}") from None
        out.append(rec)
        index.append({"certificate_bundle_id_range_start": b["start"], "bundle_id": b["id"],
                      "state_key": b["key"], "account": owner, "device": device,
                      "archived_hour": b.get("archived")})
    return out, index


@certificates_app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help=STORE_HELP)],
    fmt: Annotated[str, typer.Option("--format", help="energytag (JSON) or csv.")] = "energytag",
    out: Annotated[Path | None, typer.Option(help="Output file (default DIR/certificates.json|csv).")] = None,
) -> None:
    """Write every certificate bundle at the store's certified tip in the EnergyTag model."""
    from gridledger.certificates import ENERGYTAG_FIELDS, ENERGYTAG_SOURCE, ExportError, csv_rows

    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    _out_file(out)
    tip = _tip(directory)
    try:
        recs, index = records(tip.app)
    except ExportError as exc:
        _fail(str(exc), 1)
    finally:
        tip.close()
    base = directory if directory.is_dir() else directory.parent
    target = out or base / ("certificates.json" if fmt == "energytag" else "certificates.csv")
    if fmt == "energytag":
        doc = {"data_model": ENERGYTAG_SOURCE, "fields": list(ENERGYTAG_FIELDS),
               "chain_id": tip.header.chain_id, "height": tip.header.height,
               "state_root": tip.header.state_root.hex(), "header_hash": tip.header.hash.hex(),
               "granular_certificate_bundles": recs, "ledger_index": index}
        _write(target, lambda p: p.write_text(json.dumps(doc, indent=1) + "\n"))
    else:
        header, rows = csv_rows(recs, index)

        def write_csv(p: Path) -> None:
            with p.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)

        _write(target, write_csv)
    total = sum(r["bundle_quantity"] for r in recs)
    console.print(f"wrote {target}: {len(recs)} bundles, {total} Wh, certified height "
                  f"{tip.header.height} (state root {tip.header.state_root.hex()[:16]}…)")


@certificates_app.command("prove")
def prove(
    directory: Annotated[Path, typer.Argument(help=STORE_HELP)],
    bundle_id: Annotated[str, typer.Argument(help="<slot>:<start> (see ledger_index of an export).")],
    out: Annotated[Path | None, typer.Option(help="Proof file (default DIR/proof-SLOT-START.json).")] = None,
) -> None:
    """Write a proof of one bundle (or of its absence) against the certified tip."""
    from gridledger.ledger.modules.certificates.views import parse_bundle_id

    try:
        slot, start = parse_bundle_id(bundle_id)
    except ValueError as exc:
        _fail(str(exc))
    _out_file(out)
    tip = _tip(directory)
    try:
        proof, what = _prove(tip, bundle_id, slot, start)
    finally:
        tip.close()
    base = directory if directory.is_dir() else directory.parent
    target = out or base / f"proof-{slot}-{start}.json"
    _write(target, lambda p: p.write_text(json.dumps(proof.to_json(), indent=1) + "\n"))
    console.print(f"wrote {target}: {what} proof of bundle {bundle_id} at certified height "
                  f"{tip.header.height}")


def _prove(tip: Tip, bundle_id: str, slot: int, start: int) -> tuple[BundleProof, str]:
    """The proof of bundle ``slot:start`` at ``tip`` and what kind it is."""
    from gridledger.certificates import ExportError, make_proof
    from gridledger.ledger.modules.certificates.archive import RecordProof
    from gridledger.ledger.modules.certificates.keeper import bundle_key
    from gridledger.ledger.modules.certificates.types import hour_of
    from gridledger.ledger.state import AbsenceProof, MembershipProof
    from gridledger.ledger.valset import keys_hash

    keys = tip.app.validator_keys()
    if keys_hash(keys) != tip.header.validator_set_hash:
        _fail("the validator set changed in the tip block; prove again after the next block", 1)
    key = bundle_key(slot, start).hex()
    state_proof: MembershipProof | AbsenceProof
    record = None
    archived = None
    if tip.app.state.get(bytes.fromhex(key)) is None:
        got = tip.query(f"certificates/record_proof/{key}")
        if got is not None:      # an archived hour's bundle: record -> archive -> state root
            archived = RecordProof.from_json(got["record"])
            state_proof = tip.query(f"proof/{got['entry_key']}")
    if tip.app.state.get(bytes.fromhex(key)) is not None or archived is not None:
        if archived is None:
            state_proof = tip.query(f"proof/{key}")
        try:
            recs, index = records(tip.app)
        except ExportError as exc:
            _fail(str(exc), 1)
        record = next(r for r, ix in zip(recs, index, strict=True) if ix["bundle_id"] == bundle_id)
    else:
        hour = hour_of(slot, int(tip.query("certificates/config")["slot_seconds"]))
        if any(a["hour"] == hour for a in tip.query("certificates/archives")):
            _fail(f"bundle {bundle_id} is not in hour {hour}'s archive; an absence proof inside "
                  "an archive is not implemented", 1)
        state_proof = tip.query(f"absence/{key}")
    try:
        handoffs = tip.handoffs()
    except GridLedgerError as exc:
        _fail(str(exc), 1)
    proof = make_proof(bundle_id, tip.genesis, tip.header_raw, tip.cert_raw, keys, state_proof,
                       record, handoffs, archived)
    what = ("two-level (archive) membership" if archived is not None
            else "membership" if record is not None else "absence")
    return proof, what


@certificates_app.command("verify")
def verify(
    proof_file: Annotated[Path, typer.Argument(help="A proof written by 'gridledger certificates prove'.")],
    genesis_hash: Annotated[str | None, typer.Option(
        "--genesis-hash", help="The chain's published genesis hash (hex): a proof from any "
                               "other chain fails.")] = None,
) -> None:
    """Check a certificate proof with nothing else: quorum certificate, state proof, record."""
    from gridledger.certificates import BundleProof, check_proof

    anchor = None if genesis_hash is None else hex32("--genesis-hash", genesis_hash, "hash")
    try:
        proof = BundleProof.from_json(json.loads(read_bounded(proof_file, PROOF_MAX_BYTES,
                                                               "certificate proof")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        _fail(f"{proof_file}: not a certificate proof ({type(exc).__name__}: {exc})")
    r = check_proof(proof, anchor)
    if r.genesis_hash:  # decoded: what it is a proof against (nothing to say otherwise)
        console.print(f"chain {r.chain_id}, genesis {r.genesis_hash.hex()}, height {r.height}, "
                      f"state root {r.state_root.hex()[:16]}…")
        if anchor is None:
            console.print("genesis not pinned: compare it with the community's published "
                          "genesis hash (or pass --genesis-hash)")
        console.print("validator set: " + (
            "the genesis set" if r.genesis_validator_set else
            f"followed from the genesis set through {r.handoffs} certified change(s)"))
    if r.ok and r.exists and r.bundle is not None:
        b = r.bundle
        where = ("" if r.archived_hour is None
                 else f" (archived with hour {r.archived_hour}: record -> archive root -> state root)")
        console.print(f"[green]ok[/] bundle {proof.bundle_id}: {b['energy_wh']} Wh "
                      f"{b['technology']} from {b['cp']}, {b['status']}, held by "
                      f"{bytes(b['owner']).hex()[:16]}…{where}")
    elif r.ok:
        console.print(f"[green]ok[/] no bundle {proof.bundle_id} exists in the certified state")
    else:
        for f in r.failures:
            console.print(f"[red]BAD[/] {f}")
        raise typer.Exit(1)
