"""Networks, connection points and integer per-slot profiles.

``load_grid(spec)`` is the one entry point: a SimBench code (``"1-LV-rural1--0-sw"``), a
pandapower example (``"cigre-lv"``, ``"cigre-mv"``, ``"ieee-case33"``, ``"ieee-case14"`` ...)
or the path of a pandapower JSON file. The result is a ``GridModel``: the network in
*prosumer form* (every load, static generator and storage unit folded into one controllable
injection per connection point) plus yearly 15-minute profiles in integer Wh.

Sign convention used everywhere in ``gridledger.grid``: a connection point's *net injection*
is positive when it exports to the grid and negative when it imports (generator convention,
as pandapower's ``sgen``).
"""

from __future__ import annotations

import copy
import functools
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridledger.errors import GridError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SLOT_MINUTES = 15
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
WH_PER_MW_SLOT = 1_000_000 * SLOT_MINUTES / 60
"""Energy in Wh of 1 MW held for one slot (250 000 Wh for 15-minute slots)."""

DEFAULT_LV_CODE = "1-LV-rural1--0-sw"
DEFAULT_MV_CODE = "1-MV-semiurb--0-sw"

ProfileSource = Literal["simbench", "standard", "user"]

_SIMBENCH_CODE = re.compile(r"^\d-[A-Za-z0-9]+-[A-Za-z0-9_]+-[A-Za-z0-9_.]*-\d-(sw|no_sw)$")
_IEEE_CASES = {
    "ieee-case4gs": "case4gs",
    "ieee-case5": "case5",
    "ieee-case6ww": "case6ww",
    "ieee-case9": "case9",
    "ieee-case14": "case14",
    "ieee-case24": "case24_ieee_rts",
    "ieee-case30": "case30",
    "ieee-case33": "case33bw",
    "ieee-case39": "case39",
    "ieee-case57": "case57",
    "ieee-case118": "case118",
}
_PANDAPOWER_NETS = ("cigre-lv", "cigre-mv", *sorted(_IEEE_CASES))


@dataclass(frozen=True)
class ConnectionPoint:
    """One prosumer connection: a bus with loads, generators and/or storage behind one meter."""

    cp_id: str
    bus: int
    bus_name: str
    vn_kv: float
    capacity_w: int
    """Largest absolute load, generation or net injection over the profile year (>= 1 kW).
    Operating envelopes are shared out in proportion to it."""


@dataclass(frozen=True, eq=False)
class GridModel:
    """A network with connection points and integer Wh profiles (shape ``(n_cp, n_slots)``).

    Profiles: ``load_wh`` active consumption, ``load_varh`` reactive consumption, ``pv_wh``
    local generation (PV; in MV grids also wind/biomass static generators), ``storage_wh``
    storage net injection (discharge positive). All ``int64``, read-only.
    """

    name: str
    net: Any = field(repr=False)
    """pandapower network in prosumer form: one ``sgen`` named after each cp id; never mutate."""
    cps: tuple[ConnectionPoint, ...]
    load_wh: IntArray = field(repr=False)
    load_varh: IntArray = field(repr=False)
    pv_wh: IntArray = field(repr=False)
    storage_wh: IntArray = field(repr=False)
    profile_source: ProfileSource = "simbench"
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cp_ids(self) -> tuple[str, ...]:
        """Connection-point ids, sorted."""
        return tuple(cp.cp_id for cp in self.cps)

    @property
    def n_slots(self) -> int:
        """Number of 15-minute slots in the profiles."""
        return int(self.load_wh.shape[1])

    @property
    def n_buses(self) -> int:
        """Number of buses of the network."""
        return int(len(self.net.bus))

    def cp_index(self, cp_id: str) -> int:
        """Row of ``cp_id`` in the profile arrays; raises ``GridError`` if unknown."""
        index: dict[str, int] = self._cache.setdefault(
            "cp_index", {cp: i for i, cp in enumerate(self.cp_ids)}
        )
        try:
            return index[cp_id]
        except KeyError:
            raise GridError(f"unknown connection point {cp_id!r} in grid {self.name}") from None

    def check_slot(self, slot: int) -> int:
        """Return ``slot`` if the profiles cover it, else raise ``GridError``."""
        if not 0 <= slot < self.n_slots:
            raise GridError(f"slot {slot} outside the profiles of {self.name} (0..{self.n_slots - 1})")
        return int(slot)

    def net_injection_wh(self, slot: int) -> IntArray:
        """Forecast net injection per cp for ``slot`` (PV + storage - load), cp order."""
        s = self.check_slot(slot)
        out: IntArray = self.pv_wh[:, s] + self.storage_wh[:, s] - self.load_wh[:, s]
        return out

    def forecast_wh_by_cp(self, slot: int) -> dict[str, int]:
        """Forecast net injection for ``slot`` as ``{cp_id: Wh}``."""
        return dict(zip(self.cp_ids, (int(v) for v in self.net_injection_wh(slot)), strict=True))

    def load_wh_by_cp(self, slot: int) -> dict[str, int]:
        """Forecast consumption for ``slot`` as ``{cp_id: Wh}``."""
        s = self.check_slot(slot)
        return dict(zip(self.cp_ids, (int(v) for v in self.load_wh[:, s]), strict=True))

    def pv_wh_by_cp(self, slot: int) -> dict[str, int]:
        """Forecast local generation for ``slot`` as ``{cp_id: Wh}``."""
        s = self.check_slot(slot)
        return dict(zip(self.cp_ids, (int(v) for v in self.pv_wh[:, s]), strict=True))


