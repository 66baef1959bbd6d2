"""Metering attacks (threat-model row 1): a household's meter under-reports its consumption.

* ``fdi-meter``: one meter hides 10-50 % of its import in the evening;
* ``fdi-stealthy``: the same lie made consistent with the network model (a = Hc) over the
  meter and the voltages the attacker can reach; the DSO's signed sensors are out of reach.

Detected = slots whose reading the DSO flagged on the ledger; loss = hidden energy in slots
never flagged, at the retail tariff (the grid account's loss).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from gridledger.grid import SlotMeasurements, craft_stealthy_attack, under_report
from gridledger.sim.attack_base import Attack

MIN_HIDDEN_IMPORT_WH = 150
"""The attacker lies only when it imports at least this much (small lies are noise)."""


def runs_of(slots: list[int]) -> list[list[int]]:
    """Consecutive runs of sorted slot numbers."""
    out: list[list[int]] = []
    for s in slots:
        if out and s == out[-1][-1] + 1:
            out[-1].append(s)
        else:
            out.append([s])
    return out


class FdiMeter(Attack):
    name: ClassVar[str] = "fdi-meter"
    threat: ClassVar[str] = "1 false data injection"
    defence: ClassVar[str] = (
        "signed readings; DSO state estimation with residual tests, protected sensors "
        "and a two-slot test; flagged readings replaced by the network estimate")
    window = (0.70, 0.875)   # 16:48-21:00 on a day run

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: m.role == "consumer" and m.battery is None,
                                  key=lambda m: (self.load_in(m, *self.window), m.cp))
        self.hidden: dict[int, int] = {}

    def _hide(self, slot: int) -> int:
        true_import = max(0, -int(self.eng.delivered_truth(slot, self.attacker.cp)))
        if not self.eng.in_window(slot, *self.window) or true_import < MIN_HIDDEN_IMPORT_WH:
            return 0
        frac = random.Random(f"{self.name}/{self.eng.sc.seed}/{slot}").uniform(0.10, 0.50)
        return int(true_import * frac)

    def measurements(self, slot: int, meas: SlotMeasurements,
                     honest: SlotMeasurements) -> SlotMeasurements:
        h = self._hide(slot)
        if not h:
            return meas
        self.hidden[slot] = h
        return under_report(meas, {self.attacker.cp: h})

    def result(self) -> dict[str, Any]:
        eng = self.eng
        flagged_cps, ids = eng.data.flagged, eng.identities
        flagged = {s for s in self.hidden
                   if ids.ledger_cp(self.attacker, s) in flagged_cps.get(s, set())}
        # a slot whose reading the DSO's estimate replaced because the meter was quarantined
        # (firmware registry) did not settle the lie either: corrected, though not detected
        replaced = {s for s in set(self.hidden) - flagged
                    if ids.ledger_cp(self.attacker, s) in eng.data.estimated.get(s, set())}
        missed = sorted(set(self.hidden) - flagged - replaced)
        tau = eng.params.retail_import_micro_per_kwh
        loss = sum(self.hidden[s] * tau // 1000 for s in missed)
        runs = runs_of(sorted(self.hidden))
        within2 = sum(1 for r in runs if any(s in flagged for s in r[:2]))
        honest_flags = sum(1 for cps in flagged_cps.values() for cp in cps
                           if (m := ids.owner_of_cp(cp)) is None or m.honest)
        return self.record(len(self.hidden), len(flagged), not missed, loss,
                           attacker=self.attacker.name, hidden_wh=sum(self.hidden.values()),
                           replaced_by_quarantine=len(replaced),
                           uncorrected_wh=sum(self.hidden[s] for s in missed),
                           attack_runs=len(runs), runs_flagged_within_2_slots=within2,
                           honest_meters_flagged=honest_flags,
                           note="loss = hidden energy in slots never flagged, at the retail tariff")


class FdiStealthy(FdiMeter):
    name: ClassVar[str] = "fdi-stealthy"
    defence: ClassVar[str] = (
        "DSO sensors are signed and protected: every meter is tested against the state "
        "estimated from them alone, so a coordinated a = Hc attack shows")
    window = (0.30, 0.45)    # 07:12-10:48
    sensors_protected = True  # the DSO's sensors sign their readings (the defence)

    def measurements(self, slot: int, meas: SlotMeasurements,
                     honest: SlotMeasurements) -> SlotMeasurements:
        h = self._hide(slot)
        if not h:
            return meas
        self.hidden[slot] = h
        # the attacker controls the meter and tries to move the DSO sensors too; they are
        # authenticated devices, so only the meter and voltages it can reach change
        return craft_stealthy_attack(self.eng.model, meas, self.attacker.cp, h,
                                     attacker_can_modify_sensors=not self.sensors_protected)
