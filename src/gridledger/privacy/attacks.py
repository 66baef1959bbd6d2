"""Privacy attack analyses for the simulator's attack lab (docs/threat-model.md rows 3 and 5).

These run *outside* the ledger, on load data the simulator already has, so a seeded numpy
RNG is fine here. Each returns a small frozen dataclass with ``as_dict()`` for
``summary.json``.

* ``analyse_usage_inference`` (scenario ``usage-inference``): an honest-but-curious validator
  estimates every household's load curve from what it sees. Without defences it sees raw
  readings. With defences it sees per-slot feeder totals from secure aggregation with
  discrete-Laplace noise, and trades under per-slot pseudonyms, which it cannot link to a
  household or to each other; households on a feeder are then exchangeable to it, so its
  best estimate is the feeder's noisy mean. We report the Pearson correlation of estimate
  and truth, and the same for the *residual* (household minus population-mean profile):
  the part of the curve that is about that household and not "people cook at 7 pm".
* ``analyse_deanonymization`` (scenario ``deanonymize``): an observer who once learned every
  household's trade curve (say, day 0 leaked) links later pseudonymous trades back to
  households by matching volume patterns (minimum-cost assignment, Kuhn-Munkres via
  ``scipy.optimize.linear_sum_assignment``). Reported per rotation policy: none (a static
  pseudonym), daily, per slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

SLOTS_PER_DAY = 96

Rotation = Literal["none", "daily", "per-slot"]


def synthetic_household_loads(n_households: int, n_days: int, seed: int,
                              slots_per_day: int = SLOTS_PER_DAY) -> NDArray[np.int64]:
    """Net slot energy (Wh; import positive, PV export negative), shape (households, days, slots).

    A stand-in for SimBench profiles when the caller has none: per-household base load,
    morning and evening peaks with household-specific timing, appliance events, and PV on
    40 % of roofs with a daily cloud factor.
    """
    rng = np.random.default_rng(seed)
    h = np.arange(slots_per_day) * 24.0 / slots_per_day  # hour of day
    base = rng.uniform(40, 120, n_households)
    am_t, pm_t = rng.normal(7.5, 0.7, n_households), rng.normal(19.0, 1.0, n_households)
    am_a, pm_a = rng.uniform(50, 250, n_households), rng.uniform(100, 400, n_households)
    pv_kwp = np.where(rng.random(n_households) < 0.4, rng.uniform(3, 8, n_households), 0.0)
    out = np.empty((n_households, n_days, slots_per_day))
    for d in range(n_days):
        jam = am_t[:, None] + rng.normal(0, 0.4, (n_households, 1))
        jpm = pm_t[:, None] + rng.normal(0, 0.6, (n_households, 1))
        scale = rng.lognormal(0, 0.2, (n_households, 1))
        load = (base[:, None] + scale * (am_a[:, None] * np.exp(-((h - jam) ** 2) / 0.5)
                                         + pm_a[:, None] * np.exp(-((h - jpm) ** 2) / 1.5)))
        events = rng.random((n_households, slots_per_day)) < 0.03
        load += events * rng.uniform(200, 600, (n_households, slots_per_day))
        clear_sky = np.clip(np.sin(np.pi * (h - 6) / 14), 0, None)
        cloud = rng.uniform(0.3, 1.0, (n_households, 1))
        pv = pv_kwp[:, None] * 1000 * (24.0 / slots_per_day) * clear_sky * cloud * 0.8
        out[:, d, :] = load - pv
    return np.rint(out).astype(np.int64)


def _discrete_laplace(rng: np.random.Generator, scale: float, size: tuple[int, ...]
                      ) -> NDArray[np.int64]:
    # Difference of two geometric variables is discrete Laplace (Inusah & Kozubowski 2006);
    # the exact integer sampler lives in privacy.dp, this is the vectorised simulation twin.
    p = 1.0 - np.exp(-1.0 / scale)
    return (rng.geometric(p, size) - rng.geometric(p, size)).astype(np.int64)


def _mean_corr(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Mean over rows of the Pearson correlation of a[i] and b[i] (rows with no variance: 0)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    num = (a * b).sum(axis=1)
    corr = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(corr.mean())


mean_row_correlation = _mean_corr  # public name for the simulator's scenarios


@dataclass(frozen=True)
class UsageInferenceReport:
    """Correlation of a curious validator's household estimates with the truth."""

    households: int
    feeders: int
    days: int
    epsilon_per_slot: float
    epsilon_per_day: float
    sensitivity_wh: int
    noise_dealers: int
    correlation_without_defence: float
    correlation_with_defence: float
    population_profile_correlation: float
    residual_correlation_without_defence: float
    residual_correlation_with_defence: float
    residual_bound: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def analyse_usage_inference(loads_wh: NDArray[np.int64], feeder_of: NDArray[np.int64], *,
                            epsilon_per_slot: float, clip_lower_wh: int, clip_upper_wh: int,
                            noise_dealers: int = 1, seed: int = 0) -> UsageInferenceReport:
    """Run the ``usage-inference`` analysis (see module docstring).

    ``loads_wh``: (households, days, slots) net Wh; ``feeder_of``: feeder index per
    household. Noise is ``noise_dealers`` independent discrete-Laplace draws of scale
    sensitivity/epsilon per feeder slot, as ``aggregation.seal_noise`` adds them.
    ``residual_bound`` is the bound we state: 2/sqrt(smallest feeder size), twice the
    correlation a household's residual has with its own feeder mean when residuals are
    independent, since the feeder mean contains 1/N of it.
    """
    if epsilon_per_slot <= 0 or noise_dealers < 1:
        raise ValueError("epsilon_per_slot > 0 and noise_dealers >= 1 required")
    rng = np.random.default_rng(seed)
    n_h, n_d, n_s = loads_wh.shape
    truth = loads_wh.reshape(n_h, n_d * n_s).astype(np.float64)
    clipped = np.clip(truth, clip_lower_wh, clip_upper_wh)
    sensitivity = clip_upper_wh - clip_lower_wh
    feeders = np.unique(feeder_of)
    estimate = np.empty_like(truth)
    for f in feeders:
        members = feeder_of == f
        total = clipped[members].sum(axis=0)
        noise = sum(_discrete_laplace(rng, sensitivity / epsilon_per_slot, total.shape)
                    for _ in range(noise_dealers))
        estimate[members] = (total + noise) / members.sum()
    population = truth.mean(axis=0, keepdims=True)
    pop_rows = np.repeat(population, n_h, axis=0)
    smallest = int(min((feeder_of == f).sum() for f in feeders))
    return UsageInferenceReport(
        households=n_h, feeders=len(feeders), days=n_d, epsilon_per_slot=epsilon_per_slot,
        epsilon_per_day=epsilon_per_slot * n_s, sensitivity_wh=sensitivity,
        noise_dealers=noise_dealers,
        correlation_without_defence=_mean_corr(truth, truth),
        correlation_with_defence=_mean_corr(estimate, truth),
        population_profile_correlation=_mean_corr(pop_rows, truth),
        residual_correlation_without_defence=_mean_corr(truth - pop_rows, truth - pop_rows),
        residual_correlation_with_defence=_mean_corr(estimate - pop_rows, truth - pop_rows),
        residual_bound=2.0 / float(np.sqrt(smallest)),
    )