def load_grid(spec: str = DEFAULT_LV_CODE) -> GridModel:
    """Load a network with profiles.

    Parameters: ``spec`` is a SimBench code, ``"cigre-lv"``, ``"cigre-mv"``, ``"ieee-caseNN"``
    or a path to a pandapower JSON file.
    Returns a cached, immutable ``GridModel`` (the same object for the same spec).
    Raises ``GridError`` for an unknown code, a file that does not load, or profiles with
    gaps/NaN.
    """
    if os.path.sep in spec or spec.endswith(".json") or os.path.exists(spec):
        path = os.path.abspath(spec)
        try:
            mtime = os.path.getmtime(path)
        except OSError as exc:
            raise GridError(f"grid file {spec!r} does not exist or cannot be read: {exc}") from None
        return _load_file_cached(path, mtime)
    return _load_named_cached(spec.strip())


@functools.lru_cache(maxsize=8)
def _load_named_cached(spec: str) -> GridModel:
    key = spec.lower()
    if key in ("cigre-lv", "cigre-mv") or key in _IEEE_CASES:
        return _from_pandapower_example(key)
    if _SIMBENCH_CODE.match(spec):
        return _from_simbench(spec)
    raise GridError(
        f"unknown grid spec {spec!r}: expected a SimBench code such as {DEFAULT_LV_CODE!r}, "
        f"one of {', '.join(_PANDAPOWER_NETS)}, or a path to a pandapower .json file"
    )


@functools.lru_cache(maxsize=4)
def _load_file_cached(path: str, mtime: float) -> GridModel:
    import pandapower as pp

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = pp.from_json(path)
    except Exception as exc:  # pandapower raises many types for a bad file
        raise GridError(f"cannot load pandapower network from {path!r}: {exc}") from None
    if not hasattr(net, "bus") or len(net.bus) == 0:
        raise GridError(f"{path!r} holds no pandapower network with buses")
    if _has_simbench_profiles(net):
        import simbench as sb

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                profiles = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
            except Exception as exc:
                raise GridError(f"profiles in {path!r} cannot be applied: {exc}") from None
        return _build_model(os.path.basename(path), net, profiles, "simbench")
    return _build_model(os.path.basename(path), net, _standard_profiles(net), "standard")


