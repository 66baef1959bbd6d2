"""Measured detection and false-positive rates of ``detect_bad_meters`` (docs/grid.md, §7).

``fdi_detection_report`` runs seeded trials of both attacks (``fdi_attacks.py``) against the
classical detector and the protected-sensor defence, plus a stretch of honest slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gridledger.errors import GridError
from gridledger.grid.fdi import DetectionConfig, DetectionResult, detect_bad_meters
from gridledger.grid.fdi_attacks import craft_stealthy_attack, under_report
from gridledger.grid.measurements import SensorPlan, measure_slot
from gridledger.grid.model import GridModel


@dataclass(frozen=True)
class DetectionRate:
    """One cell of the detection report."""

    attack: str
    """``"random"`` (only the target meter lies) or ``"stealthy"`` (a = H c)."""
    magnitude: float
    """Share of the target's consumption hidden."""
    defence: str
    """``"classical"`` (chi2 + LNR + balance) or ``"protected"``."""
    trials: int
    alarm_rate: float
    """Any alarm raised in the attacked slot."""
    tpr: float
    """Target meter flagged in the attacked slot."""
    tpr_2slot: float
    """Target flagged in the attacked slot or the next one (attack persists)."""
    wrong_flag_rate: float
    """Trials in which an honest meter was flagged."""


@dataclass(frozen=True)
class FdiReport:
    """Measured detection and false-positive rates."""

    network: str
    rates: tuple[DetectionRate, ...]
    honest_slots: int
    fpr_classical: float
    """Honest slots with any flagged meter, classical detector."""
    fpr_protected: float
    alarm_rate_classical_honest: float
    alarm_rate_protected_honest: float
    min_consumption_wh: int

    def as_dict(self) -> dict[str, object]:
        return {
            "network": self.network,
            "honest_slots": self.honest_slots,
            "fpr_classical": self.fpr_classical,
            "fpr_protected": self.fpr_protected,
            "alarm_rate_classical_honest": self.alarm_rate_classical_honest,
            "alarm_rate_protected_honest": self.alarm_rate_protected_honest,
            "min_consumption_wh": self.min_consumption_wh,
            "rates": [r.__dict__ for r in self.rates],
        }


def fdi_detection_report(
    model: GridModel,
    *,
    magnitudes: Sequence[float] = (0.1, 0.2, 0.5),
    attacks: Sequence[str] = ("random", "stealthy"),
    trials: int = 40,
    honest_slots: int = 96,
    seed: int = 0,
    days: Sequence[int] | None = None,
    min_consumption_wh: int = 100,
    plan: SensorPlan = SensorPlan(),
    config: DetectionConfig = DetectionConfig(),
) -> FdiReport:
    """True- and false-positive rates of both detectors over seeded random trials.

    Each trial picks a slot (evening or daytime of ``days``), a target cp consuming at least
    ``min_consumption_wh`` in that slot and its next, takes honest readings, injects the
    attack into two consecutive slots and runs the detector (classical: attacker may alter
    DSO sensors too; protected: it may not).
    """
    rng = np.random.default_rng(seed)
    day_list = list(days) if days is not None else list(range(0, model.n_slots // 96, 7))
    classical = replace(config, protected_defence=False)
    protected = replace(config, protected_defence=True)
    rates: list[DetectionRate] = []
    for attack in attacks:
        if attack not in ("random", "stealthy"):
            raise GridError(f"unknown attack {attack!r}: use 'random' or 'stealthy'")
        for mag in magnitudes:
            for defence, cfg in (("classical", classical), ("protected", protected)):
                al = tp = tp2 = wrong = 0
                for _ in range(trials):
                    slot, cp = _pick_target(model, rng, day_list, min_consumption_wh)
                    prev: DetectionResult | None = None
                    hit = hit2 = alarm = bad = False
                    for s in (slot, slot + 1):
                        honest = measure_slot(
                            model, s, model.forecast_wh_by_cp(s), rng=rng, plan=plan, noise=cfg.noise
                        )
                        hidden = int(round(mag * model.load_wh[model.cp_index(cp), model.column(s)]))
                        if attack == "random":
                            m = under_report(honest, {cp: hidden})
                        else:
                            m = craft_stealthy_attack(
                                model, honest, cp, hidden,
                                attacker_can_modify_sensors=defence == "classical", noise=cfg.noise,
                            )
                        res = detect_bad_meters(model, s, m, config=cfg, previous=prev)
                        if s == slot:
                            hit = cp in res.flagged
                            alarm = res.alarm
                        hit2 = hit2 or cp in res.flagged
                        bad = bad or bool(res.flagged - {cp})
                        prev = res
                    al += alarm
                    tp += hit
                    tp2 += hit2
                    wrong += bad
                rates.append(
                    DetectionRate(
                        attack=attack,
                        magnitude=float(mag),
                        defence=defence,
                        trials=trials,
                        alarm_rate=al / trials,
                        tpr=tp / trials,
                        tpr_2slot=tp2 / trials,
                        wrong_flag_rate=wrong / trials,
                    )
                )
    fp_c = fp_p = al_c = al_p = 0
    prev_c: DetectionResult | None = None
    prev_p: DetectionResult | None = None
    start = int(rng.integers(0, max(1, model.n_slots - honest_slots)))
    for s in range(start, start + honest_slots):
        honest = measure_slot(model, s, model.forecast_wh_by_cp(s), rng=rng, plan=plan, noise=config.noise)
        rc = detect_bad_meters(model, s, honest, config=classical, previous=prev_c)
        rp = detect_bad_meters(model, s, honest, config=protected, previous=prev_p)
        fp_c += bool(rc.flagged)
        fp_p += bool(rp.flagged)
        al_c += rc.alarm
        al_p += rp.alarm
        prev_c, prev_p = rc, rp
    n = max(1, honest_slots)
    return FdiReport(
        network=model.name,
        rates=tuple(rates),
        honest_slots=honest_slots,
        fpr_classical=fp_c / n,
        fpr_protected=fp_p / n,
        alarm_rate_classical_honest=al_c / n,
        alarm_rate_protected_honest=al_p / n,
        min_consumption_wh=min_consumption_wh,
    )


def _pick_target(
    model: GridModel, rng: np.random.Generator, days: list[int], min_wh: int
) -> tuple[int, str]:
    for _ in range(1000):
        day = int(rng.choice(days))
        slot = day * 96 + int(rng.integers(0, 95))
        if slot + 1 >= model.n_slots:
            continue
        ok = np.flatnonzero(
            (model.load_wh[:, model.column(slot)] >= min_wh)
            & (model.load_wh[:, model.column(slot + 1)] >= min_wh)
        )
        if len(ok):
            return slot, model.cp_ids[int(rng.choice(ok))]
    raise GridError(f"no connection point of {model.name} consumes {min_wh} Wh in a slot")
