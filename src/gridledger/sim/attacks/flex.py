"""``fake-flexibility`` (issue 15): a member sells flexibility it never delivers.

The attacker offers its EV charger's flexibility just below every honest price (so the
merit order always activates it), declares a baseline three times its real consumption
(so that, measured against it, its ordinary consumption looks like a large reduction),
does nothing and reports full delivery: its charger keeps charging at its usual power, the
envelope the DSO tightened for the order notwithstanding (envelopes are kept by the site's
own charger, which the attacker controls), so its meter shows no reduction beyond the
meters' own error against the DSO's forecast.

Defence: the baseline is capped at the DSO's reference for the cp (a declaration beyond the
band is a fault, ``baseline_capped``) and payment is on the meter, never on the claim
(``claim_rejected``); the shortfall costs its deposit and reputation, and once suspended
it offers nothing more (``flex-suspended``). Detected = those
events for the attacker; loss = what the DSO paid it beyond what its metered delivery
earns against its honest baseline (the DSO's forecast it should have declared), i.e. money
paid for flexibility that never happened.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from gridledger.flex.planner import predict
from gridledger.grid import SLOTS_PER_DAY
from gridledger.grid.envelopes import Envelope
from gridledger.sim.attack_base import Attack
from gridledger.sim.community import Member, household_net_wh

INFLATE = 3
UNDERCUT_MICRO_PER_KWH = 1_000
CHEAPEST_HONEST_MICRO_PER_KWH = 40_000   # honest EV offers start here (features.flexibility)
PEAK_SLOT_OF_DAY = 72                    # 18:00


class FakeFlexibility(Attack):
    name: ClassVar[str] = "fake-flexibility"
    threat: ClassVar[str] = "6 market attacks (fake flexibility)"
    defence: ClassVar[str] = (
        "baseline capped at the DSO's reference (implausible declarations sanctioned); "
        "delivery paid on signed meter readings, never on the member's claim; deposit "
        "and reputation for the shortfall")
    window = (0.70, 0.875)

    def setup(self) -> None:
        eng = self.eng
        res = eng.community.genesis.doc.get("flex", {}).get("resources", [])
        evs = {cp for cp, device, _ in res if device == "ev"}
        # where the DSO will ask: downstream of the congestion the public forecast predicts
        # at the first 18:00 of the run (topology and profiles are public)
        asked: set[str] = set()
        for s in eng.trading_slots():
            if s % SLOTS_PER_DAY == PEAK_SLOT_OF_DAY:
                fc = eng.model.forecast_wh_by_cp(s)
                forecast = {cp: household_net_wh(eng.model, cp, s) if cp in eng.by_cp
                            else int(fc[cp]) for cp in eng.model.cp_ids}
                pred = predict(eng.model, s, forecast, eng.limits)
                asked = set(pred.cps) if pred is not None else set()
                break
        self.attacker: Member | None = None
        if not asked & evs:
            return  # no congestion to sell flexibility against: nobody is recruited
        self.attacker = self.pick(lambda m: m.battery is None and m.cp in evs & asked,
                                  key=lambda m: (self.load_in(m, *self.window), m.cp))
        self.offers: dict[bytes, int] = {}
        """Request id -> the honest baseline (Wh) the attacker should have declared."""

    def flex_offer(self, m: Member, body: dict[str, Any]) -> dict[str, Any]:
        if self.attacker is None or m is not self.attacker:
            return body
        honest = int(body["baseline_wh"][0])
        self.offers[bytes(body["request"])] = honest
        consumption = max(abs(honest), int(body["energies_wh"][0]))
        return {**body, "price_micro_per_kwh": CHEAPEST_HONEST_MICRO_PER_KWH - UNDERCUT_MICRO_PER_KWH,
                "baseline_wh": [honest - INFLATE * consumption]}

    def physical(self, slot: int, injection_wh: dict[str, int]) -> None:
        # the charger keeps to its own plan: no deferral (hence no rebound either), and it
        # draws that power whatever import limit the DSO's envelope set for the order
        if self.attacker is None:
            return
        cp = self.attacker.cp
        ordered = self.eng.data.flex_adjust_wh.get(slot, {}).get(cp, 0)
        if not ordered or cp not in injection_wh:
            return
        injection_wh[cp] -= ordered
        report = self.eng.data.envelope_reports.get(slot)
        env = report.envelopes.get(cp) if report is not None else None
        drawn = max(0, -injection_wh[cp])
        if report is not None and env is not None and env.import_max_wh < drawn:
            ignored = Envelope(import_max_wh=drawn, export_max_wh=env.export_max_wh)
            self.eng.data.envelope_reports[slot] = dataclasses.replace(
                report, envelopes={**report.envelopes, cp: ignored})

    def _is_attacker(self, addr: Any) -> bool:
        return isinstance(addr, bytes) and self.eng.identities.owner(addr) is self.attacker

    def result(self) -> dict[str, Any]:
        if self.attacker is None:
            return self.record(0, 0, True, 0, attacker=None, paid_micro=0, penalty_micro=0,
                               reputation_delta=0, activated_slots=0, activated_wh=0,
                               delivered_wh=0,
                               note="no congestion predicted: the DSO requested no flexibility")
        # under privacy mode every offer, sanction and payment names one of the attacker's
        # per-slot pseudonyms: the evaluation maps each back to its household
        mine = self._is_attacker
        evs = [e for e in self.eng.data.events if mine(e.get("member"))]
        deliveries = [e for e in evs if e["type"] == "flex_delivery"]
        detected = sum(1 for e in evs if e["type"] in ("baseline_capped", "claim_rejected"))
        price = CHEAPEST_HONEST_MICRO_PER_KWH - UNDERCUT_MICRO_PER_KWH
        loss = paid = penalty = 0
        for e in deliveries:
            honest = self.offers.get(bytes(e["request"]))
            metered = e["metered_net_wh"]
            earned = 0
            if honest is not None and metered is not None:
                earned = min(max(int(metered) - honest, 0), int(e["activated_wh"])) * price // 1000
            paid += int(e["payment_micro"])
            penalty += int(e["penalty_micro"])
            loss += max(0, int(e["payment_micro"]) - earned)
        reputation = sum(int(e["delta"]) for e in self.eng.data.events
                         if e.get("type") == "reputation" and mine(e.get("addr"))
                         and e.get("reason") == "non_delivery")
        injected = len(deliveries)
        return self.record(injected, detected, injected == 0 or (detected > 0 and loss == 0),
                           loss, attacker=self.attacker.name, paid_micro=paid,
                           penalty_micro=penalty, reputation_delta=reputation,
                           activated_slots=injected,
                           activated_wh=sum(int(e["activated_wh"]) for e in deliveries),
                           delivered_wh=sum(int(e["delivered_wh"]) for e in deliveries))
