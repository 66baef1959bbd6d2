"""The only code that touches ``gov/`` keys (parameters: ``ledger/params.py``, written here
at genesis)."""

from __future__ import annotations

import dataclasses

from gridledger.ledger.modules.governance.expected import ValidatorSet
from gridledger.ledger.modules.governance.types import OPEN_STATUSES as OPEN_STATUSES
from gridledger.ledger.modules.governance.types import Change, Motion, Proposal
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


def _prop_key(pid: int) -> bytes:
    return VS_PROP + pid.to_bytes(8, "big")


def proposal(state: State, pid: int) -> Proposal | None:
    if not 1 <= pid < 2**63:
        return None
    obj = state.get_obj(_prop_key(pid))
    return None if obj is None else Proposal.from_obj(obj)


def put_proposal(state: State, prop: Proposal) -> None:
    state.set_obj(_prop_key(prop.id), prop.to_obj())


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


def open_proposals(state: State) -> list[Proposal]:
    out = []
    for pid in open_ids(state):
        p = proposal(state, pid)
        if p is not None:
            out.append(p)
    return out


def projected_set(state: State, valset: ValidatorSet) -> list[tuple[bytes, str, bytes]]:
    """(addr, alg, pk) of the active set with every passed, not yet applied change applied
    in (activation, id) order: what the set will be once nothing else passes."""
    cur = [(a, alg, pk) for a, (alg, pk) in zip(valset.validator_set(state),
                                                valset.validator_keys(state), strict=True)]
    passed = sorted((p for p in open_proposals(state) if p.status == "passed"),
                    key=lambda p: (p.activation, p.id))
    for p in passed:
        if p.action == "add":
            cur.append((p.validator, p.alg, p.pk))
        else:
            cur = [c for c in cur if c[0] != p.validator]
    return cur


# -- motions (parameters, upgrades) and the change log ----------------------------------
MOTION = b"gov/m/"          # + 8-byte id -> Motion (kept after it closes: history)
MOTION_OPEN = b"gov/m-open"  # ids of motions open or passed-not-yet-applied, ascending
MOTION_LAST = b"gov/m-last"  # the last motion id (ids start at 1)
CHANGE = b"gov/chg/"        # + 8-byte seq -> Change, in the order applied
CHANGE_LAST = b"gov/chg-last"


def motion(state: State, mid: int) -> Motion | None:
    if not 1 <= mid < 2**63:
        return None
    obj = state.get_obj(MOTION + mid.to_bytes(8, "big"))
    return None if obj is None else Motion.from_obj(obj)


def put_motion(state: State, m: Motion) -> None:
    state.set_obj(MOTION + m.id.to_bytes(8, "big"), m.to_obj())


def new_motion_id(state: State) -> int:
    mid = state.get_int(MOTION_LAST) + 1
    state.set_int(MOTION_LAST, mid)
    return mid


def open_motion_ids(state: State) -> list[int]:
    return list(state.get_obj(MOTION_OPEN, []))


def set_open_motion_ids(state: State, ids: list[int]) -> None:
    if ids:
        state.set_obj(MOTION_OPEN, sorted(set(ids)))
    else:
        state.delete(MOTION_OPEN)


def open_motions(state: State) -> list[Motion]:
    return [m for m in (motion(state, i) for i in open_motion_ids(state)) if m is not None]


def motions(state: State) -> list[Motion]:
    """Every motion ever made, by id."""
    return [Motion.from_obj(v) for _k, v in state.items_with_prefix(MOTION)]


def log_change(state: State, change: Change) -> Change:
    """Append ``change`` (its ``seq`` is assigned here) to the change log."""
    seq = state.get_int(CHANGE_LAST) + 1
    state.set_int(CHANGE_LAST, seq)
    rec = dataclasses.replace(change, seq=seq)
    state.set_obj(CHANGE + seq.to_bytes(8, "big"), rec.to_obj())
    return rec


def changes(state: State) -> list[Change]:
    """The change log, oldest first."""
    return [Change.from_obj(v) for _k, v in state.items_with_prefix(CHANGE)]
