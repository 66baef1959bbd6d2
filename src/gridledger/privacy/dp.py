"""Differential privacy for published integer aggregates (Dwork et al. 2006).

Mechanism: the **discrete Laplace** (two-sided geometric) mechanism, P[Y = y] proportional to
exp(-|y| * epsilon / sensitivity), which is epsilon-DP for integer queries of the given L1
sensitivity (Ghosh, Roughgarden, Sundararajan 2009). It is sampled *exactly* with integer
arithmetic and random bits only (Canonne, Kamath, Steinke 2020, "The Discrete Gaussian for
Differential Privacy", Algorithms 1-2), so there is no floating-point leak of the kind
Mironov (CCS 2012) showed for textbook Laplace samplers.

Sensitivity is bounded by *clipping at the meter*: each household's slot reading is clamped
to ``[lower_wh, upper_wh]`` before it is secret-shared, so one household changes a feeder sum
by at most ``upper_wh - lower_wh`` Wh.

Epsilon is carried as an integer number of micro-epsilon (``epsilon_micro``), because the
accountant's state may live in the ledger, which holds integers only (DESIGN.md principle 2).
The accountant applies basic sequential composition per (unit, day): the epsilons of all
releases about one protected unit on one day add up, and a release that would exceed the
daily budget is refused. The unit is a feeder for the secure aggregation's per-slot totals
and a household for user-level releases (``charge_all``: one release charges every household
it covers; disjoint households compose in parallel). (Tighter composition theorems exist;
basic composition is the one anyone can check with a sum.)

User-level releases of a day's curve (``clip_day``, ``release_vector``): each household's
slot values are clamped, then scaled down so the day's L1 norm stays within a bound; the
day's bucketed (import, export) vector of a sum then has L1 sensitivity
``day_sensitivity_wh`` to replacing one household's whole day, and discrete-Laplace noise of
scale sensitivity/epsilon on every coordinate makes the whole vector epsilon-DP (the vector
Laplace mechanism, Dwork & Roth 2014, Thm 3.6) — one charge per day, not one per value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gridledger.crypto.shamir import RandomBytes
from gridledger.privacy.errors import BudgetExceeded, PrivacyError

MICRO_EPSILON = 1_000_000
"""``epsilon_micro`` units per unit of epsilon."""


@dataclass(frozen=True)
class ClipBound:
    """Per-meter clipping range for one slot reading (signed Wh: export is negative)."""

    lower_wh: int
    upper_wh: int

    def __post_init__(self) -> None:
        if self.lower_wh > self.upper_wh:
            raise PrivacyError("clip bound: lower_wh > upper_wh")

    @property
    def sensitivity_wh(self) -> int:
        """L1 sensitivity of a sum of clipped readings to one household."""
        return self.upper_wh - self.lower_wh


def clip_reading(reading_wh: int, bound: ClipBound) -> int:
    """Clamp a reading into ``bound`` (done by the meter before sharing)."""
    return min(max(reading_wh, bound.lower_wh), bound.upper_wh)


def clip_day(values_wh: Sequence[int], bound: ClipBound, day_l1_wh: int) -> list[int]:
    """One household's day of slot values, clamped per slot into ``bound`` and then scaled
    towards zero (integers, rounding towards zero) until their absolute sum is at most
    ``day_l1_wh``: the household's contribution a user-level release is calibrated to.

    Raises ``PrivacyError`` if ``day_l1_wh`` is not positive.
    """
    if day_l1_wh <= 0:
        raise PrivacyError("day_l1_wh must be positive")
    clipped = [clip_reading(v, bound) for v in values_wh]
    l1 = sum(abs(v) for v in clipped)
    if l1 <= day_l1_wh:
        return clipped
    # floor of |v| * D / l1 keeps the sign and sums to at most D
    return [(1 if v >= 0 else -1) * (abs(v) * day_l1_wh // l1) for v in clipped]


def day_sensitivity_wh(bound: ClipBound, day_l1_wh: int, slots: int) -> int:
    """L1 sensitivity (Wh) of a sum of ``clip_day`` curves over ``slots`` slots, bucketed into
    any (import, export) per-period vector, to replacing one household's day by any other:
    ``min(2 * day_l1_wh, slots * (upper - lower))``.

    Why it holds: each slot's value lands in exactly one period as import or export, so the
    bucketed vector's L1 norm equals the curve's; two curves differ by at most the sum of
    their norms (2 x the day bound) and by at most ``upper - lower`` per slot.
    """
    if slots <= 0:
        raise PrivacyError("slots must be positive")
    return min(2 * day_l1_wh, slots * bound.sensitivity_wh)


@dataclass(frozen=True)
class DpParams:
    """Discrete-Laplace release parameters: epsilon (micro units) and L1 sensitivity (Wh)."""

    epsilon_micro: int
    sensitivity_wh: int

    def __post_init__(self) -> None:
        if self.epsilon_micro <= 0 or self.sensitivity_wh <= 0:
            raise PrivacyError("epsilon_micro and sensitivity_wh must be positive")

    @property
    def scale_wh(self) -> float:
        """The Laplace scale b = sensitivity / epsilon (for reporting only)."""
        return self.sensitivity_wh * MICRO_EPSILON / self.epsilon_micro

    def noise_std_wh(self) -> float:
        """Standard deviation of one noise draw: sqrt(2 a) / (1 - a), a = exp(-1/b)."""
        a = math.exp(-1.0 / self.scale_wh)
        return math.sqrt(2 * a) / (1 - a)

    def noise_bound_wh(self, failure_probability: float = 1e-9, draws: int = 1) -> int:
        """``k`` such that the sum of ``draws`` independent noises exceeds ``k`` in absolute
        value with probability at most ``failure_probability`` (union bound per draw,
        P[|Y| >= k] = 2 a^k / (1 + a)); used to widen head-meter tolerances."""
        a = math.exp(-1.0 / self.scale_wh)
        per_draw = failure_probability / max(draws, 1)
        k = math.ceil(math.log(per_draw * (1 + a) / 2) / math.log(a))
        return max(k, 0) * max(draws, 1)


def _uniform_below(n: int, random_bytes: RandomBytes) -> int:
    """Uniform integer in [0, n) by rejection sampling (no modulo bias)."""
    if n <= 0:
        raise PrivacyError("_uniform_below needs n > 0")
    bits = n.bit_length()
    nbytes = (bits + 7) // 8
    mask = (1 << bits) - 1
    while True:
        v = int.from_bytes(random_bytes(nbytes), "big") & mask
        if v < n:
            return v


def _bernoulli(num: int, den: int, random_bytes: RandomBytes) -> bool:
    """Exact Bernoulli(num/den)."""
    return _uniform_below(den, random_bytes) < num


def _bernoulli_exp(num: int, den: int, random_bytes: RandomBytes) -> bool:
    """Exact Bernoulli(exp(-num/den)) for num/den >= 0 (CKS 2020, Algorithm 1)."""
    while num > den:  # exp(-g) = exp(-1)^floor(g) * exp(-(g - floor(g)))
        if not _bernoulli_exp(1, 1, random_bytes):
            return False
        num -= den
    k = 1
    while _bernoulli(num, den * k, random_bytes):
        k += 1
    return k % 2 == 1


def sample_discrete_laplace(scale_num: int, scale_den: int, random_bytes: RandomBytes) -> int:
    """Exact draw from the discrete Laplace with scale ``scale_num / scale_den``.

    P[Y = y] is proportional to exp(-|y| * scale_den / scale_num) (CKS 2020, Algorithm 2).
    """
    t, s = scale_num, scale_den
    if t <= 0 or s <= 0:
        raise PrivacyError("scale must be positive")
    while True:
        u = _uniform_below(t, random_bytes)
        if not _bernoulli_exp(u, t, random_bytes):
            continue
        v = 0
        while _bernoulli_exp(1, 1, random_bytes):
            v += 1
        y = (u + t * v) // s
        negative = _bernoulli(1, 2, random_bytes)
        if negative and y == 0:
            continue  # 0 would otherwise be drawn twice as often
        return -y if negative else y


def sample_noise(params: DpParams, random_bytes: RandomBytes = os.urandom) -> int:
    """One discrete-Laplace noise draw for ``params`` (scale sensitivity/epsilon)."""
    return sample_discrete_laplace(params.sensitivity_wh * MICRO_EPSILON, params.epsilon_micro,
                                   random_bytes)


def release_total(total_wh: int, params: DpParams, random_bytes: RandomBytes = os.urandom) -> int:
    """``total_wh`` plus discrete-Laplace noise: an epsilon-DP release of the total.

    Call it outside the ledger (the noise must stay secret to whoever adds it); inside
    secure aggregation the aggregators add the noise before anyone sees the total
    (``privacy.aggregation.seal_noise``).
    """
    return total_wh + sample_noise(params, random_bytes)


def release_vector(values_wh: Sequence[int], params: DpParams,
                   random_bytes: RandomBytes = os.urandom) -> list[int]:
    """``values_wh`` plus independent discrete-Laplace noise of scale
    ``sensitivity_wh / epsilon`` on every coordinate: an epsilon-DP release of the whole
    vector when ``params.sensitivity_wh`` bounds the L1 norm by which one unit can change
    it (``day_sensitivity_wh``). Call it outside block execution, as ``release_total``."""
    return [v + sample_noise(params, random_bytes) for v in values_wh]


def expected_abs_noise_wh(params: DpParams) -> float:
    """E|Y| of one discrete-Laplace draw: 2a / (1 - a^2), a = exp(-1/b) (b = scale)."""
    a = math.exp(-1.0 / params.scale_wh)
    return 2 * a / (1 - a * a)


@dataclass(frozen=True)
class Release:
    """One charged release in the accountant's log."""

    feeder_id: str
    day: int
    epsilon_micro: int
    label: str


