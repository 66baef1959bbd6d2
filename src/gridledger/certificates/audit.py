"""An auditor's proof that one certificate bundle exists on the ledger in a given state.

A ``BundleProof`` carries a certified block header (the header, its quorum certificate and
the validator keys it names), the genesis document, and a membership proof of the bundle's
state key against the header's state root — or an absence proof when no bundle starts
there (a certificate split, never issued, or invented). A bundle of an archived hour
(``ledger/modules/certificates/archive.py``) is proven in two levels: ``archived`` places
the record under its hour's archive root, and the membership proof is of that archive
entry (``cert/arch/<hour>``) against the header's state root. ``check_proof`` needs nothing
else: it checks the quorum certificate under the keys whose hash the header carries, the
chain id against the genesis, the (absence) proof against the state root, and that the
proven record says what an exported EnergyTag record claims.

Trust: the keys that certify the header must be the genesis validators, or follow from
them through ``handoffs`` — for every change of the validator set, the last header the old
set certified, with membership proofs of the new set (``reg/validators`` and each member's
key record) against its state root (the set a block's state holds certifies the next
blocks). Keys that no chain of handoffs ties to the genesis fail the check. The auditor's
one outside input is the genesis itself (``genesis_hash``: the community publishes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gridledger.certificates.energytag import STATUS, account_number, device_name, device_number
from gridledger.errors import GridLedgerError
from gridledger.ledger import codec
from gridledger.ledger.app import Application
from gridledger.ledger.block import Certificate, Header, verify_certificate
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.modules.certificates.archive import RecordProof
from gridledger.ledger.modules.certificates.keeper import archive_key, bundle_key
from gridledger.ledger.modules.certificates.types import Archive, Bundle
from gridledger.ledger.modules.certificates.views import parse_bundle_id
from gridledger.ledger.modules.registry.keeper import VALIDATORS, P, validator_set
from gridledger.ledger.modules.registry.types import Participant
from gridledger.ledger.state import AbsenceProof, MembershipProof, verify_absence, verify_membership
from gridledger.ledger.valset import keys_hash

FORMAT = "gridledger/certificate-proof/1"


@dataclass(frozen=True)
class Handoff:
    """A change of the validator set: ``header`` is the last block the old set certified
    (``certificate``); ``validators`` proves ``reg/validators`` and ``participants`` each new
    member's ``reg/p/<addr>`` record in that block's state, which certifies the blocks after."""

    header: bytes
    certificate: bytes
    validators: MembershipProof
    participants: tuple[MembershipProof, ...]

    def to_json(self) -> dict[str, Any]:
        return {"header": self.header.hex(), "certificate": self.certificate.hex(),
                "validators": self.validators.to_json(),
                "participants": [m.to_json() for m in self.participants]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Handoff:
        return cls(bytes.fromhex(d["header"]), bytes.fromhex(d["certificate"]),
                   MembershipProof.from_json(d["validators"]),
                   tuple(MembershipProof.from_json(m) for m in d["participants"]))


@dataclass(frozen=True)
class BundleProof:
    """Everything ``check_proof`` needs (JSON: ``to_json`` / ``from_json``)."""

    bundle_id: str
    genesis: bytes
    header: bytes
    certificate: bytes
    validator_keys: tuple[tuple[str, bytes], ...]
    membership: MembershipProof | None
    absence: AbsenceProof | None
    energytag: Mapping[str, Any] | None = None
    handoffs: tuple[Handoff, ...] = ()
    archived: RecordProof | None = None
    """Level one of an archived bundle's proof (``membership`` is then its archive entry's)."""

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "bundle_id": self.bundle_id, "genesis": self.genesis.hex(),
                "header": self.header.hex(), "certificate": self.certificate.hex(),
                "validator_keys": [[a, pk.hex()] for a, pk in self.validator_keys],
                "membership": self.membership.to_json() if self.membership else None,
                "absence": self.absence.to_json() if self.absence else None,
                "energytag": dict(self.energytag) if self.energytag is not None else None,
                "handoffs": [h.to_json() for h in self.handoffs],
                "archived": self.archived.to_json() if self.archived else None}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BundleProof:
        """Raises ``ValueError`` (or ``KeyError``) on a malformed document."""
        if not isinstance(d, Mapping):
            raise ValueError(f"not a {FORMAT} document (not a JSON object)")
        if d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        return cls(str(d["bundle_id"]), bytes.fromhex(d["genesis"]), bytes.fromhex(d["header"]),
                   bytes.fromhex(d["certificate"]),
                   tuple((str(a), bytes.fromhex(pk)) for a, pk in d["validator_keys"]),
                   MembershipProof.from_json(d["membership"]) if d.get("membership") else None,
                   AbsenceProof.from_json(d["absence"]) if d.get("absence") else None,
                   d.get("energytag"),
                   tuple(Handoff.from_json(h) for h in d.get("handoffs") or ()),
                   RecordProof.from_json(d["archived"]) if d.get("archived") else None)


def make_proof(bundle_id: str, genesis: Genesis, header: bytes, certificate: bytes,
               validator_keys: list[tuple[str, bytes]], state_proof: MembershipProof | AbsenceProof,
               energytag: Mapping[str, Any] | None = None,
               handoffs: tuple[Handoff, ...] = (),
               archived: RecordProof | None = None) -> BundleProof:
    """Assemble a proof from a store's certified tip (``header``, ``certificate``, the keys
    that certified it), the state's (absence) proof of the bundle's key — or, for a bundle
    of an archived hour, ``archived`` and the membership proof of its archive entry — and
    the validator set's ``handoffs`` since genesis (``handoff_at`` for each change, in
    height order)."""
    member = state_proof if isinstance(state_proof, MembershipProof) else None
    absent = state_proof if isinstance(state_proof, AbsenceProof) else None
    return BundleProof(bundle_id, genesis.encode(), header, certificate, tuple(validator_keys),
                       member, absent, energytag, handoffs, archived)


def handoff_at(app: Application, header: bytes, certificate: bytes) -> Handoff:
    """The handoff proven by ``app``'s committed state, which ``header`` (certified by
    ``certificate``) commits to: the validator set it holds certifies the next blocks."""
    addrs = validator_set(app.state)
    return Handoff(header, certificate, app.state.prove(VALIDATORS),
                   tuple(app.state.prove(P + a) for a in addrs))


def follow_handoffs(keys: list[tuple[str, bytes]], chain_id: str,
                    handoffs: tuple[Handoff, ...]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The validator keys after ``handoffs``, starting from ``keys`` (the genesis set), and
    what failed (empty: every handoff was certified by the set before it and proves the
    set after it)."""
    last = 0
    for n, h in enumerate(handoffs):
        where = f"handoff {n}"
        try:
            header, cert = Header.decode(h.header), Certificate.decode(h.certificate)
        except (GridLedgerError, ValueError) as exc:
            return keys, [f"{where}: undecodable ({exc})"]
        if header.chain_id != chain_id or header.height <= last:
            return keys, [f"{where}: height {header.height} of chain {header.chain_id!r} does "
                          "not follow"]
        last = header.height
        if header.validator_set_hash != keys_hash(keys):
            return keys, [f"{where}: height {header.height} is not certified by the set before"]
        try:
            verify_certificate(header, cert, keys)
        except GridLedgerError as exc:
            return keys, [f"{where}: height {header.height} quorum certificate: {exc}"]
        root = header.state_root
        if h.validators.key != VALIDATORS or not verify_membership(root, h.validators):
            return keys, [f"{where}: the validator set is not proven at height {header.height}"]
        try:
            addrs = codec.decode(h.validators.value)
            if not isinstance(addrs, list) or len(addrs) != len(h.participants):
                raise ValueError("one key record per validator")
            new = []
            for a, m in zip(addrs, h.participants, strict=True):
                if m.key != P + bytes(a) or not verify_membership(root, m):
                    raise ValueError(f"validator {bytes(a).hex()[:16]}…'s key is not proven")
                part = Participant.from_obj(codec.decode(m.value))
                new.append((part.alg, part.pk))
        except (GridLedgerError, ValueError, KeyError, TypeError) as exc:
            return keys, [f"{where}: height {header.height}: {exc}"]
        keys = new
    return keys, []


