"""Disputes read-only views, served by ``Application.query("disputes/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.disputes import keeper
from gridledger.ledger.state import State


def decision(state: State, arg: str) -> dict[str, Any] | None:
    """``disputes/decision/<slot>/<trade>/<claim>``: the decision with its evidence, or None."""
    slot, trade, claim = arg.split("/")
    return keeper.get_decision(state, int(slot), int(trade), claim)


VIEWS = {"decision": decision}
