"""Hourly (24/7) matching scores from the ledger's matching records.

A member's score is the share of its metered import covered by renewable GCs it cancelled
in the same hour: ``sum_h cancelled_h / sum_h consumption_h``. The ledger already bounds
each hour's claims by that hour's import (``claim-exceeds-consumption``), so no hour can
lend surplus GCs to another: this is the hourly score, not an annual-volume one. GCs
allocated to a battery (``stored_wh``) cover no consumption and do not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MemberMatching:
    """One holder's totals over the hours it consumed in (Wh) and its score in [0, 1]."""

    address: bytes
    consumption_wh: int
    cancelled_wh: int
    stored_wh: int
    hours: int

    @property
    def residual_wh(self) -> int:
        """Import no GC covers: the grid's residual mix."""
        return self.consumption_wh - self.cancelled_wh - self.stored_wh

    @property
    def score(self) -> float:
        return self.cancelled_wh / self.consumption_wh if self.consumption_wh else 0.0


def matching_by_member(rows: Iterable[Mapping[str, Any]]) -> dict[bytes, MemberMatching]:
    """Fold ``certificates/matching`` rows (one per holder and hour) into per-holder totals."""
    acc: dict[bytes, list[int]] = {}
    for r in rows:
        a = acc.setdefault(bytes(r["address"]), [0, 0, 0, 0])
        a[0] += int(r["consumption_wh"])
        a[1] += int(r["cancelled_wh"])
        a[2] += int(r["stored_wh"])
        a[3] += 1
    return {addr: MemberMatching(addr, *v) for addr, v in sorted(acc.items())}


def score_mean(members: Iterable[MemberMatching]) -> float:
    """Mean score over the holders that consumed anything (0 if none did)."""
    scores = [m.score for m in members if m.consumption_wh > 0]
    return sum(scores) / len(scores) if scores else 0.0
