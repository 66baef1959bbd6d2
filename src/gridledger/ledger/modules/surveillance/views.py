"""Surveillance read-only views, served by ``Application.query("surveillance/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.surveillance import keeper
from gridledger.ledger.modules.surveillance.types import Finding
from gridledger.ledger.state import State


def _plain(f: Finding) -> dict[str, Any]:
    return f.to_obj()


def findings(state: State, _arg: str) -> list[dict[str, Any]]:
    """``surveillance/findings``: every finding, by id: ``{id, kind, slot, height, basis,
    subjects, offers: [{owner, side, energy_wh, price_micro_per_kwh?, order?,
    mitigated_micro_per_kwh?, withdrawn_wh?}], ...figures}`` (``types.Finding``)."""
    return [_plain(f) for f in keeper.findings(state)]


def finding(state: State, arg: str) -> dict[str, Any] | None:
    """``surveillance/finding/<id>``: one finding, or None."""
    f = keeper.finding(state, int(arg)) if arg.isdigit() else None
    return None if f is None else _plain(f)


def subject(state: State, arg: str) -> list[dict[str, Any]]:
    """``surveillance/subject/<addr hex>``: the findings naming this address, by id."""
    return [_plain(f) for f in keeper.findings_of(state, bytes.fromhex(arg))]


def config(state: State, _arg: str) -> dict[str, Any] | None:
    """``surveillance/config``: the thresholds in force (None: no surveillance)."""
    cfg = keeper.config(state)
    return None if cfg is None else cfg.to_obj()


VIEWS = {"findings": findings, "finding": finding, "subject": subject, "config": config}
