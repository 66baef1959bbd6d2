"""Standard customer baselines: what a member's connection point would have done without an
activation, from its own metered history. Integer Wh, deterministic.

Method **high X of Y** (PG&E PowerSaver / PJM "High 4 of 5" family): take the ``y`` most
recent non-event days of the same day type (weekday or weekend) before the event day, keep
the ``x`` with the highest consumption over the event window, and average them slot by slot.
Optionally a **day-of adjustment** scales it by the ratio of the member's actual to its
baseline consumption over the hours just before the event (MISO/utility practice), clamped to
``[0.8, 1.2]`` as Buildings' ``BaselinePrediction`` documents (lbl-srg/modelica-buildings),
so a member cannot run its load up before an event to inflate the baseline without limit.
Sources: /work/shared/REFERENCES.md §3.

Sign convention (GridLedger's): ``net_wh`` = export - import per slot; consumption is
``-net_wh``. A baseline is a net injection per slot, as ``flex/request``'s ``reference_wh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PPM = 1_000_000
ADJUST_MIN_PPM = 800_000
ADJUST_MAX_PPM = 1_200_000


@dataclass(frozen=True)
class Day:
    """One past day of a connection point: its index (days since the chain's origin), net
    injection per slot of the day (Wh), whether it had a flexibility event, whether it is a
    weekend or holiday."""

    day: int
    net_wh: tuple[int, ...]
    event: bool = False
    weekend: bool = False


def method_name(x: int, y: int, adjusted: bool) -> str:
    """The name a request carries in ``reference_method``, e.g. ``high-5-of-10-adj``."""
    return f"high-{x}-of-{y}" + ("-adj" if adjusted else "")


def _div(a: int, b: int) -> int:
    """``a / b`` rounded half away from zero (b > 0): symmetric for imports and exports."""
    q, r = divmod(abs(a), b)
    q += 1 if 2 * r >= b else 0
    return q if a >= 0 else -q


def high_x_of_y(history: Sequence[Day], window: Sequence[int], *, event_day: int,
                weekend: bool = False, x: int = 5, y: int = 10) -> tuple[int, ...]:
    """Baseline net injection (Wh) for the slots-of-day ``window`` of ``event_day``.

    Candidates: days before ``event_day`` without an event, of the same day type, the ``y``
    most recent; of them the ``x`` with the highest consumption over ``window`` (ties: the
    more recent); their mean per slot. Fewer than ``x`` candidates: the mean of those there
    are.

    Raises ``ValueError`` for ``x`` outside ``1..y``, an empty window or no candidate day.
    """
    if not 1 <= x <= y:
        raise ValueError(f"high {x} of {y}: need 1 <= x <= y")
    if not window:
        raise ValueError("empty event window")
    candidates = sorted((d for d in history
                         if d.day < event_day and not d.event and d.weekend == weekend),
                        key=lambda d: d.day, reverse=True)[:y]
    if not candidates:
        raise ValueError(f"no non-event {'weekend' if weekend else 'week'} day before day "
                         f"{event_day}")

    def consumption(d: Day) -> int:
        return -sum(d.net_wh[s] for s in window)

    chosen = sorted(candidates, key=lambda d: (consumption(d), d.day), reverse=True)[:x]
    return tuple(_div(sum(d.net_wh[s] for d in chosen), len(chosen)) for s in window)


def adjustment_ppm(baseline_wh: Sequence[int], actual_wh: Sequence[int]) -> int:
    """Day-of adjustment factor (ppm): actual over baseline consumption in the hours before
    the event, clamped to [0.8, 1.2]. 1.0 when the baseline consumes nothing there.

    Raises ``ValueError`` if the two windows differ in length."""
    if len(baseline_wh) != len(actual_wh):
        raise ValueError("adjustment windows differ in length")
    base, actual = -sum(baseline_wh), -sum(actual_wh)
    if base <= 0:
        return PPM
    return min(max(_div(actual * PPM, base), ADJUST_MIN_PPM), ADJUST_MAX_PPM)


def adjust(baseline_wh: Sequence[int], factor_ppm: int) -> tuple[int, ...]:
    """The baseline scaled by ``factor_ppm`` (consumption and export alike)."""
    return tuple(_div(b * factor_ppm, PPM) for b in baseline_wh)