@dataclass(frozen=True)
class PrivacyAccountant:
    """Sequential-composition accountant: per (feeder, day) the epsilons of releases add up.

    Immutable: ``charge`` returns a new accountant, so the ledger can keep it as plain state.
    """

    daily_budget_micro: int
    spent: tuple[tuple[str, int, int], ...] = ()  # (feeder_id, day, epsilon_micro spent)
    log: tuple[Release, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.daily_budget_micro <= 0:
            raise PrivacyError("daily_budget_micro must be positive")

    def spent_micro(self, feeder_id: str, day: int) -> int:
        """Epsilon (micro) already spent on ``feeder_id`` on ``day``."""
        for f, d, e in self.spent:
            if f == feeder_id and d == day:
                return e
        return 0

    def remaining_micro(self, feeder_id: str, day: int) -> int:
        """Epsilon (micro) still available to ``feeder_id`` on ``day``."""
        return self.daily_budget_micro - self.spent_micro(feeder_id, day)

    def charge(self, feeder_id: str, day: int, epsilon_micro: int,
               label: str = "") -> PrivacyAccountant:
        """Record a release of ``epsilon_micro``; raises ``BudgetExceeded`` past the budget."""
        return self.charge_all((feeder_id,), day, epsilon_micro, label)

    def charge_all(self, units: Iterable[str], day: int, epsilon_micro: int,
                   label: str = "") -> PrivacyAccountant:
        """Record one release of ``epsilon_micro`` about every unit in ``units`` (e.g. the
        households a feeder total covers), all or nothing: raises ``BudgetExceeded`` naming
        the first unit it would take past the daily budget, and then charges none."""
        if epsilon_micro <= 0:
            raise PrivacyError("a release must cost a positive epsilon")
        covered = sorted(set(units))
        if not covered:
            raise PrivacyError("a release must cover at least one unit")
        spent = {(u, d): e for u, d, e in self.spent}
        for u in covered:
            before = spent.get((u, day), 0)
            if before + epsilon_micro > self.daily_budget_micro:
                raise BudgetExceeded(
                    f"{u} day {day}: {before} + {epsilon_micro} > "
                    f"{self.daily_budget_micro} micro-epsilon")
        for u in covered:
            spent[(u, day)] = spent.get((u, day), 0) + epsilon_micro
        # Sorted so the state (and its hash in the ledger) does not depend on charge order.
        return replace(self, spent=tuple(sorted((u, d, e) for (u, d), e in spent.items())),
                       log=(*self.log, *(Release(u, day, epsilon_micro, label)
                                         for u in covered)))

    def max_spent_micro(self, day: int | None = None) -> int:
        """The largest epsilon (micro) any unit has spent on ``day`` (any day if None)."""
        return max((e for _, d, e in self.spent if day is None or d == day), default=0)

    def report(self) -> dict[str, Any]:
        """JSON-able state for reports: budget, spent and remaining per (feeder, day)."""
        return {
            "mechanism": "discrete-laplace",
            "composition": "sequential (basic), per feeder per day",
            "daily_budget_epsilon": self.daily_budget_micro / MICRO_EPSILON,
            "releases": len(self.log),
            "feeders": [
                {"feeder_id": f, "day": d, "spent_epsilon": e / MICRO_EPSILON,
                 "remaining_epsilon": (self.daily_budget_micro - e) / MICRO_EPSILON}
                for f, d, e in self.spent
            ],
        }
