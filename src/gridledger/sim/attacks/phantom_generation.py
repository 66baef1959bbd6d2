"""``phantom-generation`` (docs/threat-model.md row 1, false data injection): a PV owner's meter
reports export it never produced, to be issued renewable certificates for it.

At midday the attacker's meter adds phantom export to its reading: 60 % of its real export,
at least 300 Wh, but never beyond what its registered PV could deliver (the capacity bound
is public, so a careful attacker stays under it). The DSO's state estimation sees a
connection point injecting what the network did not carry and flags the reading; the
ledger issues no certificate from a flagged reading.

Detected = attacked slots whose reading the ledger flagged and for which it withheld
issuance. Loss (Wh) = phantom energy certified, read from the ledger's issuances: what
was issued beyond the connection point's real export, up to the phantom amount.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gridledger.grid import SlotMeasurements, under_report
from gridledger.ledger.modules.certificates.types import capacity_wh
from gridledger.sim.attack_base import Attack
from gridledger.sim.features.certificates import pseudonym_class, solar_w

MIN_PHANTOM_WH = 300
PHANTOM_SHARE_PCT = 60
HEADROOM_PCT = 95
"""The attacker keeps its reported export under 95 % of the capacity bound."""


class PhantomGeneration(Attack):
    name: ClassVar[str] = "phantom-generation"
    threat: ClassVar[str] = "1 false data injection"
    defence: ClassVar[str] = (
        "the DSO's state estimation flags the inflated reading; the ledger issues no "
        "certificate from a flagged reading (and none beyond the device's registered "
        "capacity), an invariant checks both after every block")
    window = (0.42, 0.62)   # 10:05-14:53 on a day run: PV export

    def setup(self) -> None:
        eng = self.eng
        self.attacker = self.pick(lambda m: "pv" in m.der and m.battery is None,
                                  key=lambda m: (solar_w(eng, m), m.cp))
        # the capacity bound the ledger applies to it: its registered PV, or under privacy
        # mode the class every pseudonym is certified under (public, and looser)
        cls = pseudonym_class(eng) if eng.sc.privacy else None
        rated = int(cls["solar_w"]) if cls else solar_w(eng, self.attacker)
        self.bound_wh = capacity_wh(rated, eng.params.slot_seconds)
        self.phantom: dict[int, int] = {}
        self.real: dict[int, int] = {}

    def measurements(self, slot: int, meas: SlotMeasurements,
                     honest: SlotMeasurements) -> SlotMeasurements:
        if not self.eng.in_window(slot, *self.window):
            return meas
        real = max(0, int(self.eng.delivered_truth(slot, self.attacker.cp)))
        extra = min(max(MIN_PHANTOM_WH, real * PHANTOM_SHARE_PCT // 100),
                    self.bound_wh * HEADROOM_PCT // 100 - real)
        if extra < MIN_PHANTOM_WH // 2:
            return meas
        self.phantom[slot], self.real[slot] = extra, real
        return under_report(meas, {self.attacker.cp: extra})

    def result(self) -> dict[str, Any]:
        eng = self.eng
        flagged = eng.data.flagged
        detected = certified = uncorrected = 0
        for slot in sorted(self.phantom):
            cp = eng.identities.ledger_cp(self.attacker, slot)    # a stand-in under privacy
            iss = next((i for i in eng.ledger.certificates(f"issuances/{slot}") if i["cp"] == cp),
                       None)
            issued = int(iss["solar_wh"]) + int(iss["storage_wh"]) if iss else 0
            if cp in flagged.get(slot, set()):
                if iss is not None and iss["flagged"] and issued == 0:
                    detected += 1
            else:
                uncorrected += self.phantom[slot]
            certified += min(self.phantom[slot], max(0, issued - self.real[slot]))
        injected = len(self.phantom)
        return self.record(injected, detected, injected > 0 and certified == 0, certified,
                           loss_unit="Wh", attacker=self.attacker.name,
                           phantom_wh=sum(self.phantom.values()),
                           phantom_certified_wh=certified, unflagged_phantom_wh=uncorrected,
                           capacity_bound_wh=self.bound_wh,
                           note="loss = phantom energy certified (Wh issued beyond real export)")
