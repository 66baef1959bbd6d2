"""Registry read-only views, served by ``Application.query("registry/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.state import State


def participant(state: State, arg: str) -> dict[str, Any] | None:
    """``registry/participant/<addr hex>``: the participant record as stored (None: not
    registered)."""
    p = keeper.participant(state, bytes.fromhex(arg))
    return None if p is None else p.to_obj()


def validator_keys(state: State, _arg: str) -> list[list[Any]]:
    """``registry/validator_keys``: ``[[alg, pk], ...]`` of the active set, vote-index order."""
    return [[alg, pk] for alg, pk in keeper.validator_keys(state)]


VIEWS = {"participant": participant, "validator_keys": validator_keys}
