"""The DSO's open data: a differentially private release of what only it meters (issue 19.3).

After each delivered slot the DSO holds every connection point's measurement — members'
readings sealed to it (privacy mode) or on the ledger (clear mode), and the outsiders',
which never reach the ledger. At the end of the run it publishes, per transformer area and
day, the net energy imported and exported per 6-hour period (``privacy.publication``):
epsilon-DP per household and day, charged to a per-household-day accountant that refuses a
product past the budget. Households are the cps with a residential (BDEW H0) SimBench load,
or every cp on a network without profile names; other cps are summed exactly.

Where the noise comes from: outside block execution (nothing of it enters the ledger), from
a stream keyed by the DSO's own secret (derived from the scenario seed like its keys, so a
run is reproducible and no simulated adversary holds it); a deployed DSO draws from the OS.

The figures go to ``summary.privacy`` (``epsilon_per_household_day``, ``aggregate_error_pct``,
``dp_published``, ...) through ``ctx.data.dp_release``, in both privacy modes: the outsiders'
part of the release is private either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import networkx as nx
import pandapower.topology as top

from gridledger.crypto.hashing import tagged_hash
from gridledger.grid import GridModel, simbench_load_profiles
from gridledger.privacy.dp import MICRO_EPSILON, PrivacyAccountant
from gridledger.privacy.publication import (
    SLOTS_PER_DAY,
    PublicationPlan,
    Published,
    publish_day,
    release_error,
)
from gridledger.privacy.rng import DeterministicRandom
from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature, ReportSection
from gridledger.sim.records import Delivered
from gridledger.sim.report_fmt import as_list, as_map, esc, fmt, num

PLAN = PublicationPlan()
"""What the demo's DSO publishes (defaults: docs/privacy.md, "What is published")."""


def transformer_areas(model: GridModel) -> dict[str, tuple[str, ...]]:
    """Area name (``trafo-N``, as the head-meter sensors) -> the cps it supplies, sorted; cps
    no transformer supplies (or a network without one) fall in ``network``."""
    net = model.net
    bus_of = {cp.cp_id: cp.bus for cp in model.cps}
    if len(net.trafo) == 1:
        return {f"trafo-{int(net.trafo.index[0])}": tuple(sorted(bus_of))}
    areas: dict[str, tuple[str, ...]] = {}
    left = set(bus_of)
    if len(net.trafo):
        graph = top.create_nxgraph(net, include_trafos=False)
        for idx, lv_bus in zip(net.trafo.index, net.trafo.lv_bus, strict=True):
            buses = nx.node_connected_component(graph, int(lv_bus))
            cps = sorted(cp for cp in left if bus_of[cp] in buses)
            if cps:
                areas[f"trafo-{int(idx)}"] = tuple(cps)
                left -= set(cps)
    if left:
        areas["network"] = tuple(sorted(left))
    return areas


def households_of(model: GridModel) -> frozenset[str]:
    """The cps whose loads include a residential (H0) SimBench profile; every cp when the
    network carries no profile names (a file or pandapower example): then all are protected."""
    profiles = simbench_load_profiles(model.name.split("+")[0])
    if not profiles:
        return frozenset(model.cp_ids)
    return frozenset(cp.cp_id for cp in model.cps
                     if any(p.startswith("H0") for p in profiles.get(cp.bus, ())))


def _period(start: int, period_slots: int) -> str:
    end = start + period_slots
    return f"{start // 4:02d}:{start % 4 * 15:02d}-{end // 4:02d}:{end % 4 * 15:02d}"


