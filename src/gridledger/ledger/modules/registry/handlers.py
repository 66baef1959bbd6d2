"""Registry handlers: key rotation and onboarding (apply, endorse, DSO attestation)."""

from __future__ import annotations

from typing import Any

from gridledger.crypto.sig import PQ_SIG_ALGS, address_of, check_alg, verify_signature
from gridledger.errors import InvalidBody, Unauthorized
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.types import (
    APPLICANT_ROLES,
    APPLY_CONTEXT,
    ENDORSER_ROLES,
    MAX_CP_LEN,
    METER_CONTEXT,
    apply_pop_message,
    meter_pop_message,
)
from gridledger.ledger.modules.reputation.keeper import reputation_of
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_addr, require_bytes, require_str

ROTATE_CONTEXT = b"gl/rotate"


def handle_rotate_key(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    alg = require_str(body, "alg")
    check_alg(alg)  # ClassicalKey for a quantum-breakable algorithm
    pk = require_bytes(body, "pk", max_len=4096)
    pop = require_bytes(body, "pop", max_len=8192)
    if not verify_signature(alg, pk, ctx.sender, pop, ROTATE_CONTEXT):
        raise InvalidBody("proof of possession does not verify under the new key")
    rec = keeper.require_participant(state, ctx.sender)
    if ctx.sender in keeper.validator_set(state) and any(
            vpk == pk for vaddr, (_a, vpk) in zip(keeper.validator_set(state), keeper.validator_keys(state))
            if vaddr != ctx.sender):
        # two validators with one key would be one voter counted twice
        raise InvalidBody("validator-exists: another validator uses this public key")
    rec = {**rec, "alg": alg, "pk": pk}
    state.set_obj(keeper.P + ctx.sender, rec)
    ctx.emit("key_rotated", addr=ctx.sender, alg=alg)


def _require_pq_key(body: dict[str, Any], alg_field: str, pk_field: str) -> tuple[str, bytes]:
    alg = require_str(body, alg_field)
    check_alg(alg)
    pk = require_bytes(body, pk_field, max_len=4096)
    return alg, pk


def _endorser_problem(state: State, addr: bytes, cp: str) -> str | None:
    """Why ``addr`` may not endorse an applicant for ``cp`` (None: it may)."""
    p = keeper.get_participant(state, addr)
    if p is None or p.get("status", "active") != "active":
        return "endorser-inactive: endorser is not an active participant"
    if "pseudonym" in p["roles"]:
        # one household holds many pseudonyms: letting them endorse would be a Sybil mill
        return "endorser-pseudonym: pseudonyms cannot endorse or sponsor applicants"
    if not ENDORSER_ROLES.intersection(p["roles"]):
        return f"endorser-role: endorsers need one of the roles {sorted(ENDORSER_ROLES)}"
    att = keeper.get_attestation(state, cp)
    if att is not None and att["dso"] == addr:
        return "endorser-is-attester: the DSO that attested the cp cannot also endorse"
    need = load_params(state).endorse_min_reputation
    if reputation_of(state, addr) < need:
        return f"endorser-reputation: endorser score below {need}"
    return None


def _maybe_admit(state: State, ctx: TxContext, applicant: bytes) -> None:
    """Admit ``applicant`` once the DSO attested its cp and k valid endorsements are in."""
    app = keeper.get_application(state, applicant)
    if app is None:
        return
    att = keeper.get_attestation(state, app["cp"])
    if att is None or att["applicant"] != applicant:
        return
    # Endorsements are re-checked now: an endorser removed or sanctioned since does not count.
    valid = [e for e in app["endorsers"] if _endorser_problem(state, e, app["cp"]) is None]
    if len(valid) < load_params(state).endorsements_required:
        return
    keeper.admit(state, applicant, app)
    ctx.emit("admitted", addr=applicant, cp=app["cp"], roles=app["roles"], endorsers=valid,
             dso=att["dso"], meter=att["meter"])


def handle_attest_cp(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``registry/attest_cp`` by a DSO: connection point ``cp`` exists, its meter has key
    (meter_alg, meter_pk), and the trading identity for it is ``applicant``."""
    cp = require_str(body, "cp", max_len=MAX_CP_LEN)
    applicant = require_addr(body, "applicant")
    meter_alg, meter_pk = _require_pq_key(body, "meter_alg", "meter_pk")
    meter_pop = require_bytes(body, "meter_pop", max_len=8192)
    if not verify_signature(meter_alg, meter_pk, meter_pop_message(ctx.block.chain_id, cp, applicant),
                            meter_pop, METER_CONTEXT):
        raise InvalidBody("meter-pop: the meter key's proof of possession does not verify")
    holder = keeper.cp_holder(state, cp)
    meter = address_of(meter_alg, meter_pk)
    if holder is not None:
        # A member admitted at genesis gets its meter installed: register the meter only.
        if holder != applicant:
            raise InvalidBody(f"cp-taken: connection point {cp!r} has another trading identity")
        keeper.put_meter(state, meter, meter_alg, meter_pk, cp)
        ctx.emit("meter_registered", cp=cp, meter=meter, holder=holder, dso=ctx.sender)
        return
    if keeper.get_attestation(state, cp) is not None:
        raise InvalidBody(f"cp-already-attested: connection point {cp!r} is attested for an applicant")
    keeper.put_meter(state, meter, meter_alg, meter_pk, cp)
    keeper.put_attestation(state, cp, {"applicant": applicant, "meter": meter, "dso": ctx.sender})
    ctx.emit("cp_attested", cp=cp, applicant=applicant, meter=meter, dso=ctx.sender)
    _maybe_admit(state, ctx, applicant)


def handle_apply(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``registry/apply``: a member (the sponsor) submits an applicant's key, with the
    applicant's proof of possession; the sponsor's submission is its endorsement."""
    alg, pk = _require_pq_key(body, "alg", "pk")
    if alg not in PQ_SIG_ALGS:
        raise InvalidBody("applicant key must be ML-DSA")
    pop = require_bytes(body, "pop", max_len=8192)
    cp = require_str(body, "cp", max_len=MAX_CP_LEN)
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > 64:
        raise InvalidBody("field 'name' must be a string of at most 64 chars")
    roles = body.get("roles")
    if (not isinstance(roles, list) or not roles or len(set(roles)) != len(roles)
            or not all(isinstance(r, str) and r in APPLICANT_ROLES for r in roles)):
        raise InvalidBody(f"field 'roles' must be a non-empty list from {sorted(APPLICANT_ROLES)}")
    roles = sorted(roles)
    addr = address_of(alg, pk)
    if keeper.get_participant(state, addr) is not None:
        raise InvalidBody("applicant-registered: this key is already a participant")
    if keeper.get_application(state, addr) is not None:
        raise InvalidBody("application-exists: this key already applied")
    if keeper.cp_holder(state, cp) is not None:
        raise InvalidBody(f"cp-taken: connection point {cp!r} has a trading identity")
    att = keeper.get_attestation(state, cp)
    if att is not None and att["applicant"] != addr:
        raise InvalidBody(f"cp-attested-for-another-applicant: {cp!r}")
    if not verify_signature(alg, pk, apply_pop_message(ctx.block.chain_id, cp, roles, name),
                            pop, APPLY_CONTEXT):
        raise InvalidBody("apply-pop: the applicant key's proof of possession does not verify")
    endorsers = [ctx.sender] if _endorser_problem(state, ctx.sender, cp) is None else []
    keeper.put_application(state, addr, {"alg": alg, "pk": pk, "cp": cp, "roles": roles,
                                         "name": name, "endorsers": endorsers,
                                         "sponsor": ctx.sender})
    ctx.emit("applied", addr=addr, cp=cp, roles=roles, sponsor=ctx.sender)
    _maybe_admit(state, ctx, addr)


def handle_endorse(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``registry/endorse {applicant}`` by an existing member or validator."""
    applicant = require_addr(body, "applicant")
    app = keeper.get_application(state, applicant)
    if app is None:
        raise InvalidBody("no-application: nothing pending for this applicant")
    if ctx.sender in app["endorsers"]:
        raise InvalidBody("already-endorsed: one endorsement per endorser")
    problem = _endorser_problem(state, ctx.sender, app["cp"])
    if problem is not None:
        raise Unauthorized(problem)
    app = {**app, "endorsers": sorted(app["endorsers"] + [ctx.sender])}
    keeper.put_application(state, applicant, app)
    ctx.emit("endorsed", applicant=applicant, endorser=ctx.sender, count=len(app["endorsers"]))
    _maybe_admit(state, ctx, applicant)


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    validators: list[bytes] = []
    for p in genesis.get("participants", []):
        check_alg(p["alg"])
        if p["alg"] not in PQ_SIG_ALGS:
            raise InvalidBody(f"genesis participant {p.get('name')} has non-PQ key")
        addr = address_of(p["alg"], p["pk"])
        roles = sorted(set(p.get("roles", [])))
        for r in roles:
            if r not in keeper.ROLES:
                raise InvalidBody(f"unknown role {r!r}")
        if "meter" in roles:
            # A meter is its own identity bound to a connection point, never a trader.
            if roles != ["meter"] or not p.get("meter_of") or p.get("cp"):
                raise InvalidBody(f"genesis meter {p.get('name')} needs roles ['meter'] and "
                                  f"meter_of, and no cp")
            keeper.put_meter(state, addr, p["alg"], p["pk"], p["meter_of"])
            continue
        keeper.put_participant(state, addr, {"alg": p["alg"], "pk": p["pk"], "roles": roles,
                                             "cp": p.get("cp"), "name": p.get("name", ""),
                                             "status": "active"})
        if "validator" in roles:
            validators.append(addr)
    keeper.set_validators(state, validators)
