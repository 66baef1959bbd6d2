"""Block headers, validator votes and quorum certificates — the consensus data formats.

A header commits to its parent, its transactions, the state root and receipts root after
executing them, and the validator set that certifies it. A block is final only with a quorum
certificate: distinct valid ML-DSA votes from at least ``quorum(n)`` of the n validators.

A vote signs ``vote_message(chain_id, height, header_hash)`` (FIPS 204 context ``gl/vote``):
the chain and the height are inside the signature, not only inside the hashed header, so a
vote can never be relabelled to another height or chain (it would neither count for an old
header there nor make its signer look like an equivocator). Two valid votes of one key for
two headers at one height are equivocation evidence (``Equivocation``), which governance
acts on; nobody can forge it without the key.

Decoding is strict (``decode_header``, ``Certificate.decode``, ``Vote.decode``): canonical
CBOR, exactly the fields of the format, each of its exact type (no bool for an int, no int
or list for bytes) and size, so exactly one byte string decodes to a given object and
re-encodes to the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.merkle import merkle_root
from gridledger.crypto.sig import SigningKey, verify_signature
from gridledger.errors import BadCertificate, MalformedEncoding
from gridledger.ledger import codec

VOTE_CONTEXT = b"gl/vote"
HASH_BYTES = 32
MAX_HEIGHT = 2**62  # SQLite INTEGER, and far beyond any chain's life
MAX_CHAIN_ID_CHARS = 64
MAX_SIG_BYTES = 8192  # ML-DSA-87 signatures are 4,627 bytes
MAX_VALIDATORS = 1024


def max_faulty(n: int) -> int:
    """f: the number of Byzantine validators n can tolerate (n >= 3f + 1)."""
    return (n - 1) // 3


def quorum(n: int) -> int:
    """Votes needed for finality: floor((n + f) / 2) + 1.

    Any two quorums then share at least f + 1 validators, so at least one honest validator
    would have to vote twice for two conflicting blocks to be final. Equals 2f + 1 when
    n = 3f + 1 (the DESIGN's figure) and stays safe for other n.
    """
    return (n + max_faulty(n)) // 2 + 1


# -- strict field readers --------------------------------------------------------------------
def _fields(obj: Any, what: str, names: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(obj, dict) or sorted(obj) != sorted(names):
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise MalformedEncoding(f"bad {what}: expected a map of {sorted(names)}, got {got}")
    return obj


def _int(obj: Mapping[str, Any], key: str, what: str, lo: int = 0, hi: int = MAX_HEIGHT) -> int:
    v = obj[key]
    if type(v) is not int or not lo <= v <= hi:  # bool is an int subclass: refused
        raise MalformedEncoding(f"bad {what}: {key} must be an integer in [{lo}, {hi}]")
    return v


def _bytes(obj: Mapping[str, Any], key: str, what: str, size: int | None = HASH_BYTES,
           max_size: int = MAX_SIG_BYTES) -> bytes:
    v = obj[key]
    if type(v) is not bytes or (len(v) != size if size is not None else len(v) > max_size):
        want = f"{size} bytes" if size is not None else f"at most {max_size} bytes"
        raise MalformedEncoding(f"bad {what}: {key} must be a byte string of {want}")
    return v


def _chain_id(obj: Mapping[str, Any], what: str) -> str:
    v = obj["chain_id"]
    if type(v) is not str or not 0 < len(v) <= MAX_CHAIN_ID_CHARS:
        raise MalformedEncoding(f"bad {what}: chain_id must be text of 1-{MAX_CHAIN_ID_CHARS} characters")
    return v


# -- header -------------------------------------------------------------------------------------
HEADER_FIELDS = ("chain_id", "height", "prev_hash", "slot_time", "tx_root", "state_root",
                 "receipts_root", "validator_set_hash")


@dataclass(frozen=True)
class Header:
    chain_id: str
    height: int
    prev_hash: bytes
    slot_time: int
    tx_root: bytes
    state_root: bytes
    receipts_root: bytes
    validator_set_hash: bytes

    def to_obj(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "height": self.height, "prev_hash": self.prev_hash,
                "slot_time": self.slot_time, "tx_root": self.tx_root,
                "state_root": self.state_root, "receipts_root": self.receipts_root,
                "validator_set_hash": self.validator_set_hash}

    def encode(self) -> bytes:
        return codec.encode(self.to_obj())

    @property
    def hash(self) -> bytes:
        return tagged_hash("gl/header", self.encode())

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        """Strict decoding; raises ``MalformedEncoding`` naming the field at fault."""
        obj = _fields(codec.decode(raw), "header", HEADER_FIELDS)
        return cls(_chain_id(obj, "header"), _int(obj, "height", "header", 1),
                   _bytes(obj, "prev_hash", "header"), _int(obj, "slot_time", "header"),
                   _bytes(obj, "tx_root", "header"), _bytes(obj, "state_root", "header"),
                   _bytes(obj, "receipts_root", "header"),
                   _bytes(obj, "validator_set_hash", "header"))


def tx_root(raw_txs: Sequence[bytes]) -> bytes:
    """Merkle root of a block's raw transactions, in order.

    The last list's root is remembered: replaying a certified block checks the header's
    ``tx_root`` and then builds the same header again (as two in-process validators do for
    one block), and hashing ~6 KB a transaction twice was ~1 % of a replay (issue 17). A
    tuple compares its items by identity first, then bytes: far cheaper than SHA3."""
    global _last_tx_root
    txs = tuple(raw_txs)
    last = _last_tx_root
    if last is not None and last[0] == txs:
        return last[1]
    root = merkle_root(txs)
    _last_tx_root = (txs, root)
    return root


_last_tx_root: tuple[tuple[bytes, ...], bytes] | None = None


# -- votes ----------------------------------------------------------------------------------------
def vote_message(chain_id: str, height: int, header_hash: bytes) -> bytes:
    """The bytes a validator signs for a vote (context ``gl/vote``)."""
    return codec.encode({"chain_id": chain_id, "height": height, "header_hash": header_hash})


def verify_vote_signature(alg: str, pk: bytes, chain_id: str, height: int, header_hash: bytes,
                          sig: bytes) -> bool:
    """Whether ``sig`` is ``(alg, pk)``'s vote for ``header_hash`` at ``height`` on ``chain_id``."""
    return verify_signature(alg, pk, vote_message(chain_id, height, header_hash), sig, VOTE_CONTEXT)


VOTE_FIELDS = ("chain_id", "height", "header_hash", "validator", "sig")


@dataclass(frozen=True)
class Vote:
    chain_id: str
    height: int
    header_hash: bytes
    validator: int  # index in the validator set of ``height``: only says which key to check
    sig: bytes

    def encode(self) -> bytes:
        """Wire form (the VOTES stream)."""
        return codec.encode({"chain_id": self.chain_id, "height": self.height,
                             "header_hash": self.header_hash, "validator": self.validator,
                             "sig": self.sig})

    @classmethod
    def decode(cls, raw: bytes) -> Vote:
        """Strict decoding; raises ``MalformedEncoding``."""
        obj = _fields(codec.decode(raw), "vote", VOTE_FIELDS)
        return cls(_chain_id(obj, "vote"), _int(obj, "height", "vote", 1),
                   _bytes(obj, "header_hash", "vote"),
                   _int(obj, "validator", "vote", 0, MAX_VALIDATORS - 1),
                   _bytes(obj, "sig", "vote", None))


def sign_vote(key: SigningKey, header: Header, index: int) -> Vote:
    msg = vote_message(header.chain_id, header.height, header.hash)
    return Vote(header.chain_id, header.height, header.hash, index, key.sign(msg, VOTE_CONTEXT))


def vote_ok(vote: Vote, validator_keys: Sequence[tuple[str, bytes]]) -> bool:
    """Whether ``vote`` verifies under the key at its index (in the set of its height)."""
    if not 0 <= vote.validator < len(validator_keys):
        return False
    alg, pk = validator_keys[vote.validator]
    return verify_vote_signature(alg, pk, vote.chain_id, vote.height, vote.header_hash, vote.sig)


# -- certificates ------------------------------------------------------------------------------
CERT_FIELDS = ("height", "header_hash", "votes")


@dataclass(frozen=True)
class Certificate:
    height: int
    header_hash: bytes
    votes: tuple[tuple[int, bytes], ...]  # (validator index, signature), strictly ascending

    def encode(self) -> bytes:
        return codec.encode({"height": self.height, "header_hash": self.header_hash,
                             "votes": [[i, s] for i, s in self.votes]})

    @classmethod
    def decode(cls, raw: bytes) -> Certificate:
        """Strict decoding; raises ``MalformedEncoding``. Votes must be ``[index, sig]``
        pairs in strictly ascending index order (so one certificate has one encoding)."""
        obj = _fields(codec.decode(raw), "certificate", CERT_FIELDS)
        height = _int(obj, "height", "certificate", 1)
        header_hash = _bytes(obj, "header_hash", "certificate")
        items = obj["votes"]
        if not isinstance(items, list) or not 0 < len(items) <= MAX_VALIDATORS:
            raise MalformedEncoding(f"bad certificate: votes must be a list of 1-{MAX_VALIDATORS}")
        votes: list[tuple[int, bytes]] = []
        for item in items:
            if not isinstance(item, list) or len(item) != 2:
                raise MalformedEncoding("bad certificate: a vote must be [index, sig]")
            pair = {"validator": item[0], "sig": item[1]}
            idx = _int(pair, "validator", "certificate vote", 0, MAX_VALIDATORS - 1)
            sig = _bytes(pair, "sig", "certificate vote", None)
            if votes and idx <= votes[-1][0]:
                raise MalformedEncoding("bad certificate: vote indices must be strictly ascending")
            votes.append((idx, sig))
        return cls(height, header_hash, tuple(votes))

    @classmethod
    def from_votes(cls, votes: Sequence[Vote]) -> Certificate:
        v0 = votes[0]
        return cls(v0.height, v0.header_hash,
                   tuple(sorted((v.validator, v.sig) for v in votes)))


def verify_certificate(header: Header, cert: Certificate,
                       validator_keys: Sequence[tuple[str, bytes]]) -> None:
    """Raise ``BadCertificate`` unless ``cert`` holds a quorum of valid votes for ``header``."""
    if cert.height != header.height or cert.header_hash != header.hash:
        raise BadCertificate(f"certificate is for another header at height {cert.height}")
    seen: set[int] = set()
    good = 0
    for idx, sig in cert.votes:
        if idx in seen:
            raise BadCertificate(f"validator {idx} counted twice")
        seen.add(idx)
        if vote_ok(Vote(header.chain_id, cert.height, cert.header_hash, idx, sig), validator_keys):
            good += 1
        else:
            raise BadCertificate(f"vote of validator {idx} does not verify")
    need = quorum(len(validator_keys))
    if good < need:
        raise BadCertificate(f"{good} valid votes < quorum {need} of {len(validator_keys)}")


@dataclass(frozen=True)
class Equivocation:
    """Evidence: one validator signed two different headers at one height (both votes
    verify under its key with that height and chain inside the signed bytes)."""

    validator: int
    height: int
    first: Vote
    second: Vote

    def to_obj(self) -> dict[str, Any]:
        return {"validator": self.validator, "height": self.height,
                "header_hashes": [self.first.header_hash, self.second.header_hash],
                "sigs": [self.first.sig, self.second.sig]}