@dataclass(frozen=True)
class DeanonymizationReport:
    """Linkage accuracy of pseudonymous trades to households, per rotation policy."""

    households: int
    days: int
    lot_wh: int
    chance: float
    accuracy: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _trade_volumes(loads_wh: NDArray[np.int64], lot_wh: int) -> NDArray[np.float64]:
    # What the ledger shows per slot: a buy (+) or sell (-) volume in whole lots.
    return (np.rint(loads_wh / lot_wh) * lot_wh).astype(np.float64)


def analyse_deanonymization(loads_wh: NDArray[np.int64], *, lot_wh: int = 10, seed: int = 0,
                            rotations: tuple[Rotation, ...] = ("none", "daily", "per-slot")
                            ) -> DeanonymizationReport:
    """Run the ``deanonymize`` analysis (see module docstring).

    The observer knows every household's day-0 trade curve and the pseudonym -> household
    map of day 0. ``none``: pseudonyms never change, so day 0 links every later day.
    ``daily``: each later day has fresh pseudonyms; the observer assigns each pseudonym's
    whole-day curve to a household by minimum total L1 distance to the day-0 curves.
    ``per-slot``: every trade has a fresh pseudonym; the observer can only assign each
    slot's volumes to households by distance to the day-0 volume in that slot.
    Accuracy is the fraction of (pseudonym, day or slot) linked to the right household.
    """
    rng = np.random.default_rng(seed)
    n_h, n_d, n_s = loads_wh.shape
    if n_d < 2:
        raise ValueError("need at least two days: day 0 is the observer's prior")
    vol = _trade_volumes(loads_wh, lot_wh)
    prior = vol[:, 0, :]
    acc: dict[str, float] = {}
    for rot in rotations:
        correct = total = 0
        for d in range(1, n_d):
            perm = rng.permutation(n_h)  # pseudonym i belongs to household perm[i]
            if rot == "none":
                correct += n_h  # the same pseudonym as on day 0: linked by its name
                total += n_h
            elif rot == "daily":
                cost = np.abs(vol[perm, d, :][:, None, :] - prior[None, :, :]).sum(axis=2)
                rows, cols = linear_sum_assignment(cost)
                correct += int((perm[rows] == cols).sum())
                total += n_h
            else:
                for s in range(n_s):
                    perm_s = rng.permutation(n_h)
                    cost = np.abs(vol[perm_s, d, s][:, None] - prior[None, :, s])
                    rows, cols = linear_sum_assignment(cost)
                    correct += int((perm_s[rows] == cols).sum())
                    total += n_h
        acc[rot] = correct / total
    return DeanonymizationReport(n_h, n_d, lot_wh, 1.0 / n_h, acc)


