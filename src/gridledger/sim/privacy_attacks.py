"""Privacy scenarios of the attack lab (THREATS.md rows 3, 5, 8).

* ``bad-aggregator`` (row 8): one aggregator of the seven posts a wrong partial sum (signed:
  it is its own statement) in some slots. The validators decode the feeder total from all
  seven partials, accepting only a polynomial that 2t - 1 = 5 of them agree on, so up to
  t - 1 colluders could neither choose the total nor push an honest partial out — read
  from the ledger's ``aggregator_rejected`` and ``aggregate`` events: the lie is left out
  and the accepted total is the true one. Leaving out is not a sanction (decoding is
  never evidence); only the aggregator's own contradictory signatures are.
* ``usage-inference`` (row 3): an honest-but-curious validator estimates every household's
  load curve from what its own store holds. Undefended it has the meters' readings on the
  ledger; with the privacy module it has the secure-aggregation feeder totals this run put
  on the ledger (its readings would arrive under per-slot pseudonyms, which it cannot link:
  see ``deanonymize``), so its best estimate is the feeder mean. Reported: Pearson
  correlation of estimate and truth, and of the household-specific part (residual from
  the community's mean profile) against the stated bound 2/sqrt(households).
* ``deanonymize`` (row 5): an observer who knows every household's first-epoch trade/load
  curve tries to link later pseudonyms to households from their public volumes
  (Kuhn-Munkres matching, ``privacy.attacks.analyse_deanonymization``), on this run's
  metered net energy, per rotation policy: a static pseudonym, one per epoch, one per slot.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gridledger.crypto.shamir import decode_signed
from gridledger.privacy.attacks import analyse_deanonymization
from gridledger.privacy.attacks import mean_row_correlation as _mean_corr
from gridledger.sim.attack_base import Attack


class BadAggregator(Attack):
    name = "bad-aggregator"
    threat = "8 malicious aggregator"
    defence = ("seven aggregators compute the feeder total redundantly; validators accept "
               "only a total that 2t - 1 signed partial sums agree on, leave out the one off "
               "the polynomial, and compare the total with the readings")
    liar = 4
    window = (0.25, 0.75)

    def setup(self) -> None:
        self.tampered: dict[int, int] = {}   # slot -> offset added
        self.rejected: set[int] = set()
        self.accepted: dict[int, int] = {}   # slot -> total the ledger accepted

    def partials(self, slot: int, values: list[int]) -> list[int]:
        if not self.eng.in_window(slot, *self.window) or slot % 3:
            return values
        # a plausible lie: shift the community total by 5 kWh (a value off the polynomial)
        rnd = self.eng.rounds.get(slot)
        at = [i for i, p in enumerate(rnd.partials) if p.position == self.liar] if rnd else []
        if not at:
            return values
        offset = 5_000 + slot % 7
        self.tampered[slot] = offset
        out = list(values)
        out[at[0]] = (out[at[0]] + offset) % (2**127 - 1)
        return out

    def on_block(self, fb: Any, events: list[dict[str, Any]]) -> None:
        name = self.eng.community.privacy_keys.aggregator_keys[self.liar].aggregator_id  # type: ignore[union-attr]
        for e in events:
            if e.get("type") == "aggregator_rejected" and e["aggregator"] == name:
                self.rejected.add(e["slot"])
            elif e.get("type") == "aggregate" and e["slot"] in self.tampered:
                self.accepted[e["slot"]] = e["total_wh"]

    def result(self) -> dict[str, Any]:
        wrong = sum(1 for s, t in self.accepted.items()
                    if s in self.eng.rounds and t != self.eng.rounds[s].true_total_wh)
        detected = len(self.rejected & set(self.tampered))
        return self.record(len(self.tampered), detected,
                           mitigated=wrong == 0 and detected == len(self.tampered), loss=0,
                           wrong_totals_accepted=wrong,
                           aggregator=f"aggregator-{self.liar}")


def _truth_matrix(eng: Any) -> tuple[list[str], list[int], np.ndarray]:
    """(cps, slots, households x slots net import Wh) as the meters measured it."""
    cps = sorted(m.cp for m in eng.members)
    slots = sorted(s for s in eng.delivered if s in eng.rounds)
    mat = np.array([[-int(eng.delivered_truth(s, cp)) for s in slots] for cp in cps],
                   dtype=np.float64)
    return cps, slots, mat


class UsageInference(Attack):
    name = "usage-inference"
    threat = "3 energy usage data leakage"
    defence = ("secure aggregation (no node sees a household reading), per-slot pseudonyms "
               "for readings and trades, DP on published aggregates")

    def setup(self) -> None:
        self.readings: dict[tuple[int, str], int] = {}
        self.totals: dict[int, int] = {}

    def on_block(self, fb: Any, events: list[dict[str, Any]]) -> None:
        # the curious validator's view: what its own store receives, event by event
        for e in events:
            if e.get("type") == "reading" and not str(e["cp"]).startswith("ps:"):
                self.readings[(e["slot"], e["cp"])] = e["import_wh"] - e["export_wh"]
            elif e.get("type") == "aggregate":
                self.totals[e["slot"]] = e["total_wh"]

    def result(self) -> dict[str, Any]:
        cps, slots, truth = _truth_matrix(self.eng)
        slots = [s for s in slots if s in self.totals]
        if len(slots) < 3:
            return self.record(0, 0, mitigated=True, loss=0, note="run too short")
        cols = [i for i, s in enumerate(sorted(s for s in self.eng.delivered if s in self.eng.rounds))
                if s in set(slots)]
        truth = truth[:, cols]
        raw = np.array([[self.readings.get((s, cp), 0) for s in slots] for cp in cps], dtype=float)
        feeder_mean = np.array([[self.totals[s] / len(cps) for s in slots]] * len(cps))
        population = np.repeat(truth.mean(axis=0, keepdims=True), len(cps), axis=0)
        bound = 2.0 / float(np.sqrt(len(cps)))
        resid_with = _mean_corr(feeder_mean - population, truth - population)
        # a curious aggregator decodes its own share of each meter as if it were the reading
        own = np.array([[decode_signed(self.eng.rounds[s].first_aggregator_shares.get(cp, 0))
                         for s in slots] for cp in cps], dtype=float)
        own = np.clip(own, -10**7, 10**7)  # shares are uniform field elements: keep finite
        agg_corr = _mean_corr(own, truth)
        out = {
            "households": len(cps), "slots": len(slots),
            "correlation_without_defence": round(_mean_corr(raw, truth), 3),
            "correlation_with_defence": round(_mean_corr(feeder_mean, truth), 3),
            "population_profile_correlation": round(_mean_corr(population, truth), 3),
            "residual_correlation_without_defence": round(_mean_corr(raw - population,
                                                                     truth - population), 3),
            "residual_correlation_with_defence": round(resid_with, 3),
            "residual_bound": round(bound, 3),
            "view_with_defence": "secure-aggregation totals on this run's ledger",
            "curious_aggregator_correlation": round(agg_corr, 3),
        }
        # injected: one curious validator; detected: a passive attack is not detectable, the
        # defence is the bound on what it learns
        return self.record(1, 0, mitigated=abs(resid_with) <= bound and abs(agg_corr) <= bound,
                           loss=0, passive=True, **out)


class Deanonymize(Attack):
    name = "deanonymize"
    threat = "5 privacy (market, data)"
    defence = "pseudonyms rotated per slot, certified by k-of-n trustees, identity escrowed"
    lot_wh = 10
    rotation = "per-slot"  # the policy in force; "none" is a static pseudonym

    def setup(self) -> None: ...

    def result(self) -> dict[str, Any]:
        _, _, truth = _truth_matrix(self.eng)
        n_h, n_s = truth.shape
        epoch = min(n_s // 2, 96)
        if epoch < 2:
            return self.record(0, 0, mitigated=True, loss=0, note="run too short")
        days = n_s // epoch
        loads = truth[:, :days * epoch].reshape(n_h, days, epoch).astype(np.int64)
        rep = analyse_deanonymization(loads, lot_wh=self.lot_wh, seed=self.eng.sc.seed)
        acc = {k: round(v, 3) for k, v in rep.accuracy.items()}
        # the bound we state for per-slot rotation: within 3x of chance (guessing)
        bound = round(3.0 / n_h, 3)
        return self.record(n_h * (days - 1), 0, mitigated=acc[self.rotation] <= bound, loss=0,
                           rotation=self.rotation, passive=True,
                           linkage_accuracy=acc, chance=round(1.0 / n_h, 3),
                           per_slot_bound=bound, epoch_slots=epoch, epochs=days,
                           observer_prior="first epoch's curves of every household")
