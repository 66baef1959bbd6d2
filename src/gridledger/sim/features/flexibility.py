"""Flexibility (issue 15): the DSO buys it when its forecast power flow predicts a violation,
members' EV chargers and heat pumps sell it, the ledger settles it on the meters.

Per trading step L (``Step.t_a`` = 900 L - 450):

* block A: the DSO runs a power flow on its forecast of slot T = L + 3 (households' PV -
  load, outsiders' profiles, flexibility already ordered and its rebound). A violation
  becomes a ``flex/request`` for T (``flex.planner.predict``: the cps downstream of it,
  direction, energy with a margin; gate at 900 (T - 2); price cap = the retail tariff,
  the value of the energy curtailment would cut; baseline ``declared`` capped at the DSO's
  forecast for the cp, the USEF D-prognosis); block A also carries the order of the
  request for slot L + 1 (``planner.order_for``: the merit-order selection an AC power flow
  finds free of violations; validators recompute the merit order).
* block B: members without a home battery (whose baseline is the forecast) offer their EV
  charger (defer charging: the deferred energy is charged 12 slots later, after the
  evening peak) or heat pump (the building's thermal inertia lets it coast one slot and
  recover over an hour once the slots already requested have passed), at a seeded price
  below the cap, declaring the DSO's own forecast as their baseline.
* delivery: ``adjust_injection`` applies what was ordered (honest devices do it) and its
  rebound; the DSO's envelopes for later slots include both (``features.dso``).
* block C: each activated member reports its delivery (a claim; the ledger pays on meters).

``summary.flexibility`` = {requests, offers, activated_wh, delivered_wh, paid_micro,
penalties_micro, violations, curtailed_wh, dso_cost_micro, curtailed_value_micro,
member_income_micro} and the same day without flexibility, slot by slot (every slot where
flexibility or its rebound moved a plan is delivered a second time without it: envelopes,
power flow and curtailment rule as ``features.delivery``): violations_without,
curtailed_wh_without, curtailed_value_without_micro.
"""

from __future__ import annotations

import html
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gridledger.crypto.hashing import tagged_hash
from gridledger.flex import MeritOffer
from gridledger.flex.planner import Prediction, order_for, predict
from gridledger.grid import GridLimits, GridModel, compute_envelope_report, deliver_schedule
from gridledger.grid.area_workers import area_workers
from gridledger.ledger.modules.flex.types import MAX_CPS
from gridledger.ledger.tx import decode_tx
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.beside import Ahead
from gridledger.sim.clock import SLOT_S, Step
from gridledger.sim.community import Member, forecast_wh_by_cp, household_net_wh
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature, ReportSection
from gridledger.sim.records import RecentSlots

LOOKAHEAD = 3            # slots between the request and its delivery slot
EV_REBOUND_SLOTS = 12    # deferred EV charging resumes 3 h later
HP_RECOVERY_SLOTS = 4    # a heat pump recovers a coasted slot over one hour ...
HP_RECOVERY_AFTER = LOOKAHEAD + 1
"""... starting after the slots the DSO has already requested (the building's thermal
inertia: ~0.5 K of drift over an hour), so no reference already posted moves."""
HP_SHARE_PCT = 40        # at most this share of a cp's import is its heat pump's


def request_cps(eligible: Iterable[str], forecast_wh: Mapping[str, int]) -> list[str]:
    """The cps a flexibility request names, sorted: every eligible one, or — past the
    ledger's ``MAX_CPS`` (an MV transformer's area can hold 1,000 members) — the ``MAX_CPS``
    forecast to move the most energy (ties by cp)."""
    cps = sorted(eligible)
    if len(cps) > MAX_CPS:
        cps = sorted(sorted(cps, key=lambda cp: (-abs(forecast_wh[cp]), cp))[:MAX_CPS])
    return cps


@dataclass
class Posted:
    """A request the DSO posted: its id, slot, prediction and the offers made to it."""

    rid: bytes
    slot: int
    pred: Prediction
    forecast: dict[str, int]
    cps: dict[str, Member]
    ledger_cps: dict[str, str]
    """Household cp -> the cp the request names: the household's own, or under privacy
    mode its stand-in cp for the slot (``identities.ledger_cp``)."""