# -- linking pseudonyms to households from what a ledger holds ----------------------------------
@dataclass(frozen=True)
class SlotView:
    """What the ledger shows of one slot's pseudonyms (``nan`` where it shows nothing)."""

    slot: int
    pseudonyms: tuple[bytes, ...]
    net_wh: NDArray[np.float64]        # metered net import per pseudonym
    envelope_wh: NDArray[np.float64]   # (k, 2): the DSO's import / export limit
    order: NDArray[np.float64]         # (k, 3): side (+1 sell, -1 buy), energy Wh, price
    storage_wh: NDArray[np.float64] | None = None
    """Battery discharge the pseudonym's sub-meter reported (certificates' storage reading;
    ``nan``: none), or None when the observer does not use it."""
    image: NDArray[np.float64] | None = None
    """The firmware image its reading attested, as an index (``nan``: no reading)."""


def _scale(x: NDArray[np.float64]) -> float:
    """A robust spread (median absolute value, at least 1) for normalising a cost term."""
    x = np.abs(x[np.isfinite(x)])
    return max(1.0, float(np.median(x))) if x.size else 1.0


def _pair_cost(a: SlotView, ia: NDArray[np.int64], b: SlotView) -> NDArray[np.float64]:
    """Cost of continuing chains ending at ``a[ia]`` with each pseudonym of ``b``: how far
    apart their metered net, envelope and order (side, price) are, each term normalised."""
    ra, rb = a.net_wh[ia][:, None], b.net_wh[None, :]
    dr = np.abs(ra - rb)
    cost = np.nan_to_num(dr / _scale(dr), nan=1.0)
    de = np.abs(a.envelope_wh[ia][:, None, :] - b.envelope_wh[None, :, :]).sum(axis=2)
    cost += np.nan_to_num(de / _scale(de), nan=0.5)
    sa, sb = a.order[ia, 0][:, None], b.order[None, :, 0]
    pa, pb = a.order[ia, 2][:, None], b.order[None, :, 2]
    dp = np.abs(pa - pb)
    same = (sa == sb)
    price = np.where(same, np.nan_to_num(dp / _scale(np.where(same, dp, np.nan)), nan=0.5), 1.0)
    # a side present on one slot only says little: half the weight of a mismatch
    price = np.where(np.isnan(sa) & np.isnan(sb), 0.0,
                     np.where(np.isnan(sa) | np.isnan(sb), 0.5, price))
    cost = cost + price
    if a.image is not None and b.image is not None:
        # the meter's image is in every reading: a household's meter runs one at a time
        fa, fb = a.image[ia][:, None], b.image[None, :]
        cost = cost + np.where(np.isnan(fa) | np.isnan(fb), 0.0, np.where(fa == fb, 0.0, 1.0))
    if a.storage_wh is not None and b.storage_wh is not None:
        # a battery's discharge into an export marks its household in that slot: two
        # pseudonyms that both show one, or both show none, are alike
        ba, bb = a.storage_wh[ia][:, None] > 0, b.storage_wh[None, :] > 0
        cost = cost + np.where(ba == bb, 0.0, 1.0)
    return cost


