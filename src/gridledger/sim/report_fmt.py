"""Formatting helpers of the report: escaping, tolerant readers of the summary, numbers.

Every reader tolerates a missing or mistyped key (the page renders whatever the summary
holds); amounts arrive in micro currency units ("micro") and are shown in currency units.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

MICRO = 1_000_000


def esc(x: object) -> str:
    """HTML-escaped text (attribute-safe)."""
    return html.escape(str(x), quote=True)


def as_map(x: object) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def as_list(x: object) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def num(x: object) -> float | None:
    """A finite float, or None (missing, non-numeric, NaN)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):  # numpy scalars are Real too
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def fmt(x: object, digits: int = 0, suffix: str = "") -> str:
    v = num(x)
    if v is None:
        return "–"
    return f"{v:,.{digits}f}{suffix}"


def micro(x: object) -> float | None:
    v = num(x)
    return None if v is None else v / MICRO


def fmt_money(x: object, currency: str) -> str:
    """Micro-units as currency units: 2 decimals from 1 unit up, else the exact fraction."""
    v = micro(x)
    if v is None:
        return "–"
    amount = "0" if v == 0 else f"{v:,.2f}" if abs(v) >= 1 else f"{v:.6f}".rstrip("0")
    return f"{amount} {currency or 'units'}"


def check(x: object) -> str:
    if x is True:
        return '<span class="ok" title="yes">✓</span>'
    if x is False:
        return '<span class="bad" title="no">✗</span>'
    return '<span class="muted">–</span>' if x is None else esc(x)


def label(key: str) -> str:
    return key.replace("_", " ").replace("-", " ")


def currency_of(summary: Mapping[str, Any]) -> str:
    c = as_map(summary.get("scenario")).get("currency") or as_map(summary.get("market")).get("currency")
    return str(c) if c else ""


def series(rows: Iterable[Mapping[str, Any]], key: str, scale: float = 1.0) -> list[float | None]:
    out: list[float | None] = []
    for r in rows:
        v = num(r.get(key))
        out.append(None if v is None else v / scale)
    return out


def plain(value: object, depth: int = 0) -> str:
    """A figure of an attack record as short text: numbers grouped, maps and lists inline;
    a missing value (None: e.g. no member fitted an attacker's role) as "–", as elsewhere."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else "–"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Mapping) and depth < 2:
        return ", ".join(f"{label(str(k))} {plain(v, depth + 1)}" for k, v in value.items()) or "–"
    if isinstance(value, (list, tuple)) and depth < 2:
        return ", ".join(plain(v, depth + 1) for v in value) or "–"
    return str(value)


def row_order(row: str) -> tuple[int, int, str]:
    """Threat-model rows in their table's order: 1 ... 14, then Q (JSON sorts them as text)."""
    return (0, int(row), "") if row.isdigit() else (1, 0, row)
