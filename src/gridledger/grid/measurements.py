"""What meters and grid sensors report for a slot, and how that maps to estimator rows.

Two kinds of devices:

* **customer smart meters**, one per connection point: active energy (Wh, export > 0),
  reactive energy (varh) and average voltage (p.u.) per slot;
* **DSO grid sensors** (the DSO's own, authenticated devices): the head meter at each
  transformer's LV side (energy *into* the feeder, Wh/varh), flow sensors at the sending end
  of lines (cable-cabinet / feeder-head meters, Wh/varh) and the substation voltage.

Sensor labels: ``"trafo-0:p_wh"``, ``"trafo-0:q_varh"``, ``"line-12:p_wh"``,
``"line-12:q_varh"``, ``"bus-42:vm_pu"`` (pandapower element indices).

``measure_slot`` produces honest readings (true power flow + seeded Gaussian noise, energies
rounded to whole Wh/varh) for the simulator; attacks then edit a ``SlotMeasurements``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gridledger.errors import GridError
from gridledger.grid import _acpf
from gridledger.grid.areas import substation_areas
from gridledger.grid.estimation import (
    P_FROM,
    P_INJ,
    P_TO,
    Q_FROM,
    Q_INJ,
    Q_TO,
    VM,
    MeasurementModel,
    measure,
)
from gridledger.grid.model import WH_PER_MW_SLOT, GridModel
from gridledger.grid.powerflow import ac_network, cp_q_pu, schedule_array, wh_to_pu

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

METER, SENSOR, VIRTUAL, PSEUDO = 0, 1, 2, 3
"""Row owners: customer meter, DSO sensor, exact network knowledge, forecast stand-in."""


@dataclass(frozen=True)
class SensorPlan:
    """Which devices exist. Default: full DSO monitoring (every line) and full smart meters."""

    lines: Literal["all", "feeder-heads", "none"] | tuple[int, ...] = "all"
    """Lines with a flow sensor at their sending end."""
    trafo_head_meters: bool = True
    substation_vm: bool = True
    meter_q: bool = True
    meter_vm: bool = True


@dataclass(frozen=True)
class MeterNoise:
    """Random error (one standard deviation) of each device class.

    Defaults: smart meters of accuracy class 1 (IEC 62053-21: +-1 % limit, taken as ~3
    sigma of the per-slot random error -> 0.3 %); DSO sensors of class 0.2S (IEC 62053-22,
    +-0.2 % -> 0.1 %). Energies are reported as whole Wh/varh; the rounding is added to the
    variance the estimator assumes.
    """

    meter_p_rel: float = 0.003
    meter_p_abs_wh: float = 0.5
    meter_q_rel: float = 0.01
    meter_q_abs_varh: float = 1.0
    meter_vm_pu: float = 0.002
    sensor_p_rel: float = 0.001
    sensor_p_abs_wh: float = 1.0
    sensor_q_rel: float = 0.002
    sensor_q_abs_varh: float = 1.0
    sensor_vm_pu: float = 0.001
    pseudo_q_rel: float = 0.3
    """Forecast reactive energy used where a meter reports none (pseudo-measurement)."""


@dataclass(frozen=True)
class SlotMeasurements:
    """Everything reported for one slot. Energies are integers; voltages in p.u."""

    slot: int
    reported_wh_by_cp: Mapping[str, int]
    """Net active energy per cp (export > 0), as the customer meter reports it."""
    reported_varh_by_cp: Mapping[str, int] = field(default_factory=dict)
    vm_pu_by_cp: Mapping[str, float] = field(default_factory=dict)
    sensor_readings: Mapping[str, float] = field(default_factory=dict)
    """DSO sensors by label (see module docstring)."""

    @property
    def head_meter_wh(self) -> int | None:
        """Energy into the feeder(s) through the transformer head meters (import > 0)."""
        vals = [
            v for k, v in self.sensor_readings.items() if k.startswith("trafo-") and k.endswith(":p_wh")
        ]
        return int(sum(vals)) if vals else None

    def with_reported(self, wh_by_cp: Mapping[str, int]) -> SlotMeasurements:
        """A copy with some meters' active energy replaced (how an attack edits readings)."""
        merged = dict(self.reported_wh_by_cp)
        merged.update({k: int(v) for k, v in wh_by_cp.items()})
        return replace(self, reported_wh_by_cp=merged)


