"""Renewable provenance in the demo (issue 16): the ledger issues 15-minute granular
certificates (GCs) at settlement; the members claim them.

* First block A: the DSO attests every member's PV (rated power = the profile's peak) and
  battery (SimBench power and energy, its round-trip efficiency) with
  ``certificates/register_devices``. Under privacy mode it registers no household's device
  (that would say who has PV); it attests ONE class for every pseudonym's stand-in cp
  instead (``certificates/pseudonym_class``: the largest PV and battery among its
  customers, the lowest efficiency), so the ledger issues under pseudonyms without
  labelling any pseudonym with its household's equipment.
* Block C of step L: each battery's sub-meter reports what it charged and discharged in
  slot L-1 (``certificates/storage_reading``, signed by the member's meter). The battery's
  share of the slot is its planned injection, less whatever the envelope or a curtailment
  took from the connection point (the battery gives way first). Under a pseudonym the
  sub-meter reports through the slot's reading key, and EVERY exporting meter reports
  (zeros without a battery): whether a report exists follows the export the reading
  already shows, so only a battery's discharge into that export tells it has one — which
  the certificate's technology must say anyway.
* Block A, once per hour (when all its slots are issued, so its import is complete): each
  member claims the GCs it holds for the hour — first into its battery for what the battery
  charged in the GCs' slot (``certificates/store``), then against its metered import in the
  hour (``certificates/cancel``). Room comes from the ledger's matching record, so an honest
  claim never fails.

The summary's ``certificates`` section and the report's provenance section are read from
the ledger's views at the end of the run: totals, each member's hourly matching score,
and the producer -> consumer flows of the GCs that were claimed.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import plotly.graph_objects as go

from gridledger.certificates import matching_by_member, score_mean
from gridledger.ledger.modules.certificates.types import MAX_ITEMS, hour_close
from gridledger.ledger.tx import TxSigner
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.clock import Step
from gridledger.sim.community import Member
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature, ReportSection
from gridledger.sim.records import RECENT_SLOTS, Delivered, RecentSlots

GRID_MIX = "grid (residual mix)"
CLAIM_LEAD_S = 1800
"""Claim an hour that is not complete yet when its window closes within this (run's end)."""
CLAIM_KINDS = ("certificates/cancel", "certificates/store", "certificates/transfer")


def solar_w(ctx: SimContext, m: Member) -> int:
    """Rated PV power of ``m``: the peak of its profile year (W)."""
    return int(ctx.model.year.pv_peak_wh[ctx.model.cp_index(m.cp)]) * 4 if "pv" in m.der else 0


def pseudonym_class(ctx: SimContext) -> dict[str, int] | None:
    """The device class the DSO attests for every pseudonym's stand-in cp (privacy mode):
    the largest PV and battery among the members it supplies, their lowest efficiency (None
    if no member has a device)."""
    pv = max((solar_w(ctx, m) for m in ctx.members), default=0)
    bats = [m.battery for m in ctx.members if m.battery is not None]
    if not pv and not bats:
        return None
    return {"solar_w": pv, "storage_w": max((b.power_wh * 4 for b in bats), default=0),
            "storage_wh": max((b.capacity_wh for b in bats), default=0),
            "efficiency_pct": min((b.efficiency_pct for b in bats), default=100)}


DEVICES_PER_TX = 128
"""Devices per ``certificates/register_devices`` (the ledger takes up to 256; ~40 bytes each
beside a 3.3 KB signature keeps a transaction under admission's 16 KiB)."""

class Certificates(Feature):
    name: ClassVar[str] = "certificates"
    threat_rows: ClassVar[tuple[str, ...]] = ("1", "6")

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.registered = False
        self.planned: dict[int, dict[str, int]] = {}
        self.battery: RecentSlots[dict[str, int]] = RecentSlots(RECENT_SLOTS)  # read a slot on
        """Slot -> cp -> battery injection (Wh, > 0 discharge) as its sub-meter measures it."""
        self.refused = 0
        self.claimed: set[int] = set()
        self.section: dict[str, Any] = {}

    # -- devices and sub-meters ----------------------------------------------------------
    def devices(self) -> list[list[Any]]:
        """The DSO's device attestations: every member metered under its own cp (under privacy
        mode a household meters under per-slot stand-in cps, which no certificate is issued
        for, so its devices are not registered: the registry would only say who has PV)."""
        out = []
        for m in sorted(self.ctx.members, key=lambda m: m.cp):
            if not self._own_cp(m, self.ctx.first):
                continue
            pv, b = solar_w(self.ctx, m), m.battery
            if pv or b is not None:
                out.append([m.cp, pv, b.power_wh * 4 if b else 0, b.capacity_wh if b else 0,
                            b.efficiency_pct if b else 100])
        return out

    def _own_cp(self, m: Member, slot: int) -> bool:
        """Whether the ledger knows ``m``'s readings of ``slot`` by its own cp."""
        return self.ctx.identities.ledger_cp(m, slot) == m.cp

    def adjust_injection(self, step: Step, planned_wh: dict[str, int]) -> None:
        self.planned[step.slot] = dict(planned_wh)

    def after_delivery(self, step: Step, delivered: Delivered) -> None:
        slot = step.slot
        plan = self.ctx.data.battery_wh.get(slot, {})
        planned = self.planned.pop(slot, {})
        out: dict[str, int] = {}
        for m in self.ctx.members:
            b = plan.get(m.cp, 0)
            if m.battery is None or not b:
                continue
            # the connection point lost (y - x) to the envelope or curtailment: the battery
            # gives way first, never beyond stopping
            y, x = delivered.actual_wh_by_cp[m.cp], planned.get(m.cp, 0)
            out[m.cp] = min(max(b + (y - x), min(0, b)), max(0, b))
        self.battery[slot] = out

    # -- transactions --------------------------------------------------------------------
    def txs_a(self, step: Step) -> Sequence[bytes]:
        ctx = self.ctx
        raws: list[bytes] = []
        if not self.registered:
            self.registered = True
            devices = self.devices()
            # registration is additive: one transaction per DEVICES_PER_TX devices (admission
            # takes 16 KiB: 1,000 members' devices are ~25 KB; up to 128, one as before)
            raws += [ctx.tx(ctx.community.dso, "certificates/register_devices",
                            {"devices": devices[i:i + DEVICES_PER_TX]})
                     for i in range(0, len(devices), DEVICES_PER_TX)]
            if ctx.sc.privacy and (pclass := pseudonym_class(ctx)) is not None:
                raws.append(ctx.tx(ctx.community.dso, "certificates/pseudonym_class", pclass))
            if raws:
                return raws
        with ctx.timed("certificates_s"):
            # each member signs its own claims; the pool makes the signatures while the
            # phase's later features run (``SimContext.txs_ahead``: the same nonces, order)
            return ctx.txs_ahead(self.claims(step.t_a))

    def txs_c(self, step: Step) -> Sequence[bytes]:
        ctx, slot = self.ctx, step.slot - 1
        flows = self.battery.get(slot, {})
        d = ctx.data.delivered.get(slot)
        items: list[tuple[TxSigner, str, dict[str, Any]]] = []
        for m in ctx.members:
            if self._own_cp(m, slot):
                if m.cp not in flows:
                    continue
            elif d is None or int(d.measurements.reported_wh_by_cp[m.cp]) <= 0:
                continue        # under a pseudonym: every exporting meter, and only those
            f = flows.get(m.cp, 0)
            items.append((ctx.identities.meter_key(m, slot), "certificates/storage_reading",
                          {"slot": slot, "charged_wh": max(0, -f), "discharged_wh": max(0, f)}))
        return ctx.txs_ahead(items)   # each sub-meter's own signature, made on the pool

    def claims(self, now: int) -> list[tuple[TxSigner, str, dict[str, Any]]]:
        """Each member's store and cancel transactions (key, kind, body: to be signed in
        order) for the GCs it holds in open hours, once per hour: when every slot of the
        hour is issued (its import is complete), or when the hour's claim window is about
        to close."""
        ctx = self.ctx
        led = ctx.ledger
        cfg = led.certificates("config")
        if not cfg["enabled"]:
            return []
        s, settle, window = cfg["slot_seconds"], cfg["settle_window_s"], cfg["claim_window_s"]
        raws: list[tuple[TxSigner, str, dict[str, Any]]] = []
        for hour in led.certificates("hours")["open"]:
            close = hour_close(hour, s, settle, window)
            if hour in self.claimed or close <= now:
                continue
            info = led.certificates(f"hour/{hour}")
            if info["issued"] != info["slots"] and close - now > CLAIM_LEAD_S:
                continue
            self.claimed.add(hour)
            room = {bytes(r["address"]): int(r["residual_wh"]) for r in info["matching"]}
            held: dict[bytes, list[dict[str, Any]]] = {}
            for slot in info["issued"]:
                for b in led.certificates(f"bundles/{slot}"):
                    if b["status"] == "active":
                        held.setdefault(bytes(b["owner"]), []).append(b)
            for owner in sorted(held):
                m = ctx.identities.owner(owner)
                if m is not None and room.get(owner, 0) > 0:
                    raws += self._claim(m, owner, held[owner], room[owner])
        return raws

    def _claim(self, m: Member, owner: bytes, bundles: list[dict[str, Any]],
               room: int) -> list[tuple[TxSigner, str, dict[str, Any]]]:
        """Store into the battery what it charged in each bundle's slot, then cancel against
        the hour's import, never beyond ``room`` (the import nothing covers yet)."""
        ctx = self.ctx
        stores: list[list[int]] = []
        cancels: list[list[int]] = []
        stored: dict[int, int] = {}
        for b in sorted(bundles, key=lambda b: (b["slot"], b["start"])):
            if len(stores) == MAX_ITEMS or len(cancels) == MAX_ITEMS or room <= 0:
                break            # the rest expires (a store splits the bundle a cancel names)
            slot, start, size = int(b["slot"]), int(b["start"]), int(b["energy_wh"])
            # a charge stored under a per-slot pseudonym could never back a later discharge
            # (that happens under another pseudonym): store only under the own cp
            if m.battery is not None and self._own_cp(m, slot):
                sr = ctx.ledger.certificates(f"storage_reading/{slot}/{m.cp}")
                charge = 0 if sr is None else sr["charged_wh"] - sr["stored_wh"] - stored.get(slot, 0)
                n = min(size, charge, room)
                if n > 0:
                    stores.append([slot, start, n])
                    stored[slot] = stored.get(slot, 0) + n
                    room -= n
                    start, size = start + n, size - n
            n = min(size, room)
            if n > 0:
                cancels.append([slot, start, n])
                room -= n
        key = ctx.identities.trading_key(m, int(bundles[0]["slot"]))
        if key.address != owner:
            return []
        out: list[tuple[TxSigner, str, dict[str, Any]]] = []
        if stores:
            out.append((key, "certificates/store", {"items": stores}))
        if cancels:
            out.append((key, "certificates/cancel", {"items": cancels}))
        return out

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        info = self.ctx.data.tx_info
        for r in fb.result.receipts:
            if not r.ok:
                tx = info.get(r.tx_hash)
                if tx is not None and tx.kind in CLAIM_KINDS:
                    self.refused += 1

    # -- results -------------------------------------------------------------------------
    def finish(self) -> None:
        ctx = self.ctx
        led = ctx.ledger
        totals = led.certificates("totals")
        issued_slots = {int(r["slot"]) for r in led.certificates("slots")}
        ids = ctx.identities
        readings = [e for e in ctx.data.events_of("reading")
                    if e["slot"] in issued_slots and ids.owner_of_cp(e["cp"]) is not None]
        export = sum(int(e["export_wh"]) for e in readings)
        unflagged = sum(int(e["export_wh"]) for e in readings
                        if e["cp"] not in ctx.data.flagged.get(e["slot"], set()))
        matching = led.certificates("matching")
        # a household's pseudonyms' rows are its own (the simulator knows whose they are)
        by_member = matching_by_member(
            {**r, "address": o.address if (o := ids.owner(bytes(r["address"]))) else r["address"]}
            for r in matching)
        names = {m.address: m.name for m in ctx.members}
        members: list[dict[str, Any]] = []
        for addr, mm in by_member.items():
            owner = ids.owner(addr)
            members.append({"name": owner.name if owner else addr.hex()[:12],
                            "consumption_wh": mm.consumption_wh, "cancelled_wh": mm.cancelled_wh,
                            "stored_wh": mm.stored_wh, "residual_wh": mm.residual_wh,
                            "score": round(mm.score, 4)})
        flows: dict[tuple[str, str], int] = {}
        for b in led.certificates("bundles"):
            if b["status"] != "cancelled" or b.get("purpose") != "consumption":
                continue
            producer = ids.owner_of_cp(b["cp"])
            consumer = ids.owner(bytes(b["owner"]))
            k = (producer.name if producer else b["cp"],
                 consumer.name if consumer else names.get(bytes(b["owner"]), "other"))
            flows[k] = flows.get(k, 0) + int(b["energy_wh"])
        for row in members:
            if int(row["residual_wh"]) > 0:
                flows[(GRID_MIX, str(row["name"]))] = int(row["residual_wh"])
        hours: dict[int, list[int]] = {}
        for r in matching:
            h = hours.setdefault(int(r["hour"]), [0, 0])
            h[0] += int(r["consumption_wh"])
            h[1] += int(r["cancelled_wh"])
        self.section = {
            "issued_wh": totals["issued_wh"], "transferred_wh": totals["transferred_wh"],
            "cancelled_wh": totals["cancelled_wh"], "residual_wh": totals["residual_wh"],
            "matching_score_mean": round(score_mean(by_member.values()), 4),
            "stored_wh": totals["stored_wh"], "storage_issued_wh": totals["storage_issued_wh"],
            "expired_wh": totals["expired_wh"], "withheld_wh": totals["withheld_wh"],
            "capped_wh": totals["capped_wh"], "uncertified_wh": totals["uncertified_wh"],
            "consumption_wh": totals["consumption_wh"], "metered_export_wh": export,
            "unflagged_export_wh": unflagged,
            "issued_within_export": totals["issued_wh"] <= unflagged <= export,
            "devices": len(led.certificates("devices")),
            "pseudonym_class": led.certificates("pseudonym_class"),
            "members": sorted(members, key=lambda r: r["name"]),
            "flows": [{"from": a, "to": b, "energy_wh": wh}
                      for (a, b), wh in sorted(flows.items())],
            "hours": [{"hour": h, "label": ctx.label(h * 4), "consumption_wh": v[0],
                       "cancelled_wh": v[1]} for h, v in sorted(hours.items())],
        }

    def summary(self) -> dict[str, Any]:
        return {"certificates": self.section} if self.section else {}

    def detections(self) -> dict[str, int]:
        adm = self.ctx.data.stats.admission_rejected
        withheld = [e for e in self.ctx.data.events_of("certificates_withheld")
                    if e["reason"] == "flagged"]
        return {"certificate_claims_refused": self.refused + sum(
                    n for rule, n in adm.items() if rule.startswith("certificate-")),
                "certificates_withheld_flagged": len(withheld)}

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        c = summary.get("certificates")
        if not isinstance(c, Mapping) or not c:
            return []
        return [ReportSection("provenance", "Renewable provenance (granular certificates)",
                              _provenance_html(c), _NOTE)]


_NOTE = ("15-minute granular certificates (EnergyTag model) issued by the validator quorum "
         "from settled, unflagged readings; P2P trades transfer them for delivered energy; "
         "members cancel them against their metered import in the same hour. Score = share "
         "of a member's import covered by certificates cancelled in the same hour (24/7).")


def _kwh(wh: Any) -> str:
    return f"{int(wh) / 1000:,.1f} kWh"


def _provenance_html(c: Mapping[str, Any]) -> str:
    e = html.escape
    kv = [("issued", _kwh(c.get("issued_wh", 0))),
          ("community metered export", _kwh(c.get("metered_export_wh", 0))),
          ("transferred with P2P trades", _kwh(c.get("transferred_wh", 0))),
          ("cancelled against consumption", _kwh(c.get("cancelled_wh", 0))),
          ("stored in batteries / discharged with origin",
           f"{_kwh(c.get('stored_wh', 0))} / {_kwh(c.get('storage_issued_wh', 0))}"),
          ("withheld (flagged readings)", _kwh(c.get("withheld_wh", 0))),
          ("expired unclaimed", _kwh(c.get("expired_wh", 0))),
          ("residual mix (uncovered import)", _kwh(c.get("residual_wh", 0))),
          ("mean hourly matching score", f"{100 * float(c.get('matching_score_mean', 0)):.1f} %")]
    facts = "".join(f'<tr><td>{e(k)}</td><td class="num">{e(v)}</td></tr>' for k, v in kv)
    rows = "".join(
        f'<tr><td>{e(str(m["name"]))}</td><td class="num">{e(_kwh(m["consumption_wh"]))}</td>'
        f'<td class="num">{e(_kwh(m["cancelled_wh"]))}</td>'
        f'<td class="num">{100 * float(m["score"]):.1f} %</td></tr>'
        for m in c.get("members", []))
    table = ('<table><thead><tr><th>member</th><th class="num">import</th>'
             '<th class="num">claimed</th><th class="num">hourly score</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    return (f'<div class="cols"><div><table><tbody>{facts}</tbody></table>'
            f"{_hours_html(c.get('hours', []))}</div><div>{table}</div></div>"
            f"{_flow_html(c.get('flows', []))}")


def _hours_html(hours: list[Mapping[str, Any]]) -> str:
    """The community's import and claimed certificates per hour (24/7 matching)."""
    if not hours:
        return ""
    x = [str(h["label"]) for h in hours]
    fig = go.Figure()
    fig.add_bar(x=x, y=[int(h["consumption_wh"]) / 1000 for h in hours], name="import",
                marker_color="#9aa5b1")
    fig.add_bar(x=x, y=[int(h["cancelled_wh"]) / 1000 for h in hours],
                name="covered by certificates of the hour", marker_color="#009E73")
    fig.update_layout(barmode="overlay", height=320, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      yaxis_title="kWh (community, per hour)",
                      legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"})
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id="fig-matching"))


