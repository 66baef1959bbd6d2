"""The only code that touches ``disp/`` keys."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.state import State

CLAIM = b"disp/c/"   # + slot(8) + trade index(4) + claim kind -> decision


def _key(slot: int, index: int, claim: str) -> bytes:
    return CLAIM + slot.to_bytes(8, "big") + index.to_bytes(4, "big") + claim.encode()


def get_decision(state: State, slot: int, index: int, claim: str) -> dict[str, Any] | None:
    v: dict[str, Any] | None = state.get_obj(_key(slot, index, claim))
    return v


def put_decision(state: State, slot: int, index: int, claim: str, rec: dict[str, Any]) -> None:
    state.set_obj(_key(slot, index, claim), rec)
