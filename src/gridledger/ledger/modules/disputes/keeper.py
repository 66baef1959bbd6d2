"""The only code that touches ``disp/`` keys."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.disputes.types import Decision
from gridledger.ledger.state import State

CLAIM = b"disp/c/"   # + slot(8) + trade index(4) + claim kind -> decision


def _key(slot: int, index: int, claim: str) -> bytes:
    return CLAIM + slot.to_bytes(8, "big") + index.to_bytes(4, "big") + claim.encode()


def decision(state: State, slot: int, index: int, claim: str) -> Decision | None:
    """The decision on ``claim`` about trade ``index`` of ``slot``, if there is one."""
    obj = state.get_obj(_key(slot, index, claim))
    return None if obj is None else Decision.from_obj(obj)


def get_decision(state: State, slot: int, index: int, claim: str) -> dict[str, Any] | None:
    """As ``decision``, as a map (pre-typed interface, used by the privacy module)."""
    d = decision(state, slot, index, claim)
    return None if d is None else d.to_obj()


def put_decision(state: State, slot: int, index: int, claim: str, rec: Decision) -> None:
    state.set_obj(_key(slot, index, claim), rec.to_obj())


def decisions(state: State) -> list[tuple[bytes, Decision]]:
    """Every stored decision with its key, in key order."""
    return [(k, Decision.from_obj(v)) for k, v in state.items_with_prefix(CLAIM)]
