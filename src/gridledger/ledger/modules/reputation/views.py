"""Reputation read-only views, served by ``Application.query("reputation/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.reputation import keeper
from gridledger.ledger.state import State


def score(state: State, arg: str) -> dict[str, Any]:
    """``reputation/score/<addr hex>``: ``{score, tier}`` (neutral 500 without a record)."""
    addr = bytes.fromhex(arg)
    return {"score": keeper.reputation_of(state, addr), "tier": keeper.tier_of(state, addr)}


def scores(state: State, _arg: str) -> list[dict[str, Any]]:
    """``reputation/scores``: every stored record ``{address, score, tier}`` by address."""
    return [{"address": a, "score": r.score, "tier": keeper.tier_of(state, a)}
            for a, r in keeper.scores(state)]


VIEWS = {"score": score, "scores": scores}
