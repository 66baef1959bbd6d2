"""Governance types: validator-set proposals, messages and their stateless parsers.

``Params`` (the chain parameters governance writes) live in the ledger core,
``gridledger.ledger.params``; they are re-exported here for modules not yet converted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gridledger.ledger import codec
from gridledger.ledger.module import Body
from gridledger.ledger.modules.governance.errors import BadEvidence
from gridledger.ledger.params import MECHANISMS, PARAM_NAMES, Params, check_params, parse_params
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import (
    MAX_SIG_BYTES,
    require_addr,
    require_alg,
    require_fields,
    require_int,
    require_key,
    require_sig,
    require_str,
)

VALIDATOR_POP_CONTEXT = b"gl/validator-pop"
ACTIVATION_DELAY = 2
"""A change that passes in block h takes effect for block h + 2: it is applied to state at
the end of block h + 1, so the set that certifies block h + 2 (read from the state after
h + 1) is the new one. Every validator learns of the change from a certified block before
it matters, and a new validator can fetch block h + 1 from its peers before it votes."""
MAX_OPEN_PROPOSALS = 16
MAX_NAME_LEN = 64

PROPOSE_ADD = "governance/propose_add_validator"
PROPOSE_REMOVE = "governance/propose_remove_validator"
VOTE = "governance/vote_validator"

Action = Literal["add", "remove"]
Status = Literal["open", "passed", "expired", "applied", "failed"]
OPEN_STATUSES = ("open", "passed")


def validator_pop_message(chain_id: str, name: str) -> bytes:
    """What a prospective validator's key signs (context ``gl/validator-pop``) to prove that
    its holder asks to validate this chain under this name (proof of possession)."""
    return codec.encode({"chain_id": chain_id, "name": name, "purpose": "validator"})


@dataclass(frozen=True)
class Evidence(Record):
    """Equivocation evidence as validators store it: two votes by one key for two headers."""

    height: int
    header_hashes: tuple[bytes, bytes]
    sigs: tuple[bytes, bytes]


@dataclass(frozen=True)
class Proposal(Record):
    """``gov/vs/prop/<id>``: a validator-set change and its votes (kept after it closes)."""

    action: Action
    validator: bytes
    alg: str
    pk: bytes
    name: str
    id: int
    proposer: bytes
    votes: tuple[bytes, ...]
    created: int
    expires: int
    status: Status
    activation: int
    evidence: Evidence | None = optional()


@dataclass(frozen=True)
class ProposeAdd(Record):
    """``governance/propose_add_validator``: add key (alg, pk) named ``name``; ``pop`` is
    the key's signature over ``validator_pop_message(chain_id, name)``."""

    alg: str
    pk: bytes
    name: str
    pop: bytes


@dataclass(frozen=True)
class ProposeRemove(Record):
    """``governance/propose_remove_validator``: remove ``validator``, optionally with
    equivocation evidence (checked against its key, kept with the proposal)."""

    validator: bytes
    evidence: Evidence | None = optional()


@dataclass(frozen=True)
class VoteValidator(Record):
    """``governance/vote_validator``: approve proposal ``proposal``."""

    proposal: int


def parse_propose_add(body: Body) -> ProposeAdd:
    require_fields(body, PROPOSE_ADD, ("alg", "pk", "name", "pop"))
    return ProposeAdd(require_alg(body, "alg"), require_key(body, "pk"),
                      require_str(body, "name", max_len=MAX_NAME_LEN), require_sig(body, "pop"))


def parse_evidence(ev: Any) -> Evidence:
    """The structure of equivocation evidence (signatures are checked in the handler)."""
    if not isinstance(ev, dict):
        raise BadEvidence("evidence must be a map {height, header_hashes, sigs}")
    height = require_int(ev, "height", 1)
    hashes, sigs = ev.get("header_hashes"), ev.get("sigs")
    if (not isinstance(hashes, list) or not isinstance(sigs, list) or len(hashes) != 2
            or len(sigs) != 2 or not all(isinstance(h, bytes) and len(h) == 32 for h in hashes)
            or not all(isinstance(s, bytes) and len(s) <= MAX_SIG_BYTES for s in sigs)):
        raise BadEvidence("header_hashes must be two 32-byte hashes, sigs two signatures")
    if hashes[0] == hashes[1]:
        raise BadEvidence("the two votes are for the same header")
    return Evidence(height, (hashes[0], hashes[1]), (sigs[0], sigs[1]))


def parse_propose_remove(body: Body) -> ProposeRemove:
    require_fields(body, PROPOSE_REMOVE, ("validator",), optional=("evidence",))
    target = require_addr(body, "validator")
    return ProposeRemove(target, parse_evidence(body["evidence"]) if "evidence" in body else None)


def parse_vote_validator(body: Body) -> VoteValidator:
    require_fields(body, VOTE, ("proposal",))
    return VoteValidator(require_int(body, "proposal", 1, 2**63 - 1))


__all__ = [
    "ACTIVATION_DELAY",
    "MAX_NAME_LEN",
    "MAX_OPEN_PROPOSALS",
    "MECHANISMS",
    "PARAM_NAMES",
    "VALIDATOR_POP_CONTEXT",
    "Params",
    "check_params",
    "parse_params",
    "validator_pop_message",
]