def energy_only_readings(
    model: GridModel, slot: int, reported_wh_by_cp: Mapping[str, int], head_meter_wh: int
) -> SlotMeasurements:
    """Readings when only customer active energy and the feeder head meter are known.

    The estimator fills in forecast reactive power and the slack set-point; with redundancy
    of one (the feeder energy balance) such a slot can raise an alarm but not name a meter.
    Raises ``GridError`` if the network has no transformer or several head transformers.
    """
    cat = sensor_catalogue(model)
    heads = sorted(lb for lb in cat if lb.startswith("trafo-") and lb.endswith(":p_wh"))
    if len(heads) != 1:
        raise GridError(
            f"{model.name} has {len(heads)} head transformers: pass one reading per transformer "
            "in SlotMeasurements.sensor_readings ('trafo-N:p_wh')"
        )
    return SlotMeasurements(
        slot=model.check_slot(slot),
        reported_wh_by_cp={k: int(v) for k, v in reported_wh_by_cp.items()},
        sensor_readings={heads[0]: float(int(head_meter_wh))},
    )


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class _Device:
    kind: int
    element: int
    sign: float
    owner: int
    unit: Literal["wh", "varh", "pu"]


def sensor_catalogue(model: GridModel) -> dict[str, _Device]:
    """Every DSO sensor label the network could carry."""
    cache = model._cache
    cat = cache.get("net:sensors")
    if cat is not None:
        return cat  # type: ignore[no-any-return]
    acn = ac_network(model)
    out: dict[str, _Device] = {}
    for j, kind in enumerate(acn.mon_kind):
        row, elem = int(acn.mon_row[j]), int(acn.mon_element[j])
        if kind == "trafo":
            # Head meter on the LV (to) side; energy *into* the feeder is -S_to.
            out[f"trafo-{elem}:p_wh"] = _Device(P_TO, row, -1.0, SENSOR, "wh")
            out[f"trafo-{elem}:q_varh"] = _Device(Q_TO, row, -1.0, SENSOR, "varh")
        else:
            out[f"line-{elem}:p_wh"] = _Device(P_FROM, row, 1.0, SENSOR, "wh")
            out[f"line-{elem}:q_varh"] = _Device(Q_FROM, row, 1.0, SENSOR, "varh")
    for k in acn.ref:
        out[f"{acn.bus_tag(int(k))}:vm_pu"] = _Device(VM, int(k), 1.0, SENSOR, "pu")
    for k in acn.pv:
        out[f"{acn.bus_tag(int(k))}:vm_pu"] = _Device(VM, int(k), 1.0, SENSOR, "pu")
    areas = substation_areas(model)
    if areas is not None:
        # a secondary substation's head meter also reads its LV busbar's voltage: the
        # boundary value each LV area's own estimate starts from (per-substation detection)
        pos = {int(b): k for k, b in enumerate(acn.pd_bus) if b >= 0}
        for a in areas.lv:
            out[busbar_vm_label(model, a.busbar)] = _Device(VM, pos[a.busbar], 1.0, SENSOR, "pu")
    cache["net:sensors"] = out
    return out


def busbar_vm_label(model: GridModel, busbar: int) -> str:
    """Label of the voltage reading at an LV busbar (pandapower bus ``busbar``)."""
    return f"bus-{int(busbar)}:vm_pu"


