"""A DSO's user-level differentially private release of the energy it meters (issue 19.3).

What is released: per area (e.g. the LV network behind one transformer) and day, the net
energy of every connection point the DSO meters — members and outsiders alike — summed per
period of the day, import and export separately. The DSO holds these readings by regulation
(sealed to it in privacy mode; outsiders are never on the ledger), so an exact release
would publish data nobody else holds; the ledger's own aggregates are exact public data
already and get no noise (docs/privacy.md, "What is published").

Guarantee: epsilon-DP per household and day against replacing one household's whole day
(``dp.day_sensitivity_wh``), from one vector release per product and day (``dp.release_vector``),
charged to every household the area covers (``PrivacyAccountant.charge_all``, basic
composition; areas are disjoint, so they compose in parallel). A product whose charge would
take any household past the daily budget is refused and not published. Connection points
that are not households (commercial or agricultural loads) are summed exactly and are not
covered: the guarantee is for natural persons' data.

Pure: the caller passes the readings and the randomness (``os.urandom`` for a deployed DSO).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gridledger.crypto.shamir import RandomBytes
from gridledger.privacy.dp import (
    MICRO_EPSILON,
    ClipBound,
    DpParams,
    PrivacyAccountant,
    clip_day,
    day_sensitivity_wh,
    expected_abs_noise_wh,
    release_vector,
)
from gridledger.privacy.errors import BudgetExceeded, PrivacyError

SLOTS_PER_DAY = 96


@dataclass(frozen=True)
class Product:
    """One released series: the day cut into periods of ``period_slots`` slots, at a cost of
    ``epsilon_micro`` per household and day."""

    name: str
    period_slots: int
    epsilon_micro: int

    def __post_init__(self) -> None:
        if self.period_slots <= 0 or SLOTS_PER_DAY % self.period_slots:
            raise PrivacyError(f"{self.name}: period_slots must divide {SLOTS_PER_DAY}")
        if self.epsilon_micro <= 0:
            raise PrivacyError(f"{self.name}: epsilon_micro must be positive")


@dataclass(frozen=True)
class PublicationPlan:
    """What the DSO publishes each day and what it may spend.

    Defaults (docs/privacy.md has the measured trade-off): 6-hour periods, epsilon 1 per
    household and day, each slot clamped to +-2 kWh (8 kW; a household's largest slot in the
    default network's year is 5.5 kWh, its 99th percentile well below 2 kWh) and each day's
    absolute energy to 20 kWh (the default day's households use at most 29 kWh gross).
    """

    products: tuple[Product, ...] = (Product("net energy per 6 h", 24, MICRO_EPSILON),)
    daily_budget_micro: int = MICRO_EPSILON
    slot_clip: ClipBound = field(default_factory=lambda: ClipBound(-2000, 2000))
    day_l1_wh: int = 20_000

    def __post_init__(self) -> None:
        if not self.products:
            raise PrivacyError("a publication plan needs at least one product")
        if self.daily_budget_micro <= 0 or self.day_l1_wh <= 0:
            raise PrivacyError("daily_budget_micro and day_l1_wh must be positive")


@dataclass(frozen=True)
class Published:
    """One product's release for one area and day. ``true_*``: the DSO's exact figures, kept
    for measuring the release's error; only ``published_*`` leave the DSO."""

    product: str
    area: str
    day: int
    period_starts: tuple[int, ...]
    """Slot of day each published period begins at."""
    households: int
    other_cps: int
    epsilon_micro: int
    sensitivity_wh: int
    published_import_wh: tuple[int, ...]
    published_export_wh: tuple[int, ...]
    true_import_wh: tuple[int, ...]
    true_export_wh: tuple[int, ...]
    clipped_import_wh: tuple[int, ...]
    clipped_export_wh: tuple[int, ...]

    @property
    def params(self) -> DpParams:
        return DpParams(self.epsilon_micro, self.sensitivity_wh)


def _periods(slots: Sequence[int], period_slots: int) -> tuple[int, ...]:
    return tuple(sorted({(s % SLOTS_PER_DAY) // period_slots * period_slots for s in slots}))


def _by_period(curve: Mapping[int, int], starts: tuple[int, ...],
               period_slots: int) -> tuple[list[int], list[int]]:
    """(import, export) Wh per period of a curve (> 0 export), in ``starts`` order."""
    pos = {p: i for i, p in enumerate(starts)}
    imp, exp = [0] * len(starts), [0] * len(starts)
    for s, wh in curve.items():
        i = pos[(s % SLOTS_PER_DAY) // period_slots * period_slots]
        if wh >= 0:
            exp[i] += wh
        else:
            imp[i] -= wh
    return imp, exp


def publish_day(area: str, day: int, readings: Mapping[str, Mapping[int, int]],
                households: frozenset[str], plan: PublicationPlan,
                accountant: PrivacyAccountant, random_bytes: RandomBytes = os.urandom,
                ) -> tuple[PrivacyAccountant, list[Published], list[str]]:
    """Release ``plan``'s products for one area and day.

    ``readings``: cp -> {slot: net Wh, > 0 export} of every cp in the area for that day (the
    DSO's measurements); cps in ``households`` are clamped (``clip_day``) and protected, the
    others summed exactly. Returns the accountant after the charges, what was published and
    the names of products refused (``BudgetExceeded``: nothing of them is published).
    """
    slots = sorted({s for curve in readings.values() for s in curve})
    if not slots:
        return accountant, [], []
    protected = sorted(cp for cp in readings if cp in households)
    clipped: dict[str, dict[int, int]] = {}
    for cp in protected:
        order = sorted(readings[cp])
        clipped[cp] = dict(zip(order, clip_day([readings[cp][s] for s in order],
                                               plan.slot_clip, plan.day_l1_wh), strict=True))
    sensitivity = day_sensitivity_wh(plan.slot_clip, plan.day_l1_wh, len(slots))
    out: list[Published] = []
    refused: list[str] = []
    for product in plan.products:
        starts = _periods(slots, product.period_slots)
        n = len(starts)
        true_imp, true_exp = [0] * n, [0] * n
        clip_imp, clip_exp = [0] * n, [0] * n
        for cp in sorted(readings):
            ti, te = _by_period(readings[cp], starts, product.period_slots)
            ci, ce = (_by_period(clipped[cp], starts, product.period_slots)
                      if cp in clipped else (ti, te))
            for i in range(n):
                true_imp[i] += ti[i]
                true_exp[i] += te[i]
                clip_imp[i] += ci[i]
                clip_exp[i] += ce[i]
        if protected:
            try:
                accountant = accountant.charge_all(protected, day, product.epsilon_micro,
                                                   f"{product.name} {area}")
            except BudgetExceeded:
                refused.append(product.name)
                continue
            params = DpParams(product.epsilon_micro, sensitivity)
            noisy = release_vector([*clip_imp, *clip_exp], params, random_bytes)
            # a negative energy is impossible, so clamping at 0 is free post-processing
            pub_imp, pub_exp = [max(0, v) for v in noisy[:n]], [max(0, v) for v in noisy[n:]]
        else:
            pub_imp, pub_exp = clip_imp, clip_exp
        out.append(Published(product.name, area, day, starts, len(protected),
                             len(readings) - len(protected),
                             product.epsilon_micro if protected else 0, sensitivity,
                             tuple(pub_imp), tuple(pub_exp), tuple(true_imp), tuple(true_exp),
                             tuple(clip_imp), tuple(clip_exp)))
    return accountant, out, refused


def release_error(published: Sequence[Published]) -> dict[str, float | None]:
    """Utility cost of the releases, in % of the true published quantities (sum over every
    published value of |published - true| / sum of |true|): ``aggregate_error_pct`` (what a
    reader gets wrong), ``clipping_error_pct`` (the clamp's part) and
    ``expected_noise_error_pct`` (the noise's expected part, E|Y| per value). None when
    nothing was published."""
    true = sum(abs(v) for p in published for v in (*p.true_import_wh, *p.true_export_wh))
    if not published or true == 0:
        return {"aggregate_error_pct": None, "clipping_error_pct": None,
                "expected_noise_error_pct": None}
    err = clip = 0
    noise = 0.0
    for p in published:
        pairs = zip((*p.published_import_wh, *p.published_export_wh),
                    (*p.clipped_import_wh, *p.clipped_export_wh),
                    (*p.true_import_wh, *p.true_export_wh), strict=True)
        for pub, clipped, t in pairs:
            err += abs(pub - t)
            clip += abs(clipped - t)
        if p.epsilon_micro:
            noise += 2 * len(p.period_starts) * expected_abs_noise_wh(p.params)
    return {"aggregate_error_pct": round(100 * err / true, 2),
            "clipping_error_pct": round(100 * clip / true, 2),
            "expected_noise_error_pct": round(100 * noise / true, 2)}
