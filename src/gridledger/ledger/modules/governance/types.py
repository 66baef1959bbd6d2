"""Governance types: validator-set proposals, messages and their stateless parsers.

``Params`` (the chain parameters governance writes) live in the ledger core,
``gridledger.ledger.params``; they are re-exported here for modules not yet converted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gridledger.errors import ConfigError, InvalidBody
from gridledger.ledger import codec
from gridledger.ledger.module import Body
from gridledger.ledger.modules.governance.errors import BadEvidence, BadParams, ParamNotVotable
from gridledger.ledger.params import (
    MECHANISMS,
    NOT_VOTABLE,
    PARAM_NAMES,
    Params,
    check_params,
    parse_params,
    parse_value,
)
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import (
    MAX_SIG_BYTES,
    require_addr,
    require_alg,
    require_bytes,
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
PROPOSE_UPGRADE = "governance/propose_upgrade"
PROPOSE_PARAMS = "governance/propose_params"
VOTE_MOTION = "governance/vote"
SET_GRID_FEES = "governance/set_grid_fees"

MAX_OPEN_MOTIONS = 16
MAX_REASON_LEN = 200
MAX_MODULE_LEN = 32
MAX_PARAMS_PER_MOTION = 16
MAX_UPGRADE_HORIZON = 1_000_000
"""An upgrade activates at most this many blocks ahead."""
MAX_FEE_HORIZON_DAYS = 30
"""The DSO sets fees at most this many days ahead."""
MAX_TARIFFS = 192
"""Entries a grid-fee schedule may hold (old ones are pruned a day after they end)."""
MAX_TOU_ENTRIES = 1440

Action = Literal["add", "remove"]
Status = Literal["open", "passed", "expired", "applied", "failed"]
OPEN_STATUSES = ("open", "passed")
MotionAction = Literal["params", "upgrade"]
MotionStatus = Literal["open", "passed", "rejected", "expired", "applied", "failed"]


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


@dataclass(frozen=True)
class Motion(Record):
    """``gov/m/<id>``: a parameter change or a module upgrade put to the validators' vote
    (kept after it closes: the chain's governance history).

    Votes are explicit (the proposal is not its proposer's vote: each validator votes after
    its own dry run). ``reasons`` keeps each no vote's reason. ``activation`` is the height
    the change takes effect: an upgrade's proposed height, or (params) two blocks after it
    passed."""

    id: int
    action: MotionAction
    proposer: bytes
    created: int
    expires: int
    status: MotionStatus
    yes: tuple[bytes, ...]
    no: tuple[bytes, ...]
    activation: int
    reasons: tuple[tuple[bytes, str], ...] = ()
    params: tuple[tuple[str, Any], ...] | None = optional()
    module: str | None = optional()
    version: int | None = optional()
    from_version: int | None = optional()
    digest: bytes | None = optional()


@dataclass(frozen=True)
class Change(Record):
    """``gov/chg/<seq>``: one change of the chain's rules, in the order applied — a grid-fee
    change by the DSO, parameters or a module version by the validators' vote."""

    seq: int
    height: int
    kind: Literal["grid_fees", "params", "upgrade"]
    by: bytes
    proposal: int = 0
    from_slot: int | None = optional()
    flat_micro_per_kwh: int | None = optional()
    tou_micro_per_kwh: tuple[int, ...] | None = optional()
    params: tuple[tuple[str, Any], ...] | None = optional()
    module: str | None = optional()
    version: int | None = optional()


@dataclass(frozen=True)
class ProposeUpgrade(Record):
    """``governance/propose_upgrade``: switch ``module`` to ``version`` at block
    ``activation_height``; ``digest`` = ``Declaration.digest`` of that version (what its
    migration writes and what it changes), which every validator's dry run checks."""

    module: str
    version: int
    activation_height: int
    digest: bytes


@dataclass(frozen=True)
class ProposeParams(Record):
    """``governance/propose_params``: new values for chain parameters (``params``:
    name -> value, sorted by name)."""

    params: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class VoteMotion(Record):
    """``governance/vote``: approve or refuse motion ``proposal``; ``reason`` says why
    (e.g. the dry run's finding)."""

    proposal: int
    approve: bool
    reason: str = ""


@dataclass(frozen=True)
class SetGridFees(Record):
    """``governance/set_grid_fees`` (DSO): from slot ``from_slot`` on, the grid fee is
    ``flat_micro_per_kwh`` plus ``tou_micro_per_kwh[slot of the day]`` (empty: flat only)."""

    from_slot: int
    flat_micro_per_kwh: int
    tou_micro_per_kwh: tuple[int, ...]


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


def parse_propose_upgrade(body: Body) -> ProposeUpgrade:
    require_fields(body, PROPOSE_UPGRADE, ("module", "version", "activation_height", "digest"))
    return ProposeUpgrade(require_str(body, "module", max_len=MAX_MODULE_LEN),
                          require_int(body, "version", 1, 2**31),
                          require_int(body, "activation_height", 1, 2**62),
                          require_bytes(body, "digest", exact=32))


def parse_propose_params(body: Body) -> ProposeParams:
    """Names known and votable (``param-not-votable``), each value well typed (``bad-params``
    naming it); cross-parameter rules are checked against the chain's parameters."""
    require_fields(body, PROPOSE_PARAMS, ("params",))
    raw = body["params"]
    if not isinstance(raw, dict) or not 1 <= len(raw) <= MAX_PARAMS_PER_MOTION:
        raise InvalidBody(f"field 'params' must be a map of 1..{MAX_PARAMS_PER_MOTION} "
                          f"parameters")
    out = []
    for name in sorted(raw, key=str):
        if not isinstance(name, str) or name not in PARAM_NAMES:
            raise InvalidBody(f"unknown parameter {str(name)[:48]!r}")
        if name in NOT_VOTABLE:
            raise ParamNotVotable(f"{name} cannot be changed by a vote")
        try:
            value = parse_value(name, raw[name])
        except ConfigError as exc:
            raise BadParams(str(exc)) from exc
        out.append((name, value))
    return ProposeParams(tuple(out))


def parse_vote_motion(body: Body) -> VoteMotion:
    require_fields(body, VOTE_MOTION, ("proposal", "approve"), optional=("reason",))
    approve = body.get("approve")
    if not isinstance(approve, bool):
        raise InvalidBody("field 'approve' must be a boolean")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_LEN:
        raise InvalidBody(f"field 'reason' must be a string of at most {MAX_REASON_LEN} chars")
    return VoteMotion(require_int(body, "proposal", 1, 2**63 - 1), approve, reason)


def parse_set_grid_fees(body: Body) -> SetGridFees:
    require_fields(body, SET_GRID_FEES, ("from_slot", "flat_micro_per_kwh", "tou_micro_per_kwh"))
    tou = body["tou_micro_per_kwh"]
    if not isinstance(tou, list) or len(tou) > MAX_TOU_ENTRIES or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 10**9 for x in tou):
        raise InvalidBody(f"field 'tou_micro_per_kwh' must be a list of at most "
                          f"{MAX_TOU_ENTRIES} integers in [0, 1e9]")
    return SetGridFees(require_int(body, "from_slot", 0, 2**40),
                       require_int(body, "flat_micro_per_kwh", 0, 10**9), tuple(tou))


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