def planned_sensors(model: GridModel, plan: SensorPlan) -> list[str]:
    """Labels of the DSO sensors a plan installs (sorted, deterministic)."""
    cat = sensor_catalogue(model)
    acn = ac_network(model)
    labels: list[str] = []
    if plan.trafo_head_meters:
        labels += [k for k in cat if k.startswith("trafo-")]
    if plan.substation_vm:
        labels += [k for k in cat if k.startswith("bus-")]
    if plan.lines == "all":
        labels += [k for k in cat if k.startswith("line-")]
    elif plan.lines == "feeder-heads":
        lv_buses = {int(acn.t_bus[acn.mon_row[j]]) for j, kd in enumerate(acn.mon_kind) if kd == "trafo"}
        for j, kd in enumerate(acn.mon_kind):
            row = acn.mon_row[j]
            if kd == "line" and (int(acn.f_bus[row]) in lv_buses or int(acn.t_bus[row]) in lv_buses):
                e = int(acn.mon_element[j])
                labels += [f"line-{e}:p_wh", f"line-{e}:q_varh"]
    elif plan.lines != "none":
        for e in plan.lines:
            if f"line-{e}:p_wh" not in cat:
                raise GridError(f"sensor plan names line {e}, which is not an in-service line")
            labels += [f"line-{e}:p_wh", f"line-{e}:q_varh"]
    return sorted(set(labels), key=_label_key)


def _label_key(label: str) -> tuple[str, int, str]:
    head, _, qty = label.partition(":")
    kind, _, num = head.partition("-")
    return (kind, int(num) if num.isdigit() else -1, qty)


# --------------------------------------------------------------------------- honest readings


def _sigma(noise: MeterNoise, owner: int, unit: str, value: FloatArray) -> FloatArray:
    """Standard deviation (in the reading's unit) for readings of ``value``."""
    a = np.abs(value)
    if unit == "pu":
        s = noise.meter_vm_pu if owner == METER else noise.sensor_vm_pu
        return np.full_like(a, s)
    rel, ab = _rel_abs(noise, owner, unit)
    out: FloatArray = np.sqrt((rel * a) ** 2 + ab**2)
    return out


def _sigma_one(noise: MeterNoise, owner: int, unit: str, value: float) -> float:
    """``_sigma`` of one reading, the same operations on Python floats (no one-element
    arrays: ``build_rows`` asks for every row of every part in every slot). Bit for bit
    ``_sigma``'s: IEEE products, sum and square root; the square as a product, as numpy's
    ``** 2`` is."""
    if unit == "pu":
        return noise.meter_vm_pu if owner == METER else noise.sensor_vm_pu
    rel, ab = _rel_abs(noise, owner, unit)
    t = rel * abs(value)
    return math.sqrt(t * t + ab**2)


def _rel_abs(noise: MeterNoise, owner: int, unit: str) -> tuple[float, float]:
    """Relative and absolute error of an energy reading (Wh or varh)."""
    if owner == METER and unit == "wh":
        rel, ab = noise.meter_p_rel, noise.meter_p_abs_wh
    elif owner == METER:
        rel, ab = noise.meter_q_rel, noise.meter_q_abs_varh
    elif owner == SENSOR and unit == "wh":
        rel, ab = noise.sensor_p_rel, noise.sensor_p_abs_wh
    elif owner == SENSOR:
        rel, ab = noise.sensor_q_rel, noise.sensor_q_abs_varh
    else:
        rel, ab = noise.pseudo_q_rel, noise.meter_q_abs_varh
    return rel, ab


