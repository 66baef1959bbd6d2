"""Power-flow verification of a schedule, through a consistency-checking pandapower wrapper.

``verify_schedule`` is what the DSO runs after clearing: the cleared net injection of every
connection point goes into a real ``pandapower.runpp``, and ``run_checked_pf`` refuses any
result that did not converge, is not finite, or does not balance power
(generation = load + losses), the same discipline pandapower's own tests follow.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gridledger.errors import GridError
from gridledger.grid import _acpf
from gridledger.grid.model import WH_PER_MW_SLOT, GridModel, check_supplied

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ViolationKind = Literal["overvoltage", "undervoltage", "overload"]


@dataclass(frozen=True)
class GridLimits:
    """Operating limits: voltage band (±10 % of nominal by default) and branch loading."""

    vm_min_pu: float = 0.9
    vm_max_pu: float = 1.1
    max_loading_pct: float = 100.0

    def __post_init__(self) -> None:
        if not 0 < self.vm_min_pu < 1 < self.vm_max_pu or self.max_loading_pct <= 0:
            raise GridError(f"inconsistent grid limits {self}")


@dataclass(frozen=True)
class Violation:
    """One limit broken: ``element`` is ``"bus 12"``, ``"line 3"`` or ``"trafo 0"``."""

    kind: ViolationKind
    element: str
    value: float
    limit: float


@dataclass(frozen=True)
class FlowReport:
    """Result of one verified power flow (pandapower units and names)."""

    max_vm_pu: float
    min_vm_pu: float
    max_line_loading_pct: float
    max_trafo_loading_pct: float
    violations: tuple[Violation, ...]
    losses_wh: int
    """Active losses in lines and transformers over the slot."""
    grid_import_wh: int
    """Energy drawn from the upstream grid (slack) over the slot; negative when exporting."""

    @property
    def ok(self) -> bool:
        """True if no limit is broken."""
        return not self.violations

    @property
    def max_loading_pct(self) -> float:
        """Worst loading over lines and transformers."""
        return max(self.max_line_loading_pct, self.max_trafo_loading_pct)


# --------------------------------------------------------------------------- network caches


def ac_network(model: GridModel) -> _acpf.AcNetwork:
    """The model's fast AC engine (built once per network, shared by profile variants)."""
    cache = model._cache
    acn = cache.get("net:ac")
    if acn is None:
        buses = [cp.bus for cp in model.cps]
        # The supply check load_grid runs, again on the net every power flow here uses.
        check_supplied(model.net, buses, list(model.cp_ids), model.name)
        acn = _acpf.build_ac_network(model.net, buses)
        cache["net:ac"] = acn
    assert isinstance(acn, _acpf.AcNetwork)
    return acn


class _WorkNet:
    """A private copy of the prosumer-form net for pandapower runs, with its lock and what
    the runs after the first reuse (``_rerun_pf``)."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.lock = threading.Lock()
        self.rerun: _Rerun | None = None
        """pandapower's network structure after the first run; None before it, or if the
        rerun did not give the first run's results bit for bit (then every run is runpp)."""
        self.checked = False
        """Whether a run succeeded and the rerun was tried against it."""


def _pp_work(model: GridModel) -> _WorkNet:
    """The model's work net for pandapower runs (one per network: profile copies share it)."""
    cache = model._cache
    work = cache.get("net:pp_work")
    if work is None:
        import copy

        work = _WorkNet(copy.deepcopy(model.net))
        cache["net:pp_work"] = work
    assert isinstance(work, _WorkNet)
    return work


# --------------------------------------------------------------------------- schedules


def schedule_array(model: GridModel, wh_by_cp: Mapping[str, int], what: str = "schedule") -> IntArray:
    """``{cp_id: Wh}`` -> int64 array in cp order; every cp must appear exactly once."""
    ids = model.cp_ids
    missing = [cp for cp in ids if cp not in wh_by_cp]
    if missing:
        raise GridError(f"{what} lacks {len(missing)} connection points, e.g. {missing[:3]}")
    if len(wh_by_cp) != len(ids):
        extra = sorted(set(wh_by_cp) - set(ids))
        raise GridError(f"{what} names unknown connection points {extra[:3]}")
    out = np.empty(len(ids), dtype=np.int64)
    for i, cp in enumerate(ids):
        v = wh_by_cp[cp]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise GridError(f"{what}[{cp!r}] must be an integer Wh, got {type(v).__name__}")
        out[i] = int(v)
    return out


