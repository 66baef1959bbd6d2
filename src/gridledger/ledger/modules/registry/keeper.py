"""The only code that touches ``reg/`` keys."""

from __future__ import annotations

from typing import Any

from gridledger.crypto.hashing import tagged_hash
from gridledger.errors import InvalidBody, UnknownSender
from gridledger.ledger import codec
from gridledger.ledger.state import State

P = b"reg/p/"
CP = b"reg/cp/"
VALIDATORS = b"reg/validators"
ROLES = ("prosumer", "consumer", "dso", "validator", "trustee", "vendor", "aggregator")


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
    return tagged_hash("gl/valset", codec.encode([[a, pk] for a, pk in validator_keys(state)]))
