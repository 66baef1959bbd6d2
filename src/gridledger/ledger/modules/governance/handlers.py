"""Governance handlers: genesis parameters and validator-set changes by vote.

Parameter changes by vote are not implemented yet; until then parameters are fixed at
genesis (see docs/market.md, "open items").

Validator-set changes: a validator in the active set proposes adding a key (with the key's
proof of possession) or removing a member; validators vote; the proposer's proposal is its
vote. A proposal passes in the block where its votes from *current* members reach
``quorum(n)`` of the current set (the quorum blocks need), and the change takes effect for
block ``h + ACTIVATION_DELAY`` (applied at the end of block ``h + 1``). A proposal that has
not passed after ``valset_vote_expiry_blocks`` blocks expires.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gridledger.crypto.sig import PQ_SIG_ALGS, address_of, check_alg, verify_signature
from gridledger.errors import InvalidBody, Unauthorized
from gridledger.ledger.block import VOTE_CONTEXT, quorum
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.modules.governance.types import (
    ACTIVATION_DELAY,
    MAX_NAME_LEN,
    MAX_OPEN_PROPOSALS,
    VALIDATOR_POP_CONTEXT,
    parse_params,
    validator_pop_message,
)
from gridledger.ledger.modules.registry import keeper as registry
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_addr, require_bytes, require_int, require_str


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Validate and store ``genesis["params"]``; default the grid account to the first dso."""
    params = parse_params(dict(genesis.get("params", {})))
    if params.grid_account is None:
        for p in genesis.get("participants", []):
            if "dso" in p.get("roles", []):
                params = dataclasses.replace(params, grid_account=address_of(p["alg"], p["pk"]))
                break
    keeper.store_params(state, params)


# -- validator-set changes ---------------------------------------------------------------

def _require_member(state: State, sender: bytes) -> list[bytes]:
    current = registry.validator_set(state)
    if sender not in current:
        raise Unauthorized("not-validator: only members of the active validator set may "
                           "propose or vote on validator-set changes")
    return current


def _check_room(state: State, target: bytes) -> None:
    opened = keeper.open_proposals(state)
    if any(p["validator"] == target for p in opened):
        raise InvalidBody("proposal-exists: an open or passed proposal already names this validator")
    if len(opened) >= MAX_OPEN_PROPOSALS:
        raise InvalidBody(f"too-many-proposals: at most {MAX_OPEN_PROPOSALS} open at once")


def _applicable(state: State, prop: dict[str, Any]) -> str | None:
    """Why ``prop`` cannot be applied on top of every change already passed (None: it can)."""
    projected = keeper.projected_set(state)
    if prop["action"] == "add":
        if any(a == prop["validator"] for a, _alg, _pk in projected):
            return "validator-exists: this key is (or is about to be) a validator"
        if any(pk == prop["pk"] for _a, _alg, pk in projected):
            return "validator-exists: a (pending) validator uses this public key"
        return None
    if not any(a == prop["validator"] for a, _alg, _pk in projected):
        return "unknown-validator: not in the validator set (or already being removed)"
    left = len(projected) - 1
    if left < 1:
        return "last-validator: the chain cannot lose its last validator"
    need = keeper.load_params(state).min_validators
    if left < need:
        return (f"min-validators: removal would leave {left} validators, fewer than "
                f"min_validators = {need}")
    return None


def _create(state: State, ctx: TxContext, prop: dict[str, Any], current: list[bytes]) -> None:
    problem = _applicable(state, prop)
    if problem is not None:
        raise InvalidBody(problem)
    pid = keeper.new_proposal_id(state)
    expiry = keeper.load_params(state).valset_vote_expiry_blocks
    prop = {**prop, "id": pid, "proposer": ctx.sender, "votes": [ctx.sender],
            "created": ctx.block.height, "expires": ctx.block.height + expiry,
            "status": "open", "activation": 0}
    keeper.put_proposal(state, prop)
    keeper.set_open_ids(state, keeper.open_ids(state) + [pid])
    ctx.emit("validator_proposed", proposal=pid, action=prop["action"],
             validator=prop["validator"], name=prop["name"], proposer=ctx.sender,
             expires=prop["expires"], needed=quorum(len(current)))
    _maybe_pass(state, ctx, prop, current)


