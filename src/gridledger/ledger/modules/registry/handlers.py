"""Registry handlers: key rotation and onboarding (apply, endorse, DSO attestation)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gridledger.crypto.sig import address_of, check_alg, verify_signature
from gridledger.errors import ConfigError, Unauthorized
from gridledger.ledger.committee import COMMITTEE_ALG, BadCommittee, parse_committee
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.errors import (
    AlreadyEndorsed,
    ApplicantRegistered,
    ApplicationExists,
    ApplyPop,
    CommitteeRole,
    CpAlreadyAttested,
    CpAttestedForAnother,
    CpTaken,
    EndorserInactive,
    EndorserIsAttester,
    EndorserPseudonym,
    EndorserReputation,
    EndorserRole,
    MeterPop,
    NoApplication,
    RotatePop,
)
from gridledger.ledger.modules.registry.expected import Reputation
from gridledger.ledger.modules.registry.types import (
    APPLY_CONTEXT,
    ENDORSER_ROLES,
    METER_CONTEXT,
    ROLES,
    ROTATE_CONTEXT,
    SINGLE_KEY_ROLES,
    Application,
    Apply,
    Attestation,
    AttestCp,
    Endorse,
    Participant,
    RotateKey,
    apply_pop_message,
    meter_pop_message,
)
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State
from gridledger.ledger.valset import ValidatorExists


class Handlers:
    """The registry's message handlers; ``reputation`` is wired by the catalog."""

    def __init__(self, reputation: Reputation) -> None:
        self.reputation = reputation

    def rotate_key(self, state: State, ctx: TxContext, msg: RotateKey) -> None:
        """``registry/rotate_key``: rules ``rotate-pop``, ``validator-exists``,
        ``committee-role``. A committee (``ledger.committee``) rotates to a new descriptor
        (members or threshold) the same way, signed by its current k of n."""
        if msg.alg == COMMITTEE_ALG:
            p = keeper.participant(state, ctx.sender)
            if p is not None and SINGLE_KEY_ROLES.intersection(p.roles):
                raise CommitteeRole(f"a {'/'.join(sorted(SINGLE_KEY_ROLES & set(p.roles)))} "
                                    f"signs with one key")
        elif not verify_signature(msg.alg, msg.pk, ctx.sender, msg.pop, ROTATE_CONTEXT):
            raise RotatePop("proof of possession does not verify under the new key")
        validators = keeper.validator_set(state)
        keys = keeper.validator_keys(state)
        if ctx.sender in validators and any(
                vpk == msg.pk for vaddr, (_a, vpk) in zip(validators, keys, strict=True)
                if vaddr != ctx.sender):
            # two validators with one key would be one voter counted twice
            raise ValidatorExists("another validator uses this public key")
        keeper.rotate_key(state, ctx.sender, msg.alg, msg.pk)
        ctx.emit("key_rotated", addr=ctx.sender, alg=msg.alg)

    def endorser_problem(self, state: State, addr: bytes, cp: str) -> Unauthorized | None:
        """Why ``addr`` may not endorse an applicant for ``cp`` (None: it may)."""
        p = keeper.participant(state, addr)
        if p is None:
            return EndorserInactive("endorser is not a registered participant")
        if "pseudonym" in p.roles:
            # one household holds many pseudonyms: letting them endorse would be a Sybil mill
            return EndorserPseudonym("pseudonyms cannot endorse or sponsor applicants")
        if not ENDORSER_ROLES.intersection(p.roles):
            return EndorserRole(f"endorsers need one of the roles {sorted(ENDORSER_ROLES)}")
        att = keeper.attestation(state, cp)
        if att is not None and att.dso == addr:
            return EndorserIsAttester("the DSO that attested the cp cannot also endorse")
        need = load_params(state).endorse_min_reputation
        if self.reputation.reputation_of(state, addr) < need:
            return EndorserReputation(f"endorser score below {need}")
        return None

    def _maybe_admit(self, state: State, ctx: TxContext, applicant: bytes) -> None:
        """Admit ``applicant`` once the DSO attested its cp and k valid endorsements are in."""
        app = keeper.application(state, applicant)
        if app is None:
            return
        att = keeper.attestation(state, app.cp)
        if att is None or att.applicant != applicant:
            return
        # Endorsements are re-checked now: an endorser sanctioned since does not count.
        valid = [e for e in app.endorsers if self.endorser_problem(state, e, app.cp) is None]
        if len(valid) < load_params(state).endorsements_required:
            return
        keeper.admit(state, applicant, app)
        ctx.emit("admitted", addr=applicant, cp=app.cp, roles=list(app.roles), endorsers=valid,
                 dso=att.dso, meter=att.meter)

    def attest_cp(self, state: State, ctx: TxContext, msg: AttestCp) -> None:
        """``registry/attest_cp`` by a DSO. For a cp already held by ``applicant`` it only
        registers the meter. Rules ``meter-pop``, ``cp-taken``, ``cp-already-attested``,
        ``cp-has-meter``, ``meter-key-registered``."""
        if not verify_signature(msg.meter_alg, msg.meter_pk,
                                meter_pop_message(ctx.block.chain_id, msg.cp, msg.applicant),
                                msg.meter_pop, METER_CONTEXT):
            raise MeterPop("the meter key's proof of possession does not verify")
        holder = keeper.cp_holder(state, msg.cp)
        meter = address_of(msg.meter_alg, msg.meter_pk)
        if holder is not None:
            # A member admitted at genesis gets its meter installed: register the meter only.
            if holder != msg.applicant:
                raise CpTaken(f"connection point {msg.cp!r} has another trading identity")
            keeper.put_meter(state, meter, msg.meter_alg, msg.meter_pk, msg.cp)
            ctx.emit("meter_registered", cp=msg.cp, meter=meter, holder=holder, dso=ctx.sender)
            return
        if keeper.attestation(state, msg.cp) is not None:
            raise CpAlreadyAttested(f"connection point {msg.cp!r} is attested for an applicant")
        keeper.put_meter(state, meter, msg.meter_alg, msg.meter_pk, msg.cp)
        keeper.put_attestation(state, msg.cp, Attestation(msg.applicant, meter, ctx.sender))
        ctx.emit("cp_attested", cp=msg.cp, applicant=msg.applicant, meter=meter, dso=ctx.sender)
        self._maybe_admit(state, ctx, msg.applicant)

    def apply(self, state: State, ctx: TxContext, msg: Apply) -> None:
        """``registry/apply``: a member (the sponsor) submits an applicant's key, with the
        applicant's proof of possession; the sponsor's submission is its endorsement.
        Rules ``applicant-registered``, ``application-exists``, ``cp-taken``,
        ``cp-attested-for-another-applicant``, ``apply-pop``."""
        addr = address_of(msg.alg, msg.pk)
        if keeper.participant(state, addr) is not None:
            raise ApplicantRegistered("this key is already a participant")
        if keeper.application(state, addr) is not None:
            raise ApplicationExists("this key already applied")
        if keeper.cp_holder(state, msg.cp) is not None:
            raise CpTaken(f"connection point {msg.cp!r} has a trading identity")
        att = keeper.attestation(state, msg.cp)
        if att is not None and att.applicant != addr:
            raise CpAttestedForAnother(f"{msg.cp!r}")
        if not verify_signature(msg.alg, msg.pk,
                                apply_pop_message(ctx.block.chain_id, msg.cp, msg.roles, msg.name),
                                msg.pop, APPLY_CONTEXT):
            raise ApplyPop("the applicant key's proof of possession does not verify")
        sponsor_ok = self.endorser_problem(state, ctx.sender, msg.cp) is None
        keeper.put_application(state, addr, Application(
            msg.alg, msg.pk, msg.cp, msg.roles, msg.name,
            (ctx.sender,) if sponsor_ok else (), ctx.sender))
        ctx.emit("applied", addr=addr, cp=msg.cp, roles=list(msg.roles), sponsor=ctx.sender)
        self._maybe_admit(state, ctx, addr)

    def endorse(self, state: State, ctx: TxContext, msg: Endorse) -> None:
        """``registry/endorse``: rules ``no-application``, ``already-endorsed`` and the
        endorser rules (``endorser-role``, ``endorser-reputation`` ...)."""
        app = keeper.application(state, msg.applicant)
        if app is None:
            raise NoApplication("nothing pending for this applicant")
        if ctx.sender in app.endorsers:
            raise AlreadyEndorsed("one endorsement per endorser")
        problem = self.endorser_problem(state, ctx.sender, app.cp)
        if problem is not None:
            raise problem
        app = dataclasses.replace(app, endorsers=tuple(sorted((*app.endorsers, ctx.sender))))
        keeper.put_application(state, msg.applicant, app)
        ctx.emit("endorsed", applicant=msg.applicant, endorser=ctx.sender,
                 count=len(app.endorsers))
        self._maybe_admit(state, ctx, msg.applicant)


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Register genesis participants, meters and the first validator set.

    Raises ``ConfigError`` naming the participant for a classical key, an unknown role or a
    badly declared meter.
    """
    validators: list[bytes] = []
    for p in genesis.get("participants", []):
        roles = sorted(set(p.get("roles", [])))
        if p["alg"] == COMMITTEE_ALG:
            try:
                parse_committee(p["pk"])
            except BadCommittee as exc:
                raise ConfigError(f"genesis committee {p.get('name')}: {exc.detail}") from exc
            if SINGLE_KEY_ROLES.intersection(roles):
                raise ConfigError(f"genesis committee {p.get('name')}: validators and meters "
                                  f"sign with one key")
        else:
            check_alg(p["alg"])
        addr = address_of(p["alg"], p["pk"])
        for r in roles:
            if r not in ROLES:
                raise ConfigError(f"genesis participant {p.get('name')}: unknown role {r!r}")
        if "meter" in roles:
            # A meter is its own identity bound to a connection point, never a trader.
            if roles != ["meter"] or not p.get("meter_of") or p.get("cp"):
                raise ConfigError(f"genesis meter {p.get('name')} needs roles ['meter'] and "
                                  f"meter_of, and no cp")
            keeper.put_meter(state, addr, p["alg"], p["pk"], p["meter_of"])
            continue
        keeper.put_participant(state, addr, Participant(p["alg"], p["pk"], tuple(roles),
                                                        p.get("cp"), p.get("name", "")))
        if "validator" in roles:
            validators.append(addr)
    keeper.set_validators(state, validators)