def cp_q_pu(model: GridModel, slot: int) -> FloatArray:
    """Reactive injection per cp (p.u.): the forecast reactive consumption, sign-flipped."""
    acn = ac_network(model)
    out: FloatArray = -model.load_varh[:, model.column(slot)] / WH_PER_MW_SLOT / acn.base_mva
    return out


def wh_to_pu(model: GridModel, wh: npt.ArrayLike) -> FloatArray:
    """Slot energy (Wh) -> average power in p.u. of the network base."""
    out: FloatArray = np.asarray(wh, dtype=np.float64) / WH_PER_MW_SLOT / ac_network(model).base_mva
    return out


# --------------------------------------------------------------------------- pandapower


_GEN_TABLES = ("ext_grid", "gen", "sgen", "static_generator")
_LOAD_TABLES = ("load", "storage", "shunt", "ward", "xward", "motor", "asymmetric_load")
_LOSS_TABLES = ("line", "trafo", "trafo3w", "impedance")


def run_checked_pf(net: Any, *, balance_tol_mw: float = 1e-6) -> None:
    """``pandapower.runpp`` plus checks: converged, finite results, power balance.

    Raises ``GridError`` naming the failed check.
    """
    import pandapower as pp

    _solve_checked(net, lambda: pp.runpp(net, numba=False, calculate_voltage_angles=True,
                                         **_acpf.pandapower_init_options(net)), balance_tol_mw)


def _solve_checked(net: Any, solve: Callable[[], None], balance_tol_mw: float = 1e-6) -> None:
    """``solve()`` (a pandapower run of ``net``) with pandapower's warnings off, its failures
    as ``GridError``, then the checks of ``run_checked_pf`` on the results."""
    import pandapower as pp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            solve()
        except pp.LoadflowNotConverged:
            raise GridError("power flow did not converge (voltage collapse or bad data)") from None
        except Exception as exc:
            raise GridError(f"power flow failed: {exc}") from None
    if not net.converged:
        raise GridError("power flow did not converge")
    _check_results(net, balance_tol_mw)


# pandapower's result tables the rerun must reproduce bit for bit (its self-check)
_RESULT_TABLES = ("res_bus", "res_line", "res_trafo", "res_trafo3w", "res_ext_grid", "res_gen",
                  "res_sgen", "res_load", "res_storage", "res_shunt", "res_switch", "res_impedance",
                  "res_ward", "res_xward")


@dataclass(frozen=True, eq=False)
class _Rerun:
    """What a pandapower run of the work net computes that does not depend on the sgens'
    P and Q: the ``ppc``/``ppci`` as ``_pd2ppc`` builds them (bus, branch and gen tables,
    lookups, in-service selection, connectivity; injections are written per run), the
    admittance matrices (``makeYbus``) and the DC start's ``B`` matrices (``makeBdc``)."""

    ppc: dict[str, Any]
    ppci: dict[str, Any]
    n_ppci_bus: int
    internal: dict[str, Any]
    """``ppci["internal"]`` entries a run reuses under pandapower's ``recycle`` keys."""