def _maybe_pass(state: State, ctx: TxContext, prop: dict[str, Any], current: list[bytes]) -> None:
    counted = [v for v in prop["votes"] if v in current]
    if len(counted) < quorum(len(current)):
        return
    problem = _applicable(state, prop)
    if problem is not None:
        raise InvalidBody(problem)
    activation = ctx.block.height + ACTIVATION_DELAY
    keeper.put_proposal(state, {**prop, "status": "passed", "activation": activation})
    ctx.emit("validator_proposal_passed", proposal=prop["id"], action=prop["action"],
             validator=prop["validator"], votes=len(counted), activation=activation)


def handle_propose_add(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``governance/propose_add_validator {alg, pk, name, pop}`` by a validator.

    ``pop`` is the new key's signature (context ``gl/validator-pop``) over
    ``types.validator_pop_message(chain_id, name)``.
    """
    current = _require_member(state, ctx.sender)
    alg = require_str(body, "alg")
    check_alg(alg)  # classical-key before anything else
    if alg not in PQ_SIG_ALGS:
        raise InvalidBody("validator-alg: a validator key must be ML-DSA")
    pk = require_bytes(body, "pk", max_len=4096)
    name = require_str(body, "name", max_len=MAX_NAME_LEN)
    pop = require_bytes(body, "pop", max_len=8192)
    addr = address_of(alg, pk)
    problem = registry.validator_problem(state, addr, alg, pk)
    if problem is not None:
        raise InvalidBody(problem)
    _check_room(state, addr)
    if not verify_signature(alg, pk, validator_pop_message(ctx.block.chain_id, name), pop,
                            VALIDATOR_POP_CONTEXT):
        raise InvalidBody("bad-pop: the new key's proof of possession does not verify")
    _create(state, ctx, {"action": "add", "validator": addr, "alg": alg, "pk": pk,
                         "name": name}, current)


def handle_propose_remove(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``governance/propose_remove_validator {validator, evidence?}`` by a validator.

    ``evidence`` (optional) is equivocation evidence as validators store it:
    ``{height, header_hashes: [a, b], sigs: [sa, sb]}``, two votes by the target's key for
    two different headers; it is checked and kept with the proposal. The vote decides, not
    the evidence: header hashes alone do not prove the two headers share a height.
    """
    current = _require_member(state, ctx.sender)
    target = require_addr(body, "validator")
    if target not in current:
        raise InvalidBody("unknown-validator: not in the active validator set")
    rec = registry.require_participant(state, target)
    prop: dict[str, Any] = {"action": "remove", "validator": target, "alg": rec["alg"],
                            "pk": rec["pk"], "name": rec.get("name", "")}
    if "evidence" in body:
        prop["evidence"] = _check_evidence(body["evidence"], rec["alg"], rec["pk"])
    _check_room(state, target)
    _create(state, ctx, prop, current)


def _check_evidence(ev: Any, alg: str, pk: bytes) -> dict[str, Any]:
    if not isinstance(ev, dict):
        raise InvalidBody("bad-evidence: evidence must be a map {height, header_hashes, sigs}")
    height = require_int(ev, "height", 1)
    hashes, sigs = ev.get("header_hashes"), ev.get("sigs")
    if (not isinstance(hashes, list) or not isinstance(sigs, list) or len(hashes) != 2
            or len(sigs) != 2 or not all(isinstance(h, bytes) and len(h) == 32 for h in hashes)
            or not all(isinstance(s, bytes) and len(s) <= 8192 for s in sigs)):
        raise InvalidBody("bad-evidence: header_hashes must be two 32-byte hashes, sigs two signatures")
    if hashes[0] == hashes[1]:
        raise InvalidBody("bad-evidence: the two votes are for the same header")
    for h, s in zip(hashes, sigs):
        if not verify_signature(alg, pk, h, s, VOTE_CONTEXT):
            raise InvalidBody("bad-evidence: a vote does not verify under the validator's key")
    return {"height": height, "header_hashes": list(hashes), "sigs": list(sigs)}


def handle_vote(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``governance/vote_validator {proposal}`` by a validator: approve a proposal."""
    current = _require_member(state, ctx.sender)
    pid = require_int(body, "proposal", 1, 2**63 - 1)
    prop = keeper.get_proposal(state, pid)
    if prop is None:
        raise InvalidBody(f"unknown-proposal: no validator-set proposal {pid}")
    if prop["status"] == "expired" or (prop["status"] == "open" and ctx.block.height > prop["expires"]):
        raise InvalidBody(f"proposal-expired: proposal {pid} expired at height {prop['expires']}")
    if prop["status"] != "open":
        raise InvalidBody(f"proposal-closed: proposal {pid} already {prop['status']}")
    if ctx.sender in prop["votes"]:
        raise InvalidBody("already-voted: one vote per validator and proposal")
    prop = {**prop, "votes": sorted(prop["votes"] + [ctx.sender])}
    keeper.put_proposal(state, prop)
    counted = [v for v in prop["votes"] if v in current]
    ctx.emit("validator_vote", proposal=pid, voter=ctx.sender, votes=len(counted),
             needed=quorum(len(current)))
    _maybe_pass(state, ctx, prop, current)


def end_block(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
    """Expire stale proposals; apply every passed change whose activation is the next block."""
    ids = keeper.open_ids(state)
    if not ids:
        return
    still, due = [], []
    for pid in ids:
        prop = keeper.get_proposal(state, pid)
        if prop is None:
            continue
        if prop["status"] == "open" and ctx.height >= prop["expires"]:
            keeper.put_proposal(state, {**prop, "status": "expired"})
            events.append({"type": "validator_proposal_expired", "proposal": pid,
                           "action": prop["action"], "validator": prop["validator"]})
        elif prop["status"] == "passed" and prop["activation"] <= ctx.height + 1:
            due.append(prop)
        else:
            still.append(pid)
    # additions before removals (each in id order): a removal that relied on a
    # simultaneous addition to stay above min_validators then applies
    for prop in sorted(due, key=lambda p: (p["action"] != "add", p["id"])):
        events.append(_activate(state, prop, ctx.height + 1))
    keeper.set_open_ids(state, still)


def _activate(state: State, prop: dict[str, Any], height: int) -> dict[str, Any]:
    """Apply one passed change (deterministically; a change that can no longer apply, e.g.
    its key was registered as a meter meanwhile, is skipped with its reason)."""
    state.begin()
    try:
        if prop["action"] == "add":
            registry.add_validator(state, prop["validator"], prop["alg"], prop["pk"], prop["name"])
        else:
            left = len(registry.validator_set(state)) - 1
            if left < keeper.load_params(state).min_validators:
                raise InvalidBody(f"min-validators: removal would leave {left} validators")
            registry.remove_validator(state, prop["validator"])
    except InvalidBody as exc:
        state.rollback()
        keeper.put_proposal(state, {**prop, "status": "failed"})
        return {"type": "validator_set_change_skipped", "proposal": prop["id"],
                "action": prop["action"], "validator": prop["validator"], "reason": exc.detail}
    state.commit()
    keeper.put_proposal(state, {**prop, "status": "applied"})
    return {"type": "validator_set_changed", "proposal": prop["id"], "action": prop["action"],
            "validator": prop["validator"], "name": prop["name"], "activation": height,
            "validators": len(registry.validator_set(state)),
            "set_hash": registry.validator_set_hash(state)}