def cache_dir() -> Path:
    """Where converted networks are kept between runs: ``$GRIDLEDGER_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/gridledger``, else ``~/.cache/gridledger``."""
    env = os.environ.get("GRIDLEDGER_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gridledger"


def _simbench_cache_file(code: str) -> Path:
    import pandapower
    import simbench

    # keyed by both versions: another simbench (data) or pandapower (tables) converts anew
    return (cache_dir() / "simbench"
            / f"{code}.sb{simbench.__version__}.pp{pandapower.__version__}.pkl")


@functools.lru_cache(maxsize=4)
def simbench_net(code: str) -> Any:
    """SimBench's own pandapower net for ``code`` (as ``simbench.get_simbench_net`` builds it,
    with its relative profiles in ``net.profiles``). Shared: callers must not modify it.

    SimBench builds a net by filtering its CSV tables of every grid, which for an MV net with
    its LV feeders takes minutes; the result is kept as a pickle under ``cache_dir()`` keyed
    by the code and the simbench and pandapower versions (this process's own writes only, so
    loading it is as safe as the package itself). Raises ``GridError`` for an unknown code.
    """
    path = _simbench_cache_file(code)
    try:
        with open(path, "rb") as fh:
            net = pickle.load(fh)  # our own file (written below), in the user's own cache
        if hasattr(net, "bus") and len(net.bus):
            return net
    except Exception:  # absent, unreadable, or from an incompatible build: convert again
        pass
    import simbench as sb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net = sb.get_simbench_net(code)
        except Exception as exc:
            raise GridError(
                f"unknown SimBench code {code!r} ({exc}); LV codes shipped offline include "
                "1-LV-rural1--0-sw, 1-LV-rural2--0-sw, 1-LV-rural3--0-sw, 1-LV-semiurb4--0-sw, "
                "1-LV-semiurb5--0-sw, 1-LV-urban6--0-sw; MV: 1-MV-rural--0-sw, "
                "1-MV-semiurb--0-sw, 1-MV-urban--0-sw, 1-MV-comm--0-sw"
            ) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(net, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
    except OSError:  # a read-only home: the run goes on without the cache
        pass
    return net


def simbench_load_profiles(code: str) -> dict[int, tuple[str, ...]]:
    """Bus -> the SimBench profile names of the loads at it (sorted), for a SimBench
    ``code``; ``{}`` for anything else (a file, a pandapower example)."""
    if not _SIMBENCH_CODE.match(code):
        return {}
    try:
        net = simbench_net(code)
    except GridError:
        return {}
    out: dict[int, set[str]] = {}
    for bus, prof in zip(net.load.bus, net.load.profile.astype(str), strict=True):
        out.setdefault(int(bus), set()).add(prof)
    return {b: tuple(sorted(p)) for b, p in out.items()}


def _from_simbench(code: str) -> GridModel:
    import simbench as sb

    net = simbench_net(code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiles = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    return _build_model(code, net, profiles, "simbench")


def _from_pandapower_example(key: str) -> GridModel:
    import pandapower.networks as pn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if key == "cigre-lv":
            net = pn.create_cigre_network_lv()
        elif key == "cigre-mv":
            net = pn.create_cigre_network_mv(with_der="pv_wind")
        else:
            net = getattr(pn, _IEEE_CASES[key])()
    return _build_model(key, net, _standard_profiles(net), "standard")


def _has_simbench_profiles(net: Any) -> bool:
    profiles = getattr(net, "profiles", None)
    return (
        isinstance(profiles, dict)
        and len(profiles) > 0
        and "profile" in net.load.columns
        and len(net.load) > 0
    )


@functools.lru_cache(maxsize=1)
def _all_standard_profiles() -> dict[str, pd.DataFrame]:
    import simbench as sb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiles: dict[str, pd.DataFrame] = sb.get_all_simbench_profiles(0)
    return profiles


_HOUSEHOLD = ("H0-A", "H0-B", "H0-C")
_PV = ("PV1", "PV2", "PV3", "PV4", "PV5", "PV6", "PV7", "PV8")


def standard_pv_profile(name: str = "PV3") -> FloatArray:
    """A SimBench relative PV profile (per unit of installed peak, 35 136 slots)."""
    ren = _all_standard_profiles()["renewables"]
    if name not in ren.columns:
        raise GridError(f"unknown SimBench PV profile {name!r}; known: {', '.join(_PV)}")
    out: FloatArray = ren[name].to_numpy(dtype=np.float64)
    return out


def _standard_profiles(net: Any) -> dict[tuple[str, str], pd.DataFrame]:
    """Absolute yearly profiles for a network without its own (CIGRE, IEEE, user JSON).

    SimBench's standard relative profiles are applied to each element's rating: loads rotate
    over the household profiles H0-A/B/C (commercial 'C*'/industrial 'I*' CIGRE loads get G0-A
    / G3-A), static generators rotate over PV1..PV8. The rotation by element position is
    deterministic, so the same file always gives the same profiles.
    """
    allp = _all_standard_profiles()
    load_rel, ren_rel = allp["load"], allp["renewables"]
    n = len(load_rel)
    out: dict[tuple[str, str], pd.DataFrame] = {}
    p_cols, q_cols = {}, {}
    for pos, (idx, row) in enumerate(net.load.iterrows()):
        name = str(row.get("name") or "")
        if name.startswith("Load C"):
            prof = "G0-A"
        elif name.startswith("Load I"):
            prof = "G3-A"
        else:
            prof = _HOUSEHOLD[pos % len(_HOUSEHOLD)]
        scale = float(row.get("scaling", 1.0))
        p_cols[idx] = load_rel[f"{prof}_pload"].to_numpy() * float(row.p_mw) * scale
        q_cols[idx] = load_rel[f"{prof}_qload"].to_numpy() * float(row.q_mvar) * scale
    out[("load", "p_mw")] = pd.DataFrame(p_cols, index=range(n))
    out[("load", "q_mvar")] = pd.DataFrame(q_cols, index=range(n))
    s_cols = {}
    for pos, (idx, row) in enumerate(net.sgen.iterrows()):
        scale = float(row.get("scaling", 1.0))
        s_cols[idx] = ren_rel[_PV[pos % len(_PV)]].to_numpy() * float(row.p_mw) * scale
    out[("sgen", "p_mw")] = pd.DataFrame(s_cols, index=range(n))
    out[("storage", "p_mw")] = pd.DataFrame(
        {idx: np.zeros(n) for idx in net.storage.index}, index=range(n)
    )
    return out


def _profile_frame(
    profiles: Mapping[tuple[str, str], pd.DataFrame], element: str, column: str, index: Any
) -> pd.DataFrame | None:
    frame = profiles.get((element, column))
    if frame is None or frame.shape[1] == 0:
        return None
    missing = [i for i in index if i not in frame.columns]
    if missing:
        raise GridError(f"profiles lack {element} {missing[:5]} ({column})")
    return frame


def _check_finite(frame: pd.DataFrame, element: str, column: str, net: Any) -> None:
    values = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        idx = frame.columns[cols[0]]
        table = getattr(net, element)
        name = table.at[idx, "name"] if "name" in table.columns and idx in table.index else idx
        prof = table.at[idx, "profile"] if "profile" in table.columns and idx in table.index else "?"
        raise GridError(
            f"{column} profile {prof!r} of {element} {idx} ({name!r}) has {int(bad[:, cols[0]].sum())} "
            f"NaN/inf values, first at slot {int(rows[0])}; {int(bad.sum())} bad values in all"
        )


def _build_model(
    name: str,
    source_net: Any,
    profiles: Mapping[tuple[str, str], pd.DataFrame],
    source: ProfileSource,
) -> GridModel:
    """Fold loads/sgens/storage into one injection per connection point; convert to Wh."""
    import pandapower as pp

    net = copy.deepcopy(source_net)
    slack_buses = {int(b) for b in net.ext_grid.bus[net.ext_grid.in_service]}
    if not slack_buses:
        raise GridError(f"network {name} has no in-service ext_grid (slack)")

    def active(table: pd.DataFrame) -> pd.DataFrame:
        return table[table.in_service.astype(bool)] if len(table) else table

    loads, sgens, storages = active(net.load), active(net.sgen), active(net.storage)
    cp_buses = sorted(
        (set(map(int, loads.bus)) | set(map(int, sgens.bus)) | set(map(int, storages.bus)))
        - slack_buses
    )
    if not cp_buses:
        raise GridError(f"network {name} has no load, sgen or storage away from the slack bus")
    width = max(5, len(str(max(cp_buses))))
    cp_ids = [f"cp-{b:0{width}d}" for b in cp_buses]
    check_supplied(net, cp_buses, cp_ids, name)
    col_of_bus = {b: i for i, b in enumerate(cp_buses)}

    lengths = {
        f.shape[0] for key, f in profiles.items() if f is not None and f.shape[1] > 0
    }
    if len(lengths) > 1:
        raise GridError(f"profiles of {name} have different lengths {sorted(lengths)} (gaps)")
    n_slots = lengths.pop() if lengths else 0
    if n_slots == 0 or n_slots % SLOTS_PER_DAY:
        raise GridError(
            f"profiles of {name} have {n_slots} rows: not whole days of 15-minute slots (gaps)"
        )

    def fold(element: str, column: str, table: pd.DataFrame, sign: float) -> FloatArray:
        out = np.zeros((len(cp_buses), n_slots))
        if len(table) == 0:
            return out
        frame = _profile_frame(profiles, element, column, table.index)
        if frame is None:
            raise GridError(f"profiles of {name} lack {element} {column}")
        frame = frame[list(table.index)]
        _check_finite(frame, element, column, net)
        values = frame.to_numpy(dtype=np.float64)
        for j, bus in enumerate(table.bus):
            if int(bus) in col_of_bus:
                out[col_of_bus[int(bus)]] += sign * values[:, j]
        return out

    load_p = fold("load", "p_mw", loads, 1.0)
    load_q = fold("load", "q_mvar", loads, 1.0) if len(loads) else np.zeros_like(load_p)
    pv_p = fold("sgen", "p_mw", sgens, 1.0)
    # pandapower storage is load-referenced (positive = charging): injection is -p.
    st_p = fold("storage", "p_mw", storages, -1.0)

    def to_wh(a: FloatArray) -> IntArray:
        out = np.rint(a * WH_PER_MW_SLOT).astype(np.int64)
        out.setflags(write=False)
        return out

    load_wh, load_varh, pv_wh, st_wh = to_wh(load_p), to_wh(load_q), to_wh(pv_p), to_wh(st_p)
    if (load_wh < 0).any():
        # SimBench loads are non-negative; a negative load is a data error, not a prosumer.
        # (Generation may dip below zero: wind turbines draw their own consumption at calm.)
        i, s = np.argwhere(load_wh < 0)[0]
        raise GridError(f"load profile of {cp_ids[i]} in {name} is negative at slot {s}")

    cps = tuple(
        ConnectionPoint(
            cp_id=cp_ids[i],
            bus=b,
            bus_name=str(net.bus.at[b, "name"]) if "name" in net.bus.columns else str(b),
            vn_kv=float(net.bus.at[b, "vn_kv"]),
            capacity_w=_capacity_w(load_wh[i], pv_wh[i], st_wh[i]),
        )
        for i, b in enumerate(cp_buses)
    )

    # Prosumer form: drop loads/sgens/storage (at the slack too: they only change the slack's
    # output), add one zero sgen per cp that power flows later set to the cp's net injection.
    for table in ("load", "sgen", "storage"):
        if len(net[table]):
            net[table] = net[table].iloc[0:0]
    pp.create_sgens(
        net, cp_buses, p_mw=np.zeros(len(cp_buses)), q_mvar=np.zeros(len(cp_buses)), name=cp_ids
    )
    if "controller" in net and len(net.controller):
        net.controller = net.controller.iloc[0:0]
    if hasattr(net, "profiles"):
        net.profiles = {}
    return GridModel(
        name=name,
        net=net,
        cps=cps,
        load_wh=load_wh,
        load_varh=load_varh,
        pv_wh=pv_wh,
        storage_wh=st_wh,
        profile_source=source,
    )


def check_supplied(net: Any, cp_buses: list[int], cp_ids: list[str], name: str) -> None:
    """Refuse connection points that no path connects to a slack: a bus out of service, or
    one cut off by an open switch or an out-of-service line or transformer.

    The one check every grid entry point relies on (``load_grid`` runs it; envelopes,
    verification, curtailment, measurements and detection all pass through
    ``powerflow.ac_network``, which runs it on the net they use): a power flow would
    otherwise leave such a cp's injection out without a word. Raises ``GridError`` naming
    each cp, its bus, why, and the open switches at the cut.
    """
    import pandapower.topology as top

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unsupplied = {int(b) for b in top.unsupplied_buses(net)}
    in_service = net.bus.in_service.astype(bool)
    problems: list[str] = []
    for b, cp in zip(cp_buses, cp_ids, strict=True):
        if b not in net.bus.index:
            problems.append(f"{cp} (bus {b}: no such bus)")
        elif not bool(in_service.at[b]):
            problems.append(f"{cp} (bus {b}: bus out of service)")
        elif b in unsupplied:
            problems.append(f"{cp} (bus {b}: isolated from the slack)")
    if not problems:
        return
    cut = {int(b) for b in unsupplied}
    opened: list[str] = []
    if "switch" in net and len(net.switch):
        for idx, sw in net.switch.iterrows():
            if bool(sw.closed):
                continue
            ends = {int(sw.bus)}
            if sw.et == "b":
                ends.add(int(sw.element))
            elif sw.et == "l" and int(sw.element) in net.line.index:
                ends |= {int(net.line.at[sw.element, "from_bus"]), int(net.line.at[sw.element, "to_bus"])}
            elif sw.et == "t" and int(sw.element) in net.trafo.index:
                ends |= {int(net.trafo.at[sw.element, "hv_bus"]), int(net.trafo.at[sw.element, "lv_bus"])}
            if ends & cut:
                opened.append(str(idx))
    where = f"; open switches at the cut: {', '.join(opened)}" if opened else ""
    raise GridError(
        f"network {name}: connection points without supply: {', '.join(problems[:8])}"
        + (" ..." if len(problems) > 8 else "")
        + f"{where}. Such a cp can neither trade nor be metered: close the switch or put the "
        "bus/branch in service, or set its loads, static generators and storage out of service"
    )


def _capacity_w(load_wh: IntArray, pv_wh: IntArray, storage_wh: IntArray) -> int:
    net = pv_wh + storage_wh - load_wh
    peak_wh = max(int(load_wh.max(initial=0)), int(pv_wh.max(initial=0)), int(np.abs(net).max(initial=0)))
    return max(1000, int(peak_wh * 60 // SLOT_MINUTES))


def with_profiles(
    model: GridModel,
    *,
    load_wh: npt.ArrayLike,
    pv_wh: npt.ArrayLike,
    storage_wh: npt.ArrayLike | None = None,
    load_varh: npt.ArrayLike | None = None,
    name: str | None = None,
) -> GridModel:
    """A copy of ``model`` with the caller's profiles (shape ``(n_cp, n_slots)``, Wh per slot).

    ``load_varh`` defaults to the model's reactive/active ratio per cp. Raises ``GridError``
    naming the first NaN/inf, negative value or shape mismatch.
    """
    n_cp = len(model.cps)

    def check(label: str, a: npt.ArrayLike, nonneg: bool) -> IntArray:
        arr = np.asarray(a)
        if arr.ndim != 2 or arr.shape[0] != n_cp:
            raise GridError(f"{label} must have shape ({n_cp}, n_slots), got {arr.shape}")
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr)
            if bad.any():
                i, s = np.argwhere(bad)[0]
                raise GridError(
                    f"{label} has {int(bad.sum())} NaN/inf values (gaps), first for "
                    f"{model.cps[i].cp_id} at slot {s}"
                )
            arr = np.rint(arr)
        elif arr.dtype.kind not in "iu":
            raise GridError(f"{label} must be numeric, got dtype {arr.dtype}")
        out = arr.astype(np.int64)
        if nonneg and (out < 0).any():
            i, s = np.argwhere(out < 0)[0]
            raise GridError(f"{label} is negative for {model.cps[i].cp_id} at slot {s}")
        if out.shape[1] == 0 or out.shape[1] % SLOTS_PER_DAY:
            raise GridError(f"{label} has {out.shape[1]} slots: not whole days (gaps)")
        out.setflags(write=False)
        return out

    lw = check("load_wh", load_wh, True)
    pw = check("pv_wh", pv_wh, False)
    sw = check("storage_wh", storage_wh, False) if storage_wh is not None else np.zeros_like(lw)
    if sw.shape != lw.shape or pw.shape != lw.shape:
        raise GridError(f"profile shapes differ: load {lw.shape}, pv {pw.shape}, storage {sw.shape}")
    if load_varh is None:
        ratio = model.load_varh.sum(axis=1) / np.maximum(model.load_wh.sum(axis=1), 1)
        qv = np.rint(lw * ratio[:, None]).astype(np.int64)
        qv.setflags(write=False)
    else:
        qv = check("load_varh", load_varh, False)
        if qv.shape != lw.shape:
            raise GridError(f"load_varh shape {qv.shape} differs from load_wh {lw.shape}")
    cps = tuple(
        ConnectionPoint(cp.cp_id, cp.bus, cp.bus_name, cp.vn_kv, _capacity_w(lw[i], pw[i], sw[i]))
        for i, cp in enumerate(model.cps)
    )
    return GridModel(
        name=name or model.name,
        net=model.net,
        cps=cps,
        load_wh=lw,
        load_varh=qv,
        pv_wh=pw,
        storage_wh=sw,
        profile_source="user",
        _cache=_shared_network_cache(model),
    )


def _shared_network_cache(model: GridModel) -> dict[Any, Any]:
    """Caches that depend only on the network (keys starting ``"net:"``) carry over to copies."""

    def is_net(key: Any) -> bool:
        head = key[0] if isinstance(key, tuple) and key else key
        return isinstance(head, str) and head.startswith("net:")

    return {k: v for k, v in model._cache.items() if is_net(k)}


def add_der(
    model: GridModel,
    *,
    pv_kwp_per_cp: float = 0.0,
    ev_kw_per_cp: float = 0.0,
    ev_start_hour: float = 18.0,
    ev_hours: float = 3.0,
    pv_profile: str = "PV3",
    name: str | None = None,
) -> GridModel:
    """Stress scenario: add ``pv_kwp_per_cp`` of PV and an ``ev_kw_per_cp`` EV charger to every cp.

    PV follows the SimBench relative profile ``pv_profile``; every EV charges at full power
    from ``ev_start_hour`` for ``ev_hours`` each day (the "everyone plugs in after work" case).
    This is how the stock SimBench LV grids, which are sized for today's load, are pushed
    into voltage and loading violations for the envelope comparison.
    """
    if pv_kwp_per_cp < 0 or ev_kw_per_cp < 0 or not 0 <= ev_start_hour < 24 or ev_hours < 0:
        raise GridError("add_der: PV/EV sizes and hours must be non-negative, start in [0, 24)")
    n = model.n_slots
    pv_rel = standard_pv_profile(pv_profile)
    reps = -(-n // len(pv_rel))
    pv_rel = np.tile(pv_rel, reps)[:n]
    pv_add = np.rint(pv_rel * pv_kwp_per_cp * 1000 * SLOT_MINUTES / 60).astype(np.int64)
    slot_of_day = np.arange(n) % SLOTS_PER_DAY
    start = int(round(ev_start_hour * 60 / SLOT_MINUTES))
    stop = start + int(round(ev_hours * 60 / SLOT_MINUTES))
    on = ((slot_of_day >= start) & (slot_of_day < stop)) | (slot_of_day < stop - SLOTS_PER_DAY)
    ev_add = np.where(on, int(round(ev_kw_per_cp * 1000 * SLOT_MINUTES / 60)), 0).astype(np.int64)
    return with_profiles(
        model,
        load_wh=model.load_wh + ev_add[None, :],
        pv_wh=model.pv_wh + pv_add[None, :],
        storage_wh=model.storage_wh,
        # EV chargers run at unity power factor: keep the household reactive profile.
        load_varh=model.load_varh,
        name=name or f"{model.name}+pv{pv_kwp_per_cp:g}kWp+ev{ev_kw_per_cp:g}kW",
    )