_BESIDE_MODEL: list[GridModel] = []
"""The model the DSO's forecast worker holds (set in the worker as it starts)."""


def _hold_model(model: GridModel) -> None:
    _BESIDE_MODEL.append(model)


def _predict_beside(slot: int, forecast_wh: dict[str, int], limits: GridLimits
                    ) -> Prediction | None:
    """``predict`` on the worker's model."""
    return predict(_BESIDE_MODEL[-1], slot, forecast_wh, limits)


class Flexibility(Feature):
    name: ClassVar[str] = "flexibility"
    threat_rows: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.devices = _devices(ctx)
        self.posted: RecentSlots[Posted] = RecentSlots()  # read until its delivery
        self.activated: RecentSlots[dict[str, tuple[bytes, bytes, int]]] = RecentSlots()
        """slot -> cp -> (request, offer, activated Wh)."""
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.rng = random.Random(f"flexibility/{ctx.sc.seed}")
        self.without: dict[int, tuple[int, int]] = {}
        """slot -> (violations, curtailed Wh) had the DSO bought no flexibility for it."""
        self.pseudonym_sanctions: dict[int, dict[bytes, int]] = {}
        """member index -> pseudonym -> the ``non_delivery`` reputation it lost, until an
        opening carries it to the member's own score (privacy mode)."""
        self.carried: dict[bytes, str] = {}
        """Opened pseudonyms (their losses now reach the owner's score) -> owner's name."""
        self.owners_sanctioned: dict[str, int] = {}
        """member name -> the score it took on the ledger from its non-delivering
        pseudonyms once the trustees opened them (``pseudonym_penalty``)."""
        self.excluded: set[str] = set()
        """Households the DSO stopped naming for their pseudonyms' non-delivery."""
        self.ahead: Ahead[Prediction | None] = Ahead(_hold_model, (ctx.model,), ctx.timings,
                                                     "flex_beside_s")
        """The next step's forecast power flow (``predict``), started in the DSO's forecast
        worker a step ahead."""

    # -- the DSO ------------------------------------------------------------------------------
    def forecast(self, slot: int) -> dict[str, int]:
        """The DSO's forecast net injection of every cp in ``slot`` (Wh, > 0 export)."""
        ctx = self.ctx
        fc = ctx.model.forecast_wh_by_cp(slot)
        adj = ctx.data.flex_adjust_wh.get(slot, {})
        out = {}
        for cp in ctx.model.cp_ids:
            base = household_net_wh(ctx.model, cp, slot) if cp in ctx.by_cp else int(fc[cp])
            out[cp] = base + adj.get(cp, 0)
        return out

    def txs_a(self, step: Step) -> list[bytes]:
        ctx = self.ctx
        if not ctx.sc.flexibility or not step.trading:
            return []
        out: list[bytes] = []
        posted = self.posted.get(step.slot + 1)
        if posted is not None:
            out += self._order(posted)
        target = step.slot + LOOKAHEAD
        if target in ctx.trading_slots():
            out += self._request(target)
        self._predict_ahead(target + 1)
        return out

    def _predict_ahead(self, slot: int) -> None:
        """Start the next step's forecast power flow in the worker: the forecast of ``slot``
        (the next step's target) is final now — an order moves its own slot, 4-7 slots
        after it (heat pumps' recovery) and 12 (EVs' rebound), so the next step's order
        (made before its request, for the slot after the next) moves slots 1, 5-8 and 13
        after the next step, never its target 3 on — so the worker runs it beside this
        step's blocks; the next ``_request`` uses it if the forecast is still the same
        (issue 17: the main core's own work). Not on a network with area workers (the
        model holds this process's pipes to them, as the DSO's worker's)."""
        ctx = self.ctx
        if slot not in ctx.trading_slots() or not self.ahead.available() \
                or area_workers(ctx.model) is not None:
            return
        forecast = self.forecast(slot)
        self.ahead.start(slot, forecast, _predict_beside, slot, forecast, ctx.limits)

    def _request(self, slot: int) -> list[bytes]:
        ctx = self.ctx
        forecast = self.forecast(slot)
        with ctx.timed("grid_s"):
            done, pred = self.ahead.take(slot, forecast)
            if not done:
                pred = predict(ctx.model, slot, forecast, ctx.limits)
        if pred is None:
            return []
        cps = {cp: ctx.by_cp[cp] for cp in pred.cps
               if cp in ctx.by_cp and self.devices.get(cp) and ctx.by_cp[cp].battery is None
               and not self._sanctioned(ctx.by_cp[cp])}
        if not cps:
            return []
        cps = {cp: cps[cp] for cp in request_cps(cps, forecast)}
        cap = ctx.params.retail_import_micro_per_kwh
        sign = 1 if pred.direction == "up" else -1
        # privacy mode: the DSO attested each meter's pseudonym bindings, so it names every
        # eligible household by its stand-in cp for the slot (its pseudonym offers from it),
        # and caps the entry at the device's power itself: a stand-in cp carries no device
        # record (a kind and power per pseudonym would link a household's pseudonyms)
        lcps = {cp: ctx.identities.ledger_cp(m, slot) for cp, m in cps.items()}
        elig = [[lcps[cp], 1_000_000, [min(self.devices[cp][0][1], max(0, -sign * forecast[cp]))],
                 [forecast[cp]]] for cp in sorted(cps)]
        body = {"area": pred.violation.element, "violation":
                f"{pred.violation.kind} {pred.violation.element}"[:64],
                "evidence": tagged_hash("gl/flex-forecast", repr(
                    (slot, pred.violation, round(pred.report.max_line_loading_pct, 6))).encode()),
                "first_slot": slot, "energies_wh": [pred.need_wh], "direction": pred.direction,
                "price_cap_micro_per_kwh": cap, "budget_micro": -(-pred.need_wh * cap // 1000),
                "baseline": "declared", "reference_method": "dso-forecast",
                "gate_s": SLOT_S * (slot - 2), "cps": elig}
        raw = ctx.tx(ctx.community.dso, "flex/request", body)
        self.posted[slot] = Posted(decode_tx(raw).id, slot, pred, forecast, cps, lcps)
        return [raw]

    def _sanctioned(self, m: Member) -> bool:
        """Privacy mode: each slot's pseudonym starts at a neutral score, so the ledger's
        ``flex-suspended`` never catches a household that keeps failing under fresh ones.
        The DSO attested their meters, so it knows whose they are: it names no household
        whose pseudonyms' ``non_delivery`` losses (energy sold or flexibility ordered and not
        delivered) would suspend it were they its own (the
        tier the ledger applies in clear mode; the score stays on each pseudonym until the
        trustees open it on the ledger's ``flex`` dispute, which carries it to the owner — a
        request or more later, and only into the tickets of the epochs it joins next)."""
        lost = sum(self.pseudonym_sanctions.get(m.index, {}).values())
        if not lost:
            return False
        out = self.ctx.ledger.reputation(m.address) + lost < self.ctx.params.rep_suspend_below
        if out:
            self.excluded.add(m.name)
        return out

    def _order(self, p: Posted) -> list[bytes]:
        ctx = self.ctx
        offers = ctx.ledger.flex_offers(p.rid)
        if not offers:
            return []
        merit = [MeritOffer(bytes(o["id"]), 1_000_000, int(o["price_micro_per_kwh"]),
                            tuple(int(e) for e in o["energies_wh"])) for o in offers]
        # the household behind each offer's cp (the DSO's own knowledge under privacy mode)
        household = {lcp: cp for cp, lcp in p.ledger_cps.items()}
        cps = [household[str(o["cp"])] for o in offers]
        with ctx.timed("grid_s"):
            eff, acts, report = order_for(ctx.model, p.slot, self.forecast(p.slot), ctx.limits,
                                          merit, cps, p.pred.direction, p.pred.need_wh)
        sign = 1 if p.pred.direction == "up" else -1
        chosen = self.activated.setdefault(p.slot, {})
        for o, cp, a in zip(offers, cps, acts, strict=True):
            if not a[0]:
                continue
            wh = a[0]
            chosen[cp] = (p.rid, bytes(o["id"]), wh)
            self._adjust(p.slot, cp, sign * wh)
            if self.devices[cp][0][0] == "ev":
                self._adjust(p.slot + EV_REBOUND_SLOTS, cp, -sign * wh)
            else:
                for k in range(HP_RECOVERY_SLOTS):
                    share = wh // HP_RECOVERY_SLOTS + (1 if k < wh % HP_RECOVERY_SLOTS else 0)
                    self._adjust(p.slot + HP_RECOVERY_AFTER + k, cp, -sign * share)
        evidence = tagged_hash("gl/flex-order", repr(
            (p.slot, eff, round(report.max_line_loading_pct, 6), len(report.violations))).encode())
        return [ctx.tx(ctx.community.dso, "flex/order", {
            "request": p.rid, "effective_wh": [eff], "evidence": evidence,
            "activations": [[bytes(o["id"]), [a[0]]] for o, a in zip(offers, acts, strict=True)
                            if a[0]]})]

    def _adjust(self, slot: int, cp: str, wh: int) -> None:
        row = self.ctx.data.flex_adjust_wh.setdefault(slot, {})
        row[cp] = row.get(cp, 0) + wh

    # -- members ------------------------------------------------------------------------------
    def txs_b(self, step: Step) -> list[bytes]:
        p = self.posted.get(step.slot + LOOKAHEAD)
        if p is None:
            return []
        ctx = self.ctx
        out = []
        cap = ctx.params.retail_import_micro_per_kwh
        for cp in sorted(p.cps):
            m = p.cps[cp]
            if ctx.identities.ledger_cp(m, p.slot) != p.ledger_cps[cp]:
                continue   # the identity the request named is not the one it trades under
            device, power = self.devices[cp][0]
            need = max(0, -p.forecast[cp]) if p.pred.direction == "up" else max(0, p.forecast[cp])
            if device == "heat-pump":
                need = need * HP_SHARE_PCT // 100
            energy = min(power, need)
            if energy <= 0:
                continue
            rng = random.Random(f"flex-price/{ctx.sc.seed}/{m.cp}")
            base = 40_000 if device == "ev" else 90_000    # deferring a car < a cooler house
            price = min(cap, base + rng.randrange(0, 60_000))
            # under a pseudonym the kind stays off the ledger (it would narrow the pseudonym
            # to the households with that device): "load", capped by the DSO's max_wh
            kind = device if p.ledger_cps[cp] == cp else "load"
            body: dict[str, Any] = {"request": p.rid, "device": kind,
                                    "price_micro_per_kwh": price, "energies_wh": [energy],
                                    "baseline_wh": [p.forecast[cp]]}
            for a in ctx.attacks:
                body = a.flex_offer(m, body)
            out.append(ctx.tx(ctx.identities.trading_key(m, p.slot), "flex/offer", body))
        return out

    def adjust_injection(self, step: Step, planned_wh: dict[str, int]) -> None:
        adjust = self.ctx.data.flex_adjust_wh.get(step.slot, {})
        if adjust:
            self._without(step.slot, dict(planned_wh))
        for cp, wh in adjust.items():
            if cp in planned_wh:
                planned_wh[cp] += wh

    def _without(self, slot: int, planned_wh: dict[str, int]) -> None:
        """The same slot delivered without the flexibility ordered for it (nor its rebound):
        the envelopes the DSO publishes when it buys none — computed, as ``features.dso``
        does, on its forecast (``forecast_wh_by_cp``: members PV - load, outsiders their
        profile) without the flexibility adjustment — and the same power flow check and
        curtailment rule as ``features.delivery``: the report's "without flexibility".

        (Until the ninth session the envelopes came from the model's own profiles, storage
        included, so the "without" figures mixed flexibility's effect with the difference
        between those profiles and the DSO's forecast.)"""
        ctx = self.ctx
        with ctx.timed("flex_counterfactual_s"):
            forecast = forecast_wh_by_cp(ctx.model, ctx.by_cp, slot)
            envelopes = compute_envelope_report(ctx.model, slot, forecast_wh_by_cp=forecast)
            done = deliver_schedule(ctx.model, slot, planned_wh, envelopes=envelopes,
                                    limits=ctx.limits)
        self.without[slot] = (len(done.report.violations), done.total_curtailed_wh)

    def txs_c(self, step: Step) -> list[bytes]:
        slot = step.slot - 1
        ctx = self.ctx
        out = []
        for cp, (rid, oid, wh) in sorted(self.activated.get(slot, {}).items()):
            m = ctx.by_cp[cp]
            out.append(ctx.tx(ctx.identities.trading_key(m, slot), "flex/report", {
                "request": rid, "offer": oid, "slot": slot, "delivered_wh": wh}))
        return out

    # -- results ----------------------------------------------------------------------------
    def finish(self) -> None:
        self.ahead.close()

    def run_ended(self, summary: dict[str, Any] | None) -> None:
        self.ahead.close()

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for e in events:
            t = str(e.get("type", ""))
            if t.startswith("flex_") or t in ("baseline_capped", "claim_rejected"):
                self.events.setdefault(t, []).append(e)
            elif t == "reputation":
                self._reputation(e)

    def _reputation(self, e: dict[str, Any]) -> None:
        """A pseudonym's ``non_delivery`` counts against its household until an opening
        carries the pseudonym's loss to the household's own score (then it is there)."""
        addr = bytes(e["addr"])
        if e.get("reason") == "non_delivery" and addr not in self.carried:
            owner = self.ctx.identities.owner(addr)
            if owner is not None and owner.address != addr:
                lost = self.pseudonym_sanctions.setdefault(owner.index, {})
                lost[addr] = lost.get(addr, 0) + int(e["delta"])
        elif e.get("reason") == "pseudonym_penalty":
            ps = bytes(e["pseudonym"])
            owner = self.ctx.identities.owner(ps)
            if owner is not None:
                self.carried[ps] = owner.name
                if self.pseudonym_sanctions.get(owner.index, {}).pop(ps, None) is not None:
                    self.owners_sanctioned[owner.name] = (
                        self.owners_sanctioned.get(owner.name, 0) + int(e["delta"]))

    def summary(self) -> dict[str, Any]:
        ctx = self.ctx
        ev = self.events
        recs = [ctx.data.slots[s] for s in sorted(ctx.data.slots)]
        curtailed = sum(r.curtailed_wh for r in recs)
        settled = ev.get("flex_settled", [])
        requested = ev.get("flex_requested", [])
        income: dict[str, int] = {}
        for s in settled:
            owner = ctx.identities.owner(bytes(s["member"]))   # a pseudonym's: its household
            n = owner.name if owner is not None else bytes(s["member"]).hex()[:12]
            income[n] = income.get(n, 0) + int(s["paid_micro"]) - int(s["penalty_micro"])
        paid = sum(int(s["paid_micro"]) for s in settled)
        penalties = sum(int(s["penalty_micro"]) for s in settled)
        retail = ctx.params.retail_import_micro_per_kwh
        without = [self.without.get(s, (r.violations, r.curtailed_wh))
                   for s, r in sorted(ctx.data.slots.items())]
        curtailed_without = sum(c for _, c in without)
        return {"flexibility": {
            "enabled": ctx.sc.flexibility,
            "idle": "" if ctx.sc.flexibility else "the DSO buys no flexibility (--flexibility off)",
            "requests": len(ev.get("flex_requested", [])),
            "offers": len(ev.get("flex_offered", [])),
            "orders": len(ev.get("flex_ordered", [])),
            "activated_wh": sum(sum(int(x) for x in e["activated_wh"])
                                for e in ev.get("flex_activated", [])),
            "delivered_wh": sum(int(e["delivered_wh"]) for e in ev.get("flex_delivery", [])),
            "paid_micro": paid, "penalties_micro": penalties,
            "dso_cost_micro": paid - penalties,
            "violations": sum(r.violations for r in recs),
            "curtailed_wh": curtailed,
            "curtailed_value_micro": curtailed * retail // 1000,
            "violations_without": sum(v for v, _ in without),
            "curtailed_wh_without": curtailed_without,
            "curtailed_value_without_micro": curtailed_without * retail // 1000,
            "baselines_capped": len(ev.get("baseline_capped", [])),
            "claims_rejected": len(ev.get("claim_rejected", [])),
            "households_excluded": sorted(self.excluded),
            # privacy mode: the ledger's own sanction, once the trustees opened a pseudonym
            # on its ``flex`` dispute (score delta the household took from it)
            "owners_sanctioned": dict(sorted(self.owners_sanctioned.items())),
            # being named says "downstream of the congestion, with a device": under privacy
            # mode the anonymity set a request leaves its pseudonyms, of the members' one each
            "named_cps_per_request": round(sum(int(e["cps"]) for e in requested)
                                           / max(1, len(requested)), 1),
            "members": len(ctx.members),
            "member_income_micro": dict(sorted(income.items()))}}

    def detections(self) -> dict[str, int]:
        return {"flex_baselines_capped": len(self.events.get("baseline_capped", [])),
                "flex_claims_rejected": len(self.events.get("claim_rejected", []))}

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        f = summary.get("flexibility")
        if not isinstance(f, Mapping) or not f:
            return []
        return [ReportSection("flexibility", "Flexibility (USEF request, offer, order)",
                              _flex_html(f), _NOTE)]


_NOTE = ("The DSO requests flexibility where its forecast power flow breaks a limit; members' "
         "EV chargers and heat pumps offer; the merit order checked by an AC power flow is "
         "ordered; the ledger pays delivery measured by the meters against the DSO's "
         "forecast. Curtailed value = curtailed energy at the retail tariff. \"Without\" = "
         "the same slots delivered again without the flexibility ordered (envelopes, power "
         "flow, curtailment rule).")


def _flex_html(f: Mapping[str, Any]) -> str:
    e = html.escape

    def kwh(wh: Any) -> str:
        return f"{int(wh) / 1000:,.1f} kWh"

    def units(micro: Any) -> str:
        return f"{int(micro) / 1e6:,.2f}"

    on = bool(f.get("enabled"))
    compare = on and "curtailed_wh_without" in f

    def pair(v: str, without: str, fmt: Callable[[Any], str] = str) -> str:
        if not compare:
            return fmt(f.get(v, 0))
        return f"{fmt(f.get(v, 0))} (without: {fmt(f.get(without, 0))})"

    rows = [("flexibility", "on" if on else "off"),
            ("requests / offers / orders",
             f"{f.get('requests', 0)} / {f.get('offers', 0)} / {f.get('orders', 0)}"),
            ("energy shifted: activated / delivered",
             f"{kwh(f.get('activated_wh', 0))} / {kwh(f.get('delivered_wh', 0))}"),
            ("grid-limit violations", pair("violations", "violations_without")),
            ("curtailed energy", pair("curtailed_wh", "curtailed_wh_without", kwh)),
            ("DSO paid for flexibility", units(f.get("paid_micro", 0))),
            ("DSO's cost of flexibility (paid - penalties)", units(f.get("dso_cost_micro", 0))),
            ("value of the curtailed energy at retail",
             pair("curtailed_value_micro", "curtailed_value_without_micro", units)),
            ("penalties (deposits forfeited)", units(f.get("penalties_micro", 0))),
            ("baselines capped / claims rejected",
             f"{f.get('baselines_capped', 0)} / {f.get('claims_rejected', 0)}")]
    excluded, sanctioned = f.get("households_excluded") or [], f.get("owners_sanctioned") or {}
    if excluded or sanctioned:   # privacy mode: how non-delivery reached the household
        rows.append(("non-delivery under pseudonyms: households the DSO stopped naming / "
                     "owners the ledger sanctioned (score)",
                     f"{', '.join(map(str, excluded)) or '–'} / "
                     f"{', '.join(f'{n} ({d:+d})' for n, d in sorted(sanctioned.items())) or '–'}"))
    facts = "".join(f'<tr><td>{e(k)}</td><td class="num">{e(v)}</td></tr>' for k, v in rows)
    income = f.get("member_income_micro") or {}
    members = "".join(f'<tr><td>{e(str(n))}</td><td class="num">{e(units(v))}</td></tr>'
                      for n, v in sorted(income.items()))
    out = f"<table>{facts}</table>"
    if f.get("idle"):
        out = f"<p>Idle: {e(str(f['idle']))}.</p>" + out
    if members:
        out += ("<h3>Flexibility income per member (paid - penalties)</h3>"
                f"<table><tr><th>member</th><th>income</th></tr>{members}</table>")
    return out


def _devices(ctx: SimContext) -> dict[str, list[tuple[str, int]]]:
    """cp -> [(device, Wh per slot)] as the genesis registered them (EVs first)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for cp, device, power in ctx.community.genesis.doc.get("flex", {}).get("resources", []):
        out.setdefault(cp, []).append((device, int(power)))
    for v in out.values():
        v.sort(key=lambda d: (d[0] != "ev", d[0]))
    return out