@dataclass
class AuditResult:
    """What ``check_proof`` established; ``ok`` only if every check passed."""

    ok: bool = False
    exists: bool = False
    height: int = 0
    state_root: bytes = b""
    chain_id: str = ""
    genesis_hash: bytes = b""
    genesis_validator_set: bool = False
    handoffs: int = 0
    bundle: dict[str, Any] | None = None
    archived_hour: int | None = None
    """The hour whose archive holds the bundle (None: proven in live state)."""
    failures: list[str] = field(default_factory=list)


def genesis_validator_keys(genesis: Genesis) -> list[tuple[str, bytes]]:
    """(alg, pk) of the genesis participants with the validator role, in genesis order."""
    return [(str(p["alg"]), bytes(p["pk"])) for p in genesis.doc.get("participants", [])
            if "validator" in p.get("roles", [])]


def check_proof(proof: BundleProof, genesis_hash: bytes | None = None) -> AuditResult:
    """Check ``proof`` with nothing but its own contents; never raises for bad content.

    ``genesis_hash``: the auditor's trust anchor (the community publishes its genesis
    hash); when given, a proof from any other chain fails — a self-consistent proof of a
    chain someone made up is otherwise only as good as its genesis."""
    try:
        return _check_proof(proof, genesis_hash)
    except (GridLedgerError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # well-formed CBOR of the wrong shape (a genesis that is a number, a participant
        # that is a string) fails where it is used: a failed check, not a crash
        r = AuditResult()
        r.failures.append(f"malformed proof: {type(exc).__name__}: {exc}")
        return r


def _check_proof(proof: BundleProof, genesis_hash: bytes | None) -> AuditResult:
    r = AuditResult()
    try:
        genesis = Genesis.decode(proof.genesis)
        header = Header.decode(proof.header)
        cert = Certificate.decode(proof.certificate)
        slot, start = parse_bundle_id(proof.bundle_id)
    except (GridLedgerError, ValueError, KeyError, TypeError) as exc:
        r.failures.append(f"undecodable proof: {exc}")
        return r
    r.height, r.state_root, r.chain_id = header.height, header.state_root, header.chain_id
    r.genesis_hash = genesis.hash
    keys = list(proof.validator_keys)
    if genesis_hash is not None and genesis.hash != genesis_hash:
        r.failures.append(f"genesis {genesis.hash.hex()[:16]}… is not the expected "
                          f"{genesis_hash.hex()[:16]}…")
    if header.chain_id != genesis.chain_id:
        r.failures.append(f"header chain {header.chain_id!r} is not the genesis chain "
                          f"{genesis.chain_id!r}")
    if keys_hash(keys) != header.validator_set_hash:
        r.failures.append("the validator keys are not the set the header names")
    try:
        verify_certificate(header, cert, keys)
    except GridLedgerError as exc:
        r.failures.append(f"quorum certificate: {exc}")
    anchored, problems = follow_handoffs(genesis_validator_keys(genesis), genesis.chain_id,
                                         proof.handoffs)
    r.failures += problems
    r.handoffs = len(proof.handoffs)
    r.genesis_validator_set = not proof.handoffs and keys == anchored
    if not problems and keys != anchored:
        r.failures.append("the validator keys are neither the genesis validators nor the set "
                          "the handoffs lead to")
    key = bundle_key(slot, start)
    if proof.membership is not None:
        m = proof.membership
        a = proof.archived
        value: bytes | None = None
        if a is not None:
            if a.key != key:
                r.failures.append("the archived record is for another key")
            elif m.key != archive_key(a.hour):
                r.failures.append("the membership proof is not of the record's archive entry")
            elif not verify_membership(header.state_root, m):
                r.failures.append("the archive entry's proof does not match the header's "
                                  "state root")
            elif not a.verify(Archive.decode(m.value).root):
                r.failures.append("the record is not in its hour's archive")
            else:
                value, r.archived_hour = a.value, a.hour
        elif m.key != key:
            r.failures.append("the membership proof is for another key")
        elif not verify_membership(header.state_root, m):
            r.failures.append("the membership proof does not match the header's state root")
        else:
            value = m.value
        if value is not None:
            r.exists = True
            b = Bundle.decode(value)
            r.bundle = {"slot": slot, "start": start, "energy_wh": b.size(start), **b.to_obj()}
            if proof.energytag is not None:
                r.failures += _compare(r.bundle, proof.energytag)
    elif proof.absence is not None:
        if proof.absence.key != key or not verify_absence(header.state_root, proof.absence):
            r.failures.append("the absence proof does not hold against the header's state root")
        elif proof.energytag is not None:
            r.failures.append(f"the exported record claims bundle {proof.bundle_id}, which the "
                              "certified state does not hold")
    else:
        r.failures.append("no membership or absence proof")
    r.ok = not r.failures
    return r


def _compare(bundle: Mapping[str, Any], rec: Mapping[str, Any]) -> list[str]:
    """Where an exported EnergyTag record disagrees with the proven bundle."""
    want = {
        "certificate_bundle_status": STATUS.get(str(bundle["status"])),
        "account_id": account_number(bytes(bundle["owner"])),
        "certificate_bundle_id_range_start": bundle["start"],
        "certificate_bundle_id_range_end": bundle["end"],
        "bundle_quantity": bundle["energy_wh"],
        "energy_source": bundle["energy_source"],
        "device_id": device_number(device_name(bundle)),
        "is_storage": bundle["technology"] == "battery_storage",
    }
    return [f"exported {k} = {rec.get(k)!r}, certified state says {v!r}"
            for k, v in want.items() if rec.get(k) != v]
