"""The only code that touches ``gov/`` keys."""

from __future__ import annotations

from typing import Any

from gridledger.ledger import codec
from gridledger.ledger.params import PARAMS_KEY
from gridledger.ledger.params import load_params as load_params  # re-exported (unconverted modules)
from gridledger.ledger.params import store_params as store_params
from gridledger.ledger.state import State

PARAMS = PARAMS_KEY


def grid_account(state: State) -> bytes | None:
    """The DSO / community-fund account that is the market's grid counterparty."""
    return load_params(state).grid_account


# -- validator-set proposals ----------------------------------------------------------------
VS_PROP = b"gov/vs/prop/"   # + 8-byte id -> proposal record (kept after it closes: history)
VS_OPEN = b"gov/vs/open"    # ids of proposals still open or passed-not-yet-applied, ascending
VS_LAST = b"gov/vs/last"    # the last proposal id handed out (ids start at 1)

OPEN_STATUSES = ("open", "passed")


def _prop_key(pid: int) -> bytes:
    return VS_PROP + pid.to_bytes(8, "big")


def get_proposal(state: State, pid: int) -> dict[str, Any] | None:
    if not 1 <= pid < 2**63:
        return None
    v: dict[str, Any] | None = state.get_obj(_prop_key(pid))
    return v


def put_proposal(state: State, prop: dict[str, Any]) -> None:
    state.set_obj(_prop_key(prop["id"]), prop)


def new_proposal_id(state: State) -> int:
    pid = state.get_int(VS_LAST) + 1
    state.set_int(VS_LAST, pid)
    return pid


def open_ids(state: State) -> list[int]:
    """Ids of open or passed-but-not-applied proposals, ascending (O(1) when none)."""
    return list(state.get_obj(VS_OPEN, []))


def set_open_ids(state: State, ids: list[int]) -> None:
    if ids:
        state.set_obj(VS_OPEN, sorted(set(ids)))
    else:
        state.delete(VS_OPEN)


def open_proposals(state: State) -> list[dict[str, Any]]:
    out = []
    for pid in open_ids(state):
        p = get_proposal(state, pid)
        if p is not None:
            out.append(p)
    return out


def projected_set(state: State) -> list[tuple[bytes, str, bytes]]:
    """(addr, alg, pk) of the active set with every passed, not yet applied change applied
    in (activation, id) order: what the set will be once nothing else passes."""
    from gridledger.ledger.modules.registry.keeper import validator_keys, validator_set

    cur = [(a, alg, pk) for a, (alg, pk) in zip(validator_set(state), validator_keys(state))]
    passed = sorted((p["activation"], p["id"], p) for p in open_proposals(state)
                    if p["status"] == "passed")
    for _act, _pid, p in passed:
        if p["action"] == "add":
            cur.append((p["validator"], p["alg"], p["pk"]))
        else:
            cur = [c for c in cur if c[0] != p["validator"]]
    return cur


def valset_view(state: State) -> dict[str, Any]:
    """The active set and the open proposals, for queries (``Application.query("validators")``)."""
    from gridledger.ledger.block import quorum
    from gridledger.ledger.modules.registry.keeper import (
        get_participant,
        validator_set,
        validator_set_hash,
    )

    active = validator_set(state)
    members = []
    for i, a in enumerate(active):
        p = get_participant(state, a) or {}
        members.append({"index": i, "address": a, "name": p.get("name", ""),
                        "alg": p.get("alg", "")})
    props = []
    for p in open_proposals(state):
        props.append({"id": p["id"], "action": p["action"], "validator": p["validator"],
                      "name": p["name"], "status": p["status"], "proposer": p["proposer"],
                      "votes": [v for v in p["votes"] if v in active],
                      "needed": quorum(len(active)), "expires": p["expires"],
                      "activation": p["activation"]})
    return {"validators": members, "set_hash": validator_set_hash(state), "proposals": props,
            "quorum": quorum(len(active)), "min_validators": load_params(state).min_validators}