def measure_slot(
    model: GridModel,
    slot: int,
    true_net_injection_wh_by_cp: Mapping[str, int],
    *,
    rng: np.random.Generator | int,
    plan: SensorPlan = SensorPlan(),
    noise: MeterNoise = MeterNoise(),
) -> SlotMeasurements:
    """Honest readings of every meter and sensor for what physically happened in ``slot``.

    Runs the power flow of the true injections (reactive consumption = forecast), reads every
    device, adds Gaussian noise from ``rng`` (a seed or a numpy Generator) and rounds energies
    to whole Wh/varh. Raises ``GridError`` if the power flow fails.
    """
    slot = model.check_slot(slot)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    acn = ac_network(model)
    x_wh = schedule_array(model, true_net_injection_wh_by_cp, "true injections")
    q_pu = cp_q_pu(model, slot)
    sol = _acpf.solve_pf(acn, _acpf.bus_injection(acn, wh_to_pu(model, x_wh), q_pu))
    if not sol.converged:
        raise GridError(f"power flow of slot {slot} does not converge: readings impossible")
    scale = WH_PER_MW_SLOT * acn.base_mva
    ids = model.cp_ids

    def read(mm: MeasurementModel, owner: int, unit: str) -> FloatArray:
        true = measure(acn, mm, sol.v) * (scale if unit != "pu" else 1.0)
        return true + gen.normal(0.0, 1.0, size=len(true)) * _sigma(noise, owner, unit, true)

    cp_bus = acn.cp_bus
    n = len(ids)
    ones = np.ones(n)
    p_true = x_wh.astype(np.float64)
    p_read = p_true + gen.normal(0.0, 1.0, size=n) * _sigma(noise, METER, "wh", p_true)
    reported = {cp: int(round(v)) for cp, v in zip(ids, p_read, strict=True)}
    varh: dict[str, int] = {}
    vm: dict[str, float] = {}
    if plan.meter_q:
        # The meter's own reactive energy (the bus may carry a generator as well).
        q_true = q_pu * scale
        q = q_true + gen.normal(0.0, 1.0, size=n) * _sigma(noise, METER, "varh", q_true)
        varh = {cp: int(round(v)) for cp, v in zip(ids, q, strict=True)}
    if plan.meter_vm:
        vv = read(MeasurementModel(np.full(n, VM), cp_bus, ones, ids), METER, "pu")
        vm = {cp: round(float(v), 6) for cp, v in zip(ids, vv, strict=True)}
    sensors: dict[str, float] = {}
    labels = planned_sensors(model, plan)
    if labels:
        cat = sensor_catalogue(model)
        for unit in ("wh", "varh", "pu"):
            sel = [lb for lb in labels if cat[lb].unit == unit]
            if not sel:
                continue
            mm = MeasurementModel(
                np.array([cat[lb].kind for lb in sel]),
                np.array([cat[lb].element for lb in sel]),
                np.array([cat[lb].sign for lb in sel]),
                tuple(sel),
            )
            vals = read(mm, SENSOR, unit)
            for lb, v in zip(sel, vals, strict=True):
                sensors[lb] = float(int(round(v))) if unit != "pu" else round(float(v), 6)
    return SlotMeasurements(
        slot=slot,
        reported_wh_by_cp=reported,
        reported_varh_by_cp=varh,
        vm_pu_by_cp=vm,
        sensor_readings=sensors,
    )


# --------------------------------------------------------------------------- estimator rows


@dataclass(frozen=True, eq=False)
class Rows:
    """Estimator rows for one slot's readings: model, values and sigmas in p.u."""

    mm: MeasurementModel
    z: FloatArray
    sigma: FloatArray
    owner: IntArray
    cp: IntArray
    """Index of the cp a meter row belongs to, -1 otherwise."""
    unit_scale: FloatArray
    """Multiply a p.u. value by this to get the reading's unit (Wh, varh or 1 for p.u.)."""

    def select(self, mask: npt.NDArray[np.bool_]) -> Rows:
        idx = np.flatnonzero(mask)
        return Rows(
            mm=self.mm.subset(idx),
            z=self.z[idx],
            sigma=self.sigma[idx],
            owner=self.owner[idx],
            cp=self.cp[idx],
            unit_scale=self.unit_scale[idx],
        )