def _flow_html(flows: list[Mapping[str, Any]]) -> str:
    """Producer -> consumer flows of claimed certificates (and the residual mix) as a
    Sankey diagram."""
    if not flows:
        return '<p class="muted">No certificate was claimed.</p>'
    left = sorted({str(f["from"]) for f in flows})
    right = sorted({str(f["to"]) for f in flows})
    labels = left + [f"{r} " for r in right]      # a member can produce and consume
    ix = {n: i for i, n in enumerate(left)}
    jx = {n: len(left) + i for i, n in enumerate(right)}
    fig = go.Figure(go.Sankey(
        node={"label": labels, "pad": 8, "thickness": 12,
              "color": ["#9aa5b1" if n == GRID_MIX else "#009E73" for n in left]
              + ["#0072B2"] * len(right)},
        link={"source": [ix[str(f["from"])] for f in flows],
              "target": [jx[str(f["to"])] for f in flows],
              "value": [int(f["energy_wh"]) / 1000 for f in flows],
              "color": ["rgba(154,165,177,0.35)" if f["from"] == GRID_MIX
                        else "rgba(0,158,115,0.45)" for f in flows]}))
    fig.update_layout(height=max(360, 16 * len(right)), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title={"text": "Producer → consumer (kWh of claimed certificates)",
                             "font": {"size": 14}})
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id="fig-provenance"))