class DsoPublication(Feature):
    name: ClassVar[str] = "publication"
    threat_rows: ClassVar[tuple[str, ...]] = ("3",)

    def __init__(self, ctx: SimContext, plan: PublicationPlan = PLAN) -> None:
        super().__init__(ctx)
        self.plan = plan
        self.areas = transformer_areas(ctx.model)
        self.households = households_of(ctx.model)
        self.accountant = PrivacyAccountant(plan.daily_budget_micro)
        self.readings: dict[int, dict[str, dict[int, int]]] = {}
        """Day -> cp -> slot -> the DSO's measurement (Wh, > 0 export)."""
        self.published: list[Published] = []
        self.refused: list[dict[str, Any]] = []

    def after_delivery(self, step: Step, delivered: Delivered) -> None:
        today = delivered.slot // SLOTS_PER_DAY
        if any(d < today for d in self.readings):
            # the days before are whole: released now, in day order as at the end (same
            # accountant, same noise), and their readings dropped — a run held every cp's
            # reading of every slot (issue 17: 0.5 MB a slot on a 5,141-cp network)
            self.publish(before=today)
        day = self.readings.setdefault(today, {})
        for cp, wh in delivered.measurements.reported_wh_by_cp.items():
            day.setdefault(cp, {})[delivered.slot] = int(wh)

    def noise_source(self, day: int, area: str) -> DeterministicRandom:
        """The DSO's noise for one day and area (its own secret; see the module docstring)."""
        return DeterministicRandom(tagged_hash("gl/sim-dso-dp-noise", str(self.ctx.sc.seed)
                                               .encode(), str(day).encode(), area.encode()))

    def publish(self, before: int | None = None) -> None:
        """Release every day's products not yet released (idempotent per day and area), of
        the days before ``before`` only if given; a released day's readings are dropped."""
        done = {(p.day, p.area) for p in self.published}
        for day in sorted(self.readings):
            if before is not None and day >= before:
                continue
            for area, cps in self.areas.items():
                if (day, area) in done:
                    continue
                readings = {cp: self.readings[day][cp] for cp in cps if cp in self.readings[day]}
                self.accountant, out, refused = publish_day(
                    area, day, readings, self.households, self.plan, self.accountant,
                    self.noise_source(day, area))
                self.published += out
                self.refused += [{"product": r, "area": area, "day": day} for r in refused]
            del self.readings[day]

    def finish(self) -> None:
        self.publish()
        self.ctx.data.dp_release = self.figures()

    def figures(self) -> dict[str, Any]:
        """The ``summary.privacy`` keys of the release (see ``PrivacyMode.summary``)."""
        plan, pubs = self.plan, self.published
        covered = sorted({cp for cps in self.areas.values() for cp in cps})
        n_households = sum(1 for cp in covered if cp in self.households)
        spent = self.accountant.max_spent_micro()
        return {
            "epsilon_per_household_day": spent / MICRO_EPSILON if pubs else None,
            "epsilon_budget_per_household_day": plan.daily_budget_micro / MICRO_EPSILON,
            **release_error(pubs),
            "dp_refused": self.refused,
            "dp": {
                "publisher": "DSO (off the ledger, outside block execution)",
                "mechanism": "discrete Laplace, vector release (one charge per product and "
                             "day)",
                "composition": "basic sequential per household and day; areas disjoint "
                               "(parallel)",
                "adjacency": "replace one household's whole day",
                "slot_clip_wh": [plan.slot_clip.lower_wh, plan.slot_clip.upper_wh],
                "day_l1_wh": plan.day_l1_wh,
                "sensitivity_wh": max((p.sensitivity_wh for p in pubs), default=None),
                "households_protected": n_households,
                "other_cps_exact": len(covered) - n_households,
                "randomness": "seeded from the DSO's secret in the simulator; os.urandom "
                              "in a deployment",
                "exact_on_ledger": "prices, volumes, orders, pseudonymous readings and their "
                                   "feeder sums, bills: public already (docs/privacy.md)",
            },
            "dp_published": [
                {"product": p.product, "area": p.area, "day": p.day,
                 "periods": [_period(s, self._period_slots(p)) for s in p.period_starts],
                 "households": p.households, "other_cps": p.other_cps,
                 "epsilon": p.epsilon_micro / MICRO_EPSILON,
                 "published_import_wh": list(p.published_import_wh),
                 "published_export_wh": list(p.published_export_wh),
                 # the DSO's exact figures: for measuring the error only, never published
                 "true_import_wh": list(p.true_import_wh),
                 "true_export_wh": list(p.true_export_wh)} for p in pubs],
        }

    def _period_slots(self, p: Published) -> int:
        return next(x.period_slots for x in self.plan.products if x.name == p.product)

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        priv = as_map(summary.get("privacy"))
        if "dp_published" not in priv:
            return []
        return [ReportSection("dp", "Published by the DSO (differential privacy)",
                              dp_html(priv),
                              "What the ledger shows (prices, volumes, readings under "
                              "pseudonyms, their sums, bills) is exact and public already; "
                              "only what the DSO alone meters is released, with noise.")]


def dp_html(priv: Mapping[str, Any]) -> str:
    """The report's table of the DSO's release: epsilon, error, clamp, and each period."""
    dp = as_map(priv.get("dp"))
    eps = num(priv.get("epsilon_per_household_day"))
    clip = as_list(dp.get("slot_clip_wh"))

    def pct(key: str) -> str:
        v = num(priv.get(key))
        return "—" if v is None else f"{fmt(v, 1)} %"

    rows = [("ε per household and day", "—" if eps is None else
             f"{fmt(eps, 2)} (budget {fmt(num(priv.get('epsilon_budget_per_household_day')), 2)})"),
            ("error of the published figures", pct("aggregate_error_pct")),
            ("… of which clamping", pct("clipping_error_pct")),
            ("… expected from the noise", pct("expected_noise_error_pct")),
            ("mechanism", str(dp.get("mechanism", ""))),
            ("composition", str(dp.get("composition", ""))),
            ("clamp", f"{fmt(num(clip[0]) if clip else None)} … "
                      f"{fmt(num(clip[1]) if len(clip) > 1 else None)} Wh per slot, "
                      f"{fmt(num(dp.get('day_l1_wh')))} Wh per day; sensitivity "
                      f"{fmt(num(dp.get('sensitivity_wh')))} Wh"),
            ("protected", f"{fmt(num(dp.get('households_protected')))} households; "
                          f"{fmt(num(dp.get('other_cps_exact')))} other cps summed exactly"),
            ("refused (budget spent)", str(len(as_list(priv.get("dp_refused")))))]
    kv = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    body = []
    for p in as_list(priv.get("dp_published")):
        p = as_map(p)
        cols = zip(as_list(p.get("periods")), as_list(p.get("published_import_wh")),
                   as_list(p.get("true_import_wh")), as_list(p.get("published_export_wh")),
                   as_list(p.get("true_export_wh")), strict=False)
        for period, pi, ti, pe, te in cols:
            body.append(f"<tr><td>{esc(str(p.get('area', '')))} day {esc(fmt(num(p.get('day'))))}"
                        f"</td><td>{esc(str(period))}</td>"
                        + "".join(f'<td class="num">{esc(fmt((num(v) or 0) / 1000, 1))}</td>'
                                  for v in (pi, ti, pe, te)) + "</tr>")
    table = ("<table><thead><tr><th>area</th><th>period</th><th>import published kWh</th>"
             "<th>import true kWh</th><th>export published kWh</th><th>export true kWh</th>"
             f"</tr></thead><tbody>{''.join(body)}</tbody></table>") if body else ""
    return f"<table>{kv}</table>{table}"