def build_rows(model: GridModel, meas: SlotMeasurements, noise: MeterNoise = MeterNoise()) -> Rows:
    """Turn readings into estimator rows, adding exact zero-injection rows and pseudo Q.

    Raises ``GridError`` for readings of unknown meters or sensors.
    """
    slot = model.check_slot(meas.slot)
    acn = ac_network(model)
    cat = sensor_catalogue(model)
    scale = WH_PER_MW_SLOT * acn.base_mva
    kind: list[int] = []
    elem: list[int] = []
    sign: list[float] = []
    labels: list[str] = []
    z: list[float] = []
    sig: list[float] = []
    owner: list[int] = []
    cp_of: list[int] = []
    uscale: list[float] = []
    rounding = 1.0 / 12.0  # variance of rounding to whole Wh/varh

    def add(
        k: int, e: int, s: float, lb: str, value: float, sd: float, own: int, cp: int, us: float
    ) -> None:
        kind.append(k)
        elem.append(e)
        sign.append(s)
        labels.append(lb)
        z.append(value)
        sig.append(sd)
        owner.append(own)
        cp_of.append(cp)
        uscale.append(us)

    unknown = sorted(set(meas.reported_wh_by_cp) - set(model.cp_ids))
    if unknown:
        raise GridError(f"readings from unknown meters {unknown[:3]}")
    q_fore = cp_q_pu(model, slot)
    # A meter sees its own connection point only; the bus may also carry elements that are
    # not connection points (a generator's set-point, a fixed load). Its row is the bus
    # injection: the reading plus those known injections. Where a generator holds the
    # voltage (PV bus) its reactive power is free, so the bus Q is unknown and a reactive
    # reading there constrains nothing: no Q row.
    free_q = {int(k) for k in acn.pv} | {int(k) for k in acn.ref}
    for i, cp in enumerate(model.cp_ids):
        b = int(acn.cp_bus[i])
        known = acn.s_fixed[b]
        if cp in meas.reported_wh_by_cp:
            e_wh = float(meas.reported_wh_by_cp[cp])
            sd = math.sqrt(_sigma_one(noise, METER, "wh", e_wh) ** 2 + rounding)
            add(P_INJ, b, 1.0, f"{cp}:p_wh", e_wh / scale + known.real, sd / scale, METER, i, scale)
        if b in free_q:
            pass
        elif cp in meas.reported_varh_by_cp:
            q = float(meas.reported_varh_by_cp[cp])
            sd = math.sqrt(_sigma_one(noise, METER, "varh", q) ** 2 + rounding)
            add(Q_INJ, b, 1.0, f"{cp}:q_varh", q / scale + known.imag, sd / scale, METER, i, scale)
        else:
            q = float(q_fore[i]) * scale
            sd = _sigma_one(noise, PSEUDO, "varh", q)
            add(Q_INJ, b, 1.0, f"{cp}:q_forecast", q / scale + known.imag, sd / scale, PSEUDO, -1, scale)
        if cp in meas.vm_pu_by_cp:
            add(VM, b, 1.0, f"{cp}:vm_pu", float(meas.vm_pu_by_cp[cp]), noise.meter_vm_pu, METER, i, 1.0)
    for lb in sorted(meas.sensor_readings, key=_label_key):
        dev = cat.get(lb)
        if dev is None:
            raise GridError(f"reading from unknown sensor {lb!r}")
        val = float(meas.sensor_readings[lb])
        if dev.unit == "pu":
            add(dev.kind, dev.element, dev.sign, lb, val, noise.sensor_vm_pu, SENSOR, -1, 1.0)
        else:
            sd = math.sqrt(_sigma_one(noise, SENSOR, dev.unit, val) ** 2 + rounding)
            add(dev.kind, dev.element, dev.sign, lb, val / scale, sd / scale, SENSOR, -1, scale)
    # Exact knowledge: buses without a connection point inject nothing (or a known generator
    # set-point). Weighted far above any meter, the standard virtual-measurement treatment.
    cp_set = {int(b) for b in acn.cp_bus}
    real_sig = [s for s, o in zip(sig, owner, strict=True) if o in (METER, SENSOR) and s > 0]
    sd_virtual = 1e-2 * min(real_sig) if real_sig else 1e-9
    for k in acn.pq:
        if int(k) in cp_set:
            continue
        s_k, tag = acn.s_fixed[k], acn.bus_tag(int(k))
        add(P_INJ, int(k), 1.0, f"{tag}:p_known", float(s_k.real), sd_virtual, VIRTUAL, -1, scale)
        add(Q_INJ, int(k), 1.0, f"{tag}:q_known", float(s_k.imag), sd_virtual, VIRTUAL, -1, scale)
    for k in acn.pv:
        if int(k) in cp_set:
            continue
        s_k, tag = acn.s_fixed[k], acn.bus_tag(int(k))
        add(P_INJ, int(k), 1.0, f"{tag}:p_known", float(s_k.real), sd_virtual, VIRTUAL, -1, scale)
    # Without a substation voltage reading the slack set-point stands in (pseudo, with the
    # sensor's accuracy: the DSO regulates that voltage, it is known to about that).
    for k in acn.ref:
        if f"{acn.bus_tag(int(k))}:vm_pu" not in meas.sensor_readings:
            vm_set = float(abs(acn.v_start[k]))
            tag = acn.bus_tag(int(k))
            add(VM, int(k), 1.0, f"{tag}:vm_setpoint", vm_set, noise.sensor_vm_pu, PSEUDO, -1, 1.0)
    return Rows(
        mm=MeasurementModel(
            kind=np.array(kind, dtype=np.int64),
            element=np.array(elem, dtype=np.int64),
            sign=np.array(sign),
            labels=tuple(labels),
        ),
        z=np.array(z),
        sigma=np.array(sig),
        owner=np.array(owner, dtype=np.int64),
        cp=np.array(cp_of, dtype=np.int64),
        unit_scale=np.array(uscale),
    )


