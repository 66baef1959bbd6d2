"""Block headers, validator votes and quorum certificates.

A header commits to its parent, its transactions, the state root and receipts root after
executing them, and the validator set that certifies it. A block is final only with a quorum
certificate: distinct valid ML-DSA votes from at least ``quorum(n)`` of the n validators over
the header hash. Two certified-by-the-same-validator headers at one height are equivocation
evidence (``Equivocation``), which governance acts on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.merkle import merkle_root
from gridledger.crypto.sig import SigningKey, verify_signature
from gridledger.errors import BadCertificate, MalformedEncoding
from gridledger.ledger import codec

VOTE_CONTEXT = b"gl/vote"


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
        obj = codec.decode(raw)
        try:
            return cls(**obj)
        except TypeError as exc:
            raise MalformedEncoding(f"bad header: {exc}") from exc


def tx_root(raw_txs: Sequence[bytes]) -> bytes:
    return merkle_root(list(raw_txs))


@dataclass(frozen=True)
class Vote:
    height: int
    header_hash: bytes
    validator: int  # index in the validator set
    sig: bytes


def sign_vote(key: SigningKey, header: Header, index: int) -> Vote:
    return Vote(header.height, header.hash, index, key.sign(header.hash, VOTE_CONTEXT))


def vote_ok(vote: Vote, validator_keys: Sequence[tuple[str, bytes]]) -> bool:
    if not 0 <= vote.validator < len(validator_keys):
        return False
    alg, pk = validator_keys[vote.validator]
    return verify_signature(alg, pk, vote.header_hash, vote.sig, VOTE_CONTEXT)


@dataclass(frozen=True)
class Certificate:
    height: int
    header_hash: bytes
    votes: tuple[tuple[int, bytes], ...]  # (validator index, signature), sorted by index

    def encode(self) -> bytes:
        return codec.encode({"height": self.height, "header_hash": self.header_hash,
                             "votes": [[i, s] for i, s in self.votes]})

    @classmethod
    def decode(cls, raw: bytes) -> Certificate:
        obj = codec.decode(raw)
        try:
            votes = tuple((int(i), bytes(s)) for i, s in obj["votes"])
            return cls(int(obj["height"]), bytes(obj["header_hash"]), votes)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEncoding(f"bad certificate: {exc}") from exc

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
        if vote_ok(Vote(cert.height, cert.header_hash, idx, sig), validator_keys):
            good += 1
        else:
            raise BadCertificate(f"vote of validator {idx} does not verify")
    need = quorum(len(validator_keys))
    if good < need:
        raise BadCertificate(f"{good} valid votes < quorum {need} of {len(validator_keys)}")


@dataclass(frozen=True)
class Equivocation:
    """Evidence: one validator signed two different headers at one height."""

    validator: int
    height: int
    first: Vote
    second: Vote

    def to_obj(self) -> dict[str, Any]:
        return {"validator": self.validator, "height": self.height,
                "header_hashes": [self.first.header_hash, self.second.header_hash],
                "sigs": [self.first.sig, self.second.sig]}