def chain_pseudonyms(slots: Sequence[SlotView]) -> list[list[bytes]]:
    """Track pseudonyms across consecutive slots: each slot's pseudonyms continue the
    previous slot's chains by minimum total ``_pair_cost`` (Kuhn-Munkres); spare pseudonyms
    start chains. Returns the chains (pseudonym lists in slot order)."""
    chains: list[list[bytes]] = []
    tails: list[tuple[SlotView, int]] = []   # chain index -> (slot view, row of its last)
    for view in slots:
        if not view.pseudonyms:
            continue
        if not chains:
            chains = [[p] for p in view.pseudonyms]
            tails = [(view, i) for i in range(len(view.pseudonyms))]
            continue
        cost = np.vstack([_pair_cost(v, np.array([i]), view) for v, i in tails])
        rows, cols = linear_sum_assignment(cost)
        taken = set()
        for r, c in zip(rows, cols, strict=True):
            chains[r].append(view.pseudonyms[c])
            tails[r] = (view, int(c))
            taken.add(int(c))
        for c, p in enumerate(view.pseudonyms):
            if c not in taken:
                chains.append([p])
                tails.append((view, c))
    return chains


@dataclass(frozen=True)
class HouseholdAnchors:
    """What the ledger says about households that can anchor a pseudonym chain: may it sell
    (its registry role), what its pseudonyms' balances add up to (its epoch claim), and
    which pseudonyms a dispute opened to it."""

    households: tuple[bytes, ...]
    can_sell: NDArray[np.bool_]
    claim_micro: NDArray[np.float64]            # nan: no claim seen
    opened: dict[bytes, bytes]


def label_chains(chains: Sequence[Sequence[bytes]], finals: dict[bytes, int],
                 sells: set[bytes], anchors: HouseholdAnchors) -> dict[bytes, bytes]:
    """Assign chains to households (minimum total cost, one chain each): the chain's summed
    final balances against the household's claim, selling against its role, openings as
    hard links. Returns pseudonym -> household address."""
    n = len(anchors.households)
    index = {h: i for i, h in enumerate(anchors.households)}
    sums = np.array([float(sum(finals.get(p, 0) for p in c)) for c in chains])
    gap = np.abs(sums[:, None] - anchors.claim_micro[None, :])
    cost = np.nan_to_num(gap / _scale(gap), nan=0.0)
    for k, c in enumerate(chains):
        if any(p in sells for p in c):
            cost[k, ~anchors.can_sell] += 100.0
        for p in c:
            if p in anchors.opened and anchors.opened[p] in index:
                row = np.full(n, 1e6)
                row[index[anchors.opened[p]]] = 0.0
                cost[k] += row
    rows, cols = linear_sum_assignment(cost)
    out: dict[bytes, bytes] = {}
    for r, c in zip(rows, cols, strict=True):
        for p in chains[r]:
            out[p] = anchors.households[c]
    return out


def link_by_prior(slots: Sequence[SlotView], prior_wh: NDArray[np.float64],
                  households: Sequence[bytes]) -> dict[bytes, bytes]:
    """The leaked-history observer: each slot's pseudonyms to households by distance of
    their metered net to the household's curve in that slot of an earlier day
    (``prior_wh``: households x slots-of-day)."""
    out: dict[bytes, bytes] = {}
    for v in slots:
        if not v.pseudonyms:
            continue
        col = prior_wh[:, v.slot % prior_wh.shape[1]]
        cost = np.nan_to_num(np.abs(v.net_wh[:, None] - col[None, :]), nan=1e9)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            out[v.pseudonyms[r]] = households[c]
    return out
