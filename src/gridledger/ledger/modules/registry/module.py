"""Registry handlers, genesis and invariants."""

from __future__ import annotations

from typing import Any

from gridledger.crypto.sig import PQ_SIG_ALGS, address_of, check_alg, verify_signature
from gridledger.errors import InvalidBody, InvariantViolation
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules import Module
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_bytes, require_str

ROTATE_CONTEXT = b"gl/rotate"


def handle_rotate_key(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    alg = require_str(body, "alg")
    check_alg(alg)  # ClassicalKey for a quantum-breakable algorithm
    pk = require_bytes(body, "pk", max_len=4096)
    pop = require_bytes(body, "pop", max_len=8192)
    if not verify_signature(alg, pk, ctx.sender, pop, ROTATE_CONTEXT):
        raise InvalidBody("proof of possession does not verify under the new key")
    rec = keeper.require_participant(state, ctx.sender)
    rec = {**rec, "alg": alg, "pk": pk}
    state.set_obj(keeper.P + ctx.sender, rec)
    ctx.emit("key_rotated", addr=ctx.sender, alg=alg)


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
        keeper.put_participant(state, addr, {"alg": p["alg"], "pk": p["pk"], "roles": roles,
                                             "cp": p.get("cp"), "name": p.get("name", ""),
                                             "status": "active"})
        if "validator" in roles:
            validators.append(addr)
    keeper.set_validators(state, validators)


def cp_unique(state: State) -> None:
    """Invariant cp-unique: one connection point, one trading identity, both ways."""
    for k, addr in state.items_with_prefix(keeper.CP):
        p = keeper.get_participant(state, addr)
        if p is None or (p.get("cp") or "").encode() != k[len(keeper.CP):]:
            raise InvariantViolation(f"cp-unique: {k!r} -> {addr.hex()[:16]} inconsistent")


MODULE = Module(
    name="registry",
    version=1,
    handlers={"registry/rotate_key": handle_rotate_key},
    init_genesis=init_genesis,
    invariants=(cp_unique,),
)
