"""The only code that touches ``reg/`` keys."""

from __future__ import annotations

import functools
from typing import Any

import cbor2

from gridledger.errors import InvalidBody, UnknownSender
from gridledger.ledger import codec
from gridledger.ledger.modules.registry.types import ROLES as ROLES  # re-exported
from gridledger.ledger.modules.registry.types import Participant
from gridledger.ledger.state import State
from gridledger.ledger.valset import keys_hash as keys_hash  # re-exported

P = b"reg/p/"
CP = b"reg/cp/"
METER = b"reg/meter/"   # cp -> the meter identity bound to it
ATT = b"reg/att/"       # cp -> pending DSO attestation {applicant, meter, dso}
APP = b"reg/app/"       # addr -> pending application {alg, pk, cp, roles, name, endorsers}
VALIDATORS = b"reg/validators"


@functools.lru_cache(maxsize=16384)
def _participant(raw: bytes) -> Participant:
    # a pure function of the stored bytes (records are immutable), so decoded once
    return Participant.from_obj(cbor2.loads(raw))


def participant(state: State, addr: bytes) -> Participant | None:
    """The participant record of ``addr`` (None: not registered)."""
    raw = state.get(P + addr)
    return None if raw is None else _participant(raw)


def signer(state: State, addr: bytes) -> Participant | None:
    """``Accounts.signer`` for the envelope check: the record whose key signs for ``addr``."""
    return participant(state, addr)


def get_participant(state: State, addr: bytes) -> dict[str, Any] | None:
    obj: dict[str, Any] | None = state.get_obj(P + addr)
    return obj


def require_participant(state: State, addr: bytes) -> dict[str, Any]:
    p = get_participant(state, addr)
    if p is None:
        raise UnknownSender(f"{addr.hex()[:16]}… is not a registered participant")
    return p


def has_role(state: State, addr: bytes, role: str) -> bool:
    p = get_participant(state, addr)
    return p is not None and role in p["roles"] and p.get("status", "active") == "active"


def put_participant(state: State, addr: bytes, record: dict[str, Any]) -> None:
    cp = record.get("cp")
    if cp:
        holder = state.get(CP + cp.encode())
        if holder is not None and holder != codec.encode(addr):
            raise InvalidBody(f"connection point {cp!r} already has a trading identity")
        state.set_obj(CP + cp.encode(), addr)
    state.set_obj(P + addr, record)


def cp_holder(state: State, cp: str) -> bytes | None:
    v: bytes | None = state.get_obj(CP + cp.encode())
    return v


def validator_set(state: State) -> list[bytes]:
    return list(state.get_obj(VALIDATORS, []))


def set_validators(state: State, addrs: list[bytes]) -> None:
    state.set_obj(VALIDATORS, addrs)


def validator_keys(state: State) -> list[tuple[str, bytes]]:
    """(alg, public key) of each validator, in certificate order."""
    out = []
    for a in validator_set(state):
        p = require_participant(state, a)
        out.append((p["alg"], p["pk"]))
    return out


def validator_set_hash(state: State) -> bytes:
    return keys_hash(validator_keys(state))


def validator_problem(state: State, addr: bytes, alg: str, pk: bytes) -> str | None:
    """Why ``(alg, pk)`` at ``addr`` cannot join the active set now (None: it can).

    Each reason starts with its rule name.
    """
    current = validator_set(state)
    if addr in current:
        return "validator-exists: this key is already a validator"
    if any(vpk == pk for _a, vpk in validator_keys(state)):
        return "validator-exists: another validator uses this public key"
    p = get_participant(state, addr)
    if p is not None and (p["alg"] != alg or p["pk"] != pk or "meter" in p["roles"]
                          or p.get("status", "active") != "active"):
        return "key-registered: this key's address belongs to another (rotated, meter or removed) identity"
    return None


def add_validator(state: State, addr: bytes, alg: str, pk: bytes, name: str) -> None:
    """Append ``addr`` to the active set (certificate order), registering it if needed.

    An existing participant keeps its record and gains the ``validator`` role. Raises
    ``InvalidBody`` naming the rule if ``validator_problem`` finds one.
    """
    problem = validator_problem(state, addr, alg, pk)
    if problem is not None:
        raise InvalidBody(problem)
    p = get_participant(state, addr)
    if p is None:
        p = {"alg": alg, "pk": pk, "roles": ["validator"], "cp": None, "name": name,
             "status": "active"}
    else:
        p = {**p, "roles": sorted(set(p["roles"]) | {"validator"})}
    state.set_obj(P + addr, p)
    set_validators(state, validator_set(state) + [addr])


def remove_validator(state: State, addr: bytes) -> None:
    """Drop ``addr`` from the active set and its ``validator`` role (it stays a participant:
    its balance and history remain, it can no longer vote, propose or endorse as validator).
    """
    current = validator_set(state)
    if addr not in current:
        raise InvalidBody("unknown-validator: not in the active validator set")
    if len(current) == 1:
        raise InvalidBody("last-validator: the chain cannot lose its last validator")
    set_validators(state, [a for a in current if a != addr])
    p = require_participant(state, addr)
    state.set_obj(P + addr, {**p, "roles": [r for r in p["roles"] if r != "validator"]})


# -- meters and onboarding ------------------------------------------------------------

def meter_of_cp(state: State, cp: str) -> bytes | None:
    """The meter identity registered for connection point ``cp``."""
    v: bytes | None = state.get_obj(METER + cp.encode())
    return v


def cp_of(state: State, addr: bytes) -> str | None:
    """The connection point a trading identity holds (None for identities without one)."""
    p = get_participant(state, addr)
    return None if p is None else p.get("cp")


def put_meter(state: State, addr: bytes, alg: str, pk: bytes, cp: str) -> None:
    """Register a meter identity (role ``meter``) bound to ``cp``."""
    if meter_of_cp(state, cp) is not None:
        raise InvalidBody(f"cp-has-meter: connection point {cp!r} already has a meter")
    if get_participant(state, addr) is not None:
        raise InvalidBody("meter-key-registered: this meter key is already registered")
    state.set_obj(P + addr, {"alg": alg, "pk": pk, "roles": ["meter"], "cp": None,
                             "name": f"meter:{cp}", "status": "active", "meter_of": cp})
    state.set_obj(METER + cp.encode(), addr)


def get_attestation(state: State, cp: str) -> dict[str, Any] | None:
    v: dict[str, Any] | None = state.get_obj(ATT + cp.encode())
    return v


def put_attestation(state: State, cp: str, att: dict[str, Any]) -> None:
    state.set_obj(ATT + cp.encode(), att)


def get_application(state: State, addr: bytes) -> dict[str, Any] | None:
    v: dict[str, Any] | None = state.get_obj(APP + addr)
    return v


def put_application(state: State, addr: bytes, app: dict[str, Any]) -> None:
    state.set_obj(APP + addr, app)


def admit(state: State, addr: bytes, app: dict[str, Any]) -> None:
    """Turn an application into a participant and drop the pending records."""
    put_participant(state, addr, {"alg": app["alg"], "pk": app["pk"], "roles": app["roles"],
                                  "cp": app["cp"], "name": app["name"], "status": "active"})
    state.delete(APP + addr)
    state.delete(ATT + app["cp"].encode())