def pandapower_measurement_net(
    model: GridModel, meas: SlotMeasurements, noise: MeterNoise = MeterNoise()
) -> Any:
    """A copy of the prosumer-form net carrying ``meas`` as pandapower measurements.

    For ``pandapower.estimation.estimate`` (the reference estimator in tests and benchmarks).
    pandapower's conventions: bus P/Q are load-referenced (consumption > 0), branch P/Q flow
    *into* the branch at the measured side, values in MW/MVar.
    """
    import copy

    import pandapower as pp

    rows = build_rows(model, meas, noise)
    acn = ac_network(model)
    cat = sensor_catalogue(model)
    net = copy.deepcopy(model.net)
    to_mw = 1.0 / WH_PER_MW_SLOT
    for i, lb in enumerate(rows.mm.labels):
        own, kind = int(rows.owner[i]), int(rows.mm.kind[i])
        if own == VIRTUAL:
            continue  # pandapower finds zero-injection buses itself (zero_injection="no_inj_bus")
        bus = int(acn.pd_bus[rows.mm.element[i]]) if kind in (P_INJ, Q_INJ, VM) else -1
        if kind == VM:
            pp.create_measurement(net, "v", "bus", float(rows.z[i]), float(rows.sigma[i]), bus)
            continue
        value_mw = float(rows.z[i] * rows.unit_scale[i]) * to_mw
        sd_mw = float(rows.sigma[i] * rows.unit_scale[i]) * to_mw
        mtype = "p" if kind in (P_INJ, P_FROM, P_TO) else "q"
        if kind in (P_INJ, Q_INJ):
            pp.create_measurement(net, mtype, "bus", -value_mw, sd_mw, bus)
        else:
            head, _, _ = lb.partition(":")
            element_type, _, num = head.partition("-")
            dev = cat[lb]
            side = ("from" if element_type == "line" else "hv") if kind in (P_FROM, Q_FROM) else (
                "to" if element_type == "line" else "lv"
            )
            pp.create_measurement(net, mtype, element_type, dev.sign * value_mw, sd_mw, int(num), side=side)
    return net
