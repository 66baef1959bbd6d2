"""Governance read-only views, served by ``Application.query("governance/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.block import quorum
from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.modules.governance.expected import ValidatorSet
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State


def validators(state: State, valset: ValidatorSet) -> dict[str, Any]:
    """``governance/validators``: the active set (index, address, name, alg), its hash,
    the open proposals with the votes that count, the quorum and ``min_validators``."""
    active = valset.validator_set(state)
    members = []
    for i, a in enumerate(active):
        p = valset.participant(state, a)
        members.append({"index": i, "address": a, "name": p.name if p else "",
                        "alg": p.alg if p else ""})
    props = [{"id": p.id, "action": p.action, "validator": p.validator, "name": p.name,
              "status": p.status, "proposer": p.proposer,
              "votes": [v for v in p.votes if v in active], "needed": quorum(len(active)),
              "expires": p.expires, "activation": p.activation}
             for p in keeper.open_proposals(state)]
    return {"validators": members, "set_hash": valset.validator_set_hash(state),
            "proposals": props, "quorum": quorum(len(active)),
            "min_validators": load_params(state).min_validators}


def params(state: State) -> dict[str, Any]:
    """``governance/params``: every chain parameter (defaults included), as plain data."""
    p = load_params(state)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(p).items()}