def _copy_ppc(ppc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ``ppc`` whose arrays a run may change (sparse matrices are shared: a run
    replaces them, it never writes into them)."""
    out: dict[str, Any] = {}
    for k, v in ppc.items():
        out[k] = v.copy() if isinstance(v, np.ndarray) else _copy_ppc(v) if isinstance(v, dict) else v
    return out


def _build_rerun(net: Any) -> _Rerun:
    """pandapower's conversion of ``net`` (``_pd2ppc``, as ``runpp`` starts it), kept."""
    from pandapower.pd2ppc import _pd2ppc
    from pandapower.pf.ppci_variables import _get_pf_variables_from_ppci
    from pandapower.pf.run_dc_pf import _run_dc_pf
    from pandapower.pypower.makeYbus import makeYbus

    # as pandapower.powerflow._powerflow does before converting
    net._pd2ppc_lookups = {k: np.array([], dtype=np.int64)
                           for k in ("bus", "bus_dc", "ext_grid", "gen", "branch", "branch_dc")}
    ppc, ppci = _pd2ppc(net)
    ppc, ppci = _copy_ppc(ppc), _copy_ppc(ppci)
    dc = _copy_ppc(ppci)
    _run_dc_pf(dc, False)  # builds B, Bf and the phase-shift injections into dc["internal"]
    keep = {k: dc["internal"][k] for k in ("Bbus", "Bf", "Pbusinj", "Pfinj", "Cft", "shift", "ref",
                                           "pv", "pq", "ref_gens", "vsc", "baseMVA")}
    keep["branch"] = dc["internal"]["branch"].copy()  # recycle compares its taps
    base_mva, bus, _, branch, *_ = _get_pf_variables_from_ppci(_copy_ppc(ppci), True)
    keep["Ybus"], keep["Yf"], keep["Yt"] = makeYbus(base_mva, bus, branch)
    return _Rerun(ppc=ppc, ppci=ppci, n_ppci_bus=int(ppci["bus"].shape[0]), internal=keep)


_RECYCLE = {"bus_pq": True, "trafo": False, "gen": False}
"""pandapower's ``recycle`` keys: the injections change, the branches and generators not."""


def _rerun_pf(net: Any, rerun: _Rerun) -> None:
    """The rest of ``pandapower.runpp`` for new sgen P/Q on a net converted as ``rerun``:
    pandapower's own injection step (``_calc_pq_elements_and_add_on_ppc``), Newton-Raphson
    from the same start (DC angles: ``init_va_degree="dc"`` as ``runpp`` sets it, the same
    ``init_vm_pu``) and result extraction (``_ppci_to_net``), so the same result tables as a
    fresh ``runpp``, bit for bit — the first use on a network checks that (``_run_work_pf``).

    pandapower's ``runpp(recycle=...)`` reuses the same structure but always starts Newton
    from the previous run's results: other iterates, results that differ in the last bits
    and depend on what ran before (a flexibility request's evidence hashes them).
    Raises pandapower's exceptions (``LoadflowNotConverged``)."""
    from pandapower.build_bus import _calc_pq_elements_and_add_on_ppc
    from pandapower.powerflow import _ppci_to_net, _run_pf_algorithm
    from pandapower.pypower.idx_bus import PD, QD

    ppc, ppci = _copy_ppc(rerun.ppc), _copy_ppc(rerun.ppci)
    ppci["internal"].update(rerun.internal)
    net["converged"] = False
    net["_ppc"] = ppc
    _calc_pq_elements_and_add_on_ppc(net, ppc)
    # ppci's buses are ppc's in-service buses, first and in the same order (``_ppc2ppci``)
    n = rerun.n_ppci_bus
    ppci["bus"][:, PD] = ppc["bus"][:n, PD]
    ppci["bus"][:, QD] = ppc["bus"][:n, QD]
    options = net["_options"]
    options["recycle"] = dict(_RECYCLE)
    try:
        result = _run_pf_algorithm(ppci, options)
    finally:
        options["recycle"] = None
    _ppci_to_net(result, net)


def _result_tables(net: Any) -> dict[str, Any]:
    return {t: net[t].copy() for t in _RESULT_TABLES if t in net}


def _same_bits(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Result tables equal bit for bit (columns, index, dtypes; NaNs where NaNs)."""
    if a.keys() != b.keys():
        return False
    for t, x in a.items():
        y = b[t]
        if list(x.columns) != list(y.columns) or not x.index.equals(y.index):
            return False
        for c in x.columns:
            u, v = x[c].to_numpy(), y[c].to_numpy()
            if u.dtype != v.dtype or u.shape != v.shape:
                return False
            if u.dtype.kind in "fc":
                if u.tobytes() != v.tobytes():
                    return False
            elif not np.array_equal(u, v):
                return False
    return True


def _run_work_pf(work: _WorkNet) -> None:
    """``run_checked_pf`` on the work net, by ``_rerun_pf`` once the first run is kept.

    The first successful run is ``runpp``; the net is then converted once more
    (``_build_rerun``) and rerun on the same injections: only if that gives the same result
    tables bit for bit is the rerun used from then on (a pandapower version whose internals
    differ falls back to ``runpp`` every time). Raises ``GridError`` as ``run_checked_pf``."""
    net = work.net
    if work.rerun is None:
        run_checked_pf(net)
        if not work.checked:
            work.checked = True
            first = _result_tables(net)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rerun = _build_rerun(net)
                    _rerun_pf(net, rerun)
                ok = bool(net.converged) and _same_bits(first, _result_tables(net))
            except Exception:
                ok = False
            if ok:
                work.rerun = rerun
            else:
                run_checked_pf(net)  # the tables as runpp left them
        return
    rerun = work.rerun
    _solve_checked(net, lambda: _rerun_pf(net, rerun))


def _check_results(net: Any, balance_tol_mw: float = 1e-6) -> None:
    """The physical consistency checks of ``run_checked_pf`` on an already-solved net."""
    vm = net.res_bus.vm_pu.to_numpy()
    lookup = np.asarray(net._pd2ppc_lookups["bus"])
    n_int = net._ppc["internal"]["bus"].shape[0]
    idx = net.bus.index.to_numpy()
    supplied = np.array(
        [0 <= lookup[i] < n_int if i < len(lookup) else False for i in idx], dtype=bool
    )
    if not np.all(np.isfinite(vm[supplied])) or np.any(vm[supplied] <= 0):
        raise GridError("power flow returned non-finite or non-positive voltages")
    gen = sum(
        float(np.nansum(net[f"res_{t}"].p_mw.to_numpy()))
        for t in _GEN_TABLES
        if f"res_{t}" in net and len(net[f"res_{t}"])
    )
    load = sum(
        float(np.nansum(net[f"res_{t}"].p_mw.to_numpy()))
        for t in _LOAD_TABLES
        if f"res_{t}" in net and len(net[f"res_{t}"])
    )
    loss = sum(
        float(np.nansum(net[f"res_{t}"].pl_mw.to_numpy()))
        for t in _LOSS_TABLES
        if f"res_{t}" in net and len(net[f"res_{t}"])
    )
    scale = max(1.0, abs(gen) + abs(load))
    if not np.isfinite(gen + load + loss) or abs(gen - load - loss) > balance_tol_mw * scale:
        raise GridError(
            f"power flow does not balance: generation {gen:.6f} MW, load {load:.6f} MW, "
            f"losses {loss:.6f} MW"
        )


def _violations(
    limits: GridLimits,
    bus_vm: list[tuple[str, float]],
    branch_loading: list[tuple[str, float]],
    tol: float = 1e-9,
) -> tuple[Violation, ...]:
    out: list[Violation] = []
    for label, vm in bus_vm:
        if vm > limits.vm_max_pu + tol:
            out.append(Violation("overvoltage", label, float(vm), limits.vm_max_pu))
        elif vm < limits.vm_min_pu - tol:
            out.append(Violation("undervoltage", label, float(vm), limits.vm_min_pu))
    for label, ld in branch_loading:
        if ld > limits.max_loading_pct + tol:
            out.append(Violation("overload", label, float(ld), limits.max_loading_pct))
    return tuple(out)


def verify_schedule(
    model: GridModel,
    slot: int,
    net_injection_wh_by_cp: Mapping[str, int],
    *,
    limits: GridLimits = GridLimits(),
) -> FlowReport:
    """Run a pandapower power flow for a cleared schedule and list the limits it breaks.

    Parameters: ``net_injection_wh_by_cp`` gives every cp's net injection (export > 0) for
    ``slot``; reactive consumption is the cp's forecast for the slot.
    Raises ``GridError`` for a malformed schedule or a power flow that fails its checks.
    """
    x_wh = schedule_array(model, net_injection_wh_by_cp)
    q_mvar = -model.load_varh[:, model.column(slot)] / WH_PER_MW_SLOT
    ac_network(model)  # the supply check every entry point shares (cached after the first)
    work = _pp_work(model)
    net = work.net
    with work.lock:
        net.sgen["p_mw"] = x_wh / WH_PER_MW_SLOT
        net.sgen["q_mvar"] = q_mvar
        _run_work_pf(work)
        vm = net.res_bus.vm_pu
        cp_vm = vm.reindex([cp.bus for cp in model.cps]).to_numpy()
        if not np.all(np.isfinite(cp_vm)):
            lost = [cp.cp_id for cp, v in zip(model.cps, cp_vm, strict=True) if not np.isfinite(v)]
            raise GridError(f"connection points without supply in the power flow: {lost[:8]}")
        bus_vm = [(f"bus {i}", float(v)) for i, v in vm.items() if np.isfinite(v)]
        line_ld = [
            (f"line {i}", float(v))
            for i, v in net.res_line.loading_percent.items()
            if np.isfinite(v) and bool(net.line.at[i, "in_service"])
        ]
        trafo_ld = [
            (f"trafo {i}", float(v))
            for i, v in net.res_trafo.loading_percent.items()
            if np.isfinite(v) and bool(net.trafo.at[i, "in_service"])
        ]
        losses_mw = float(net.res_line.pl_mw.sum()) + float(net.res_trafo.pl_mw.sum())
        if "res_trafo3w" in net and len(net.res_trafo3w):
            losses_mw += float(net.res_trafo3w.pl_mw.sum())
        import_mw = float(net.res_ext_grid.p_mw.sum())
    return FlowReport(
        max_vm_pu=max(v for _, v in bus_vm),
        min_vm_pu=min(v for _, v in bus_vm),
        max_line_loading_pct=max((v for _, v in line_ld), default=0.0),
        max_trafo_loading_pct=max((v for _, v in trafo_ld), default=0.0),
        violations=_violations(limits, bus_vm, line_ld + trafo_ld),
        losses_wh=int(round(losses_mw * WH_PER_MW_SLOT)),
        grid_import_wh=int(round(import_mw * WH_PER_MW_SLOT)),
    )


# --------------------------------------------------------------------------- fast engine


@dataclass(frozen=True)
class FastFlow:
    """A fast-engine power flow: state and per-element quantities (internal use)."""

    v: npt.NDArray[np.complex128]
    vm_pu: FloatArray
    loading_pct: FloatArray
    converged: bool


def solve_fast(
    model: GridModel, slot: int, x_wh: npt.ArrayLike, v0: npt.NDArray[np.complex128] | None = None,
    *, chord: Any = None,
) -> FastFlow:
    """Power flow on the fast engine for net injections ``x_wh`` (cp order).

    ``chord``: SuperLU factors of the Jacobian at a nearby point (``_acpf.Sensitivities.lu``)
    to try the chord iteration with first, from ``v0`` (``_acpf.solve_pf_chord``); full
    Newton from ``v0`` if it does not converge."""
    acn = ac_network(model)
    s = _acpf.bus_injection(acn, wh_to_pu(model, x_wh), cp_q_pu(model, slot))
    sol = None
    if chord is not None and v0 is not None:
        sol = _acpf.solve_pf_chord(acn, s, chord, v0)
    if sol is None or not sol.converged:
        sol = _acpf.solve_pf(acn, s, v0=v0)
    return FastFlow(
        v=sol.v,
        vm_pu=np.abs(sol.v),
        loading_pct=_acpf.loading_pct(acn, sol.v),
        converged=sol.converged,
    )


def fast_violations(model: GridModel, flow: FastFlow, limits: GridLimits) -> tuple[Violation, ...]:
    """Violations of a fast-engine flow (non-convergence counts as undervoltage collapse)."""
    acn = ac_network(model)
    if not flow.converged:
        return (Violation("undervoltage", "network", 0.0, limits.vm_min_pu),)
    bus_vm = [(acn.bus_label(k), float(v)) for k, v in enumerate(flow.vm_pu)]
    br = [(acn.mon_label(j), float(v)) for j, v in enumerate(flow.loading_pct)]
    return _violations(limits, bus_vm, br)
