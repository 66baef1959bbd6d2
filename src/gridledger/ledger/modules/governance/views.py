"""Governance read-only views, served by ``Application.query("governance/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.block import quorum
from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.modules.governance.expected import ValidatorSet
from gridledger.ledger.params import grid_fees_for_slot, load_params, tariff_schedule
from gridledger.ledger.state import State
from gridledger.ledger.upgrades import active_versions, scheduled


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


def grid_fees(state: State, arg: str) -> dict[str, Any]:
    """``governance/grid_fees/<slot>``: the grid-fee rates in force for a slot —
    ``{slot, from_slot, flat_micro_per_kwh, tou_micro_per_kwh, rate_micro_per_kwh}`` (the
    last: flat + the slot's time-of-use entry)."""
    slot = int(arg)
    r = grid_fees_for_slot(state, slot)
    tou = r.tou_micro_per_kwh
    return {"slot": slot, "from_slot": r.from_slot, "flat_micro_per_kwh": r.flat_micro_per_kwh,
            "tou_micro_per_kwh": list(tou), "rate_micro_per_kwh": r.rate(slot % len(tou) if tou else 0)}


def tariffs(state: State, _arg: str) -> list[dict[str, Any]]:
    """``governance/tariffs``: the grid-fee schedule (empty: the genesis parameters)."""
    return [{"from_slot": e.from_slot, "flat_micro_per_kwh": e.flat_micro_per_kwh,
             "tou_micro_per_kwh": list(e.tou_micro_per_kwh)} for e in tariff_schedule(state)]


def changes(state: State, _arg: str) -> list[dict[str, Any]]:
    """``governance/changes``: every change of the chain's rules, oldest first — grid fees
    set by the DSO, parameters and module versions by the validators' vote."""
    return [c.to_obj() for c in keeper.changes(state)]


def motions(state: State, _arg: str) -> list[dict[str, Any]]:
    """``governance/motions``: every parameter or upgrade motion with its votes and status."""
    return [m.to_obj() for m in keeper.motions(state)]


def versions(state: State, running: dict[str, int]) -> dict[str, Any]:
    """``governance/versions``: ``{versions: {module: version}, scheduled: [{height,
    module, version, proposal}]}`` — what executes now and what activates when."""
    return {"versions": active_versions(state, running),
            "scheduled": [{"height": a.height, "module": a.module, "version": a.version,
                           "proposal": a.proposal, "digest": a.digest} for a in scheduled(state)]}
