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
The accountant applies basic sequential composition per (feeder, day): the epsilons of all
releases about one feeder on one day add up, and a release that would exceed the daily budget
is refused. (Tighter composition theorems exist; basic composition is the one anyone can
check with a sum.)
"""

from __future__ import annotations

import math
import os
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
        if epsilon_micro <= 0:
            raise PrivacyError("a release must cost a positive epsilon")
        before = self.spent_micro(feeder_id, day)
        if before + epsilon_micro > self.daily_budget_micro:
            raise BudgetExceeded(
                f"feeder {feeder_id} day {day}: {before} + {epsilon_micro} > "
                f"{self.daily_budget_micro} micro-epsilon")
        rest = tuple(x for x in self.spent if (x[0], x[1]) != (feeder_id, day))
        # Sorted so the state (and its hash in the ledger) does not depend on charge order.
        spent = tuple(sorted((*rest, (feeder_id, day, before + epsilon_micro))))
        return replace(self, spent=spent,
                       log=(*self.log, Release(feeder_id, day, epsilon_micro, label)))

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
