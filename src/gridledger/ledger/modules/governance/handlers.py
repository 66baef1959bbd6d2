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

from gridledger.crypto.sig import address_of, verify_signature
from gridledger.errors import RejectedTx
from gridledger.ledger.block import quorum, verify_vote_signature
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.modules.governance.errors import (
    AlreadyVoted,
    BadEvidence,
    MinValidators,
    NotValidator,
    ProposalClosed,
    ProposalExists,
    ProposalExpired,
    TooManyProposals,
    UnknownProposal,
    ValidatorPop,
)
from gridledger.ledger.modules.governance.expected import ValidatorSet
from gridledger.ledger.modules.governance.types import (
    ACTIVATION_DELAY,
    MAX_OPEN_PROPOSALS,
    VALIDATOR_POP_CONTEXT,
    Action,
    Evidence,
    Proposal,
    ProposeAdd,
    ProposeRemove,
    VoteValidator,
    validator_pop_message,
)
from gridledger.ledger.params import load_params, parse_params, store_params
from gridledger.ledger.state import State
from gridledger.ledger.valset import LastValidator, UnknownValidator, ValidatorExists


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Validate and store ``genesis["params"]``; default the grid account to the first dso."""
    params = parse_params(dict(genesis.get("params", {})))
    if params.grid_account is None:
        for p in genesis.get("participants", []):
            if "dso" in p.get("roles", []):
                params = dataclasses.replace(params, grid_account=address_of(p["alg"], p["pk"]))
                break
    store_params(state, params)


class Handlers:
    """Validator-set change handlers and the end-of-block activation; ``valset`` (the
    registry) is wired by the catalog."""

    def __init__(self, valset: ValidatorSet) -> None:
        self.valset = valset

    def _require_member(self, state: State, sender: bytes) -> list[bytes]:
        current = self.valset.validator_set(state)
        if sender not in current:
            raise NotValidator("only members of the active validator set may propose or "
                               "vote on validator-set changes")
        return current

    def _check_room(self, state: State, target: bytes) -> None:
        opened = keeper.open_proposals(state)
        if any(p.validator == target for p in opened):
            raise ProposalExists("an open or passed proposal already names this validator")
        if len(opened) >= MAX_OPEN_PROPOSALS:
            raise TooManyProposals(f"at most {MAX_OPEN_PROPOSALS} open at once")

    def _applicable(self, state: State, action: Action, validator: bytes,
                    pk: bytes) -> RejectedTx | None:
        """Why the change cannot be applied on top of every change already passed (None:
        it can)."""
        projected = keeper.projected_set(state, self.valset)
        if action == "add":
            if any(a == validator for a, _alg, _pk in projected):
                return ValidatorExists("this key is (or is about to be) a validator")
            if any(vpk == pk for _a, _alg, vpk in projected):
                return ValidatorExists("a (pending) validator uses this public key")
            return None
        if not any(a == validator for a, _alg, _pk in projected):
            return UnknownValidator("not in the validator set (or already being removed)")
        left = len(projected) - 1
        if left < 1:
            return LastValidator("the chain cannot lose its last validator")
        need = load_params(state).min_validators
        if left < need:
            return MinValidators(f"removal would leave {left} validators, fewer than "
                                 f"min_validators = {need}")
        return None

    def _create(self, state: State, ctx: TxContext, action: Action, validator: bytes, alg: str,
                pk: bytes, name: str, current: list[bytes], evidence: Evidence | None = None) -> None:
        problem = self._applicable(state, action, validator, pk)
        if problem is not None:
            raise problem
        pid = keeper.new_proposal_id(state)
        expiry = load_params(state).valset_vote_expiry_blocks
        prop = Proposal(action, validator, alg, pk, name, pid, ctx.sender, (ctx.sender,),
                        ctx.block.height, ctx.block.height + expiry, "open", 0, evidence)
        keeper.put_proposal(state, prop)
        keeper.set_open_ids(state, [*keeper.open_ids(state), pid])
        ctx.emit("validator_proposed", proposal=pid, action=action, validator=validator,
                 name=name, proposer=ctx.sender, expires=prop.expires,
                 needed=quorum(len(current)))
        self._maybe_pass(state, ctx, prop, current)

    def _maybe_pass(self, state: State, ctx: TxContext, prop: Proposal,
                    current: list[bytes]) -> None:
        counted = [v for v in prop.votes if v in current]
        if len(counted) < quorum(len(current)):
            return
        problem = self._applicable(state, prop.action, prop.validator, prop.pk)
        if problem is not None:
            raise problem
        activation = ctx.block.height + ACTIVATION_DELAY
        keeper.put_proposal(state, dataclasses.replace(prop, status="passed",
                                                       activation=activation))
        ctx.emit("validator_proposal_passed", proposal=prop.id, action=prop.action,
                 validator=prop.validator, votes=len(counted), activation=activation)

    def propose_add(self, state: State, ctx: TxContext, msg: ProposeAdd) -> None:
        """``governance/propose_add_validator`` by a validator. Rules ``not-validator``,
        ``validator-exists``, ``key-registered``, ``proposal-exists``,
        ``too-many-proposals``, ``validator-pop``."""
        current = self._require_member(state, ctx.sender)
        addr = address_of(msg.alg, msg.pk)
        problem = self.valset.validator_problem(state, addr, msg.alg, msg.pk)
        if problem is not None:
            raise problem
        self._check_room(state, addr)
        if not verify_signature(msg.alg, msg.pk, validator_pop_message(ctx.block.chain_id, msg.name),
                                msg.pop, VALIDATOR_POP_CONTEXT):
            raise ValidatorPop("the new key's proof of possession does not verify")
        self._create(state, ctx, "add", addr, msg.alg, msg.pk, msg.name, current)

    def propose_remove(self, state: State, ctx: TxContext, msg: ProposeRemove) -> None:
        """``governance/propose_remove_validator`` by a validator. Evidence is two votes of
        the target's key at ``evidence.height`` on this chain (a vote signs chain id, height
        and header hash, so votes of other heights or chains cannot be passed off as
        evidence); the vote of the validators decides, not the evidence.
        Rules ``not-validator``, ``unknown-validator``, ``bad-evidence``,
        ``proposal-exists``, ``too-many-proposals``, ``last-validator``, ``min-validators``."""
        current = self._require_member(state, ctx.sender)
        if msg.validator not in current:
            raise UnknownValidator("not in the active validator set")
        rec = self.valset.participant(state, msg.validator)
        if rec is None:
            raise UnknownValidator("the validator has no participant record")
        if msg.evidence is not None:
            for h, s in zip(msg.evidence.header_hashes, msg.evidence.sigs, strict=True):
                if not verify_vote_signature(rec.alg, rec.pk, ctx.block.chain_id,
                                             msg.evidence.height, h, s):
                    raise BadEvidence("a vote does not verify under the validator's key")
        self._check_room(state, msg.validator)
        self._create(state, ctx, "remove", msg.validator, rec.alg, rec.pk, rec.name, current,
                     msg.evidence)

    def vote(self, state: State, ctx: TxContext, msg: VoteValidator) -> None:
        """``governance/vote_validator`` by a validator: approve a proposal. Rules
        ``not-validator``, ``unknown-proposal``, ``proposal-expired``, ``proposal-closed``,
        ``already-voted``."""
        current = self._require_member(state, ctx.sender)
        pid = msg.proposal
        prop = keeper.proposal(state, pid)
        if prop is None:
            raise UnknownProposal(f"no validator-set proposal {pid}")
        if prop.status == "expired" or (prop.status == "open" and ctx.block.height > prop.expires):
            raise ProposalExpired(f"proposal {pid} expired at height {prop.expires}")
        if prop.status != "open":
            raise ProposalClosed(f"proposal {pid} already {prop.status}")
        if ctx.sender in prop.votes:
            raise AlreadyVoted("one vote per validator and proposal")
        prop = dataclasses.replace(prop, votes=tuple(sorted((*prop.votes, ctx.sender))))
        keeper.put_proposal(state, prop)
        counted = [v for v in prop.votes if v in current]
        ctx.emit("validator_vote", proposal=pid, voter=ctx.sender, votes=len(counted),
                 needed=quorum(len(current)))
        self._maybe_pass(state, ctx, prop, current)

    def end_block(self, state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
        """Expire stale proposals; apply every passed change whose activation is the next
        block."""
        ids = keeper.open_ids(state)
        if not ids:
            return
        still, due = [], []
        for pid in ids:
            prop = keeper.proposal(state, pid)
            if prop is None:
                continue
            if prop.status == "open" and ctx.height >= prop.expires:
                keeper.put_proposal(state, dataclasses.replace(prop, status="expired"))
                events.append({"type": "validator_proposal_expired", "proposal": pid,
                               "action": prop.action, "validator": prop.validator})
            elif prop.status == "passed" and prop.activation <= ctx.height + 1:
                due.append(prop)
            else:
                still.append(pid)
        # additions before removals (each in id order): a removal that relied on a
        # simultaneous addition to stay above min_validators then applies
        events.extend(self._activate(state, prop, ctx.height + 1)
                      for prop in sorted(due, key=lambda p: (p.action != "add", p.id)))
        keeper.set_open_ids(state, still)

    def _activate(self, state: State, prop: Proposal, height: int) -> dict[str, Any]:
        """Apply one passed change (deterministically; a change that can no longer apply,
        e.g. its key was registered as a meter meanwhile, is skipped with its reason)."""
        state.begin()
        try:
            if prop.action == "add":
                self.valset.add_validator(state, prop.validator, prop.alg, prop.pk, prop.name)
            else:
                left = len(self.valset.validator_set(state)) - 1
                if left < load_params(state).min_validators:
                    raise MinValidators(f"removal would leave {left} validators")
                self.valset.remove_validator(state, prop.validator)
        except RejectedTx as exc:
            state.rollback()
            keeper.put_proposal(state, dataclasses.replace(prop, status="failed"))
            return {"type": "validator_set_change_skipped", "proposal": prop.id,
                    "action": prop.action, "validator": prop.validator,
                    "reason": f"{exc.rule}: {exc.detail}"}
        state.commit()
        keeper.put_proposal(state, dataclasses.replace(prop, status="applied"))
        return {"type": "validator_set_changed", "proposal": prop.id, "action": prop.action,
                "validator": prop.validator, "name": prop.name, "activation": height,
                "validators": len(self.valset.validator_set(state)),
                "set_hash": self.valset.validator_set_hash(state)}
