"""Networks, connection points and integer per-slot profiles.

``load_grid(spec)`` is the one entry point: a SimBench code (``"1-LV-rural1--0-sw"``), a
pandapower example (``"cigre-lv"``, ``"cigre-mv"``, ``"ieee-case33"``, ``"ieee-case14"`` ...)
or the path of a pandapower JSON file. The result is a ``GridModel``: the network in
*prosumer form* (every load, static generator and storage unit folded into one controllable
injection per connection point) plus 15-minute profiles in integer Wh: the whole profile
year, or only a window of it (``load_grid(spec, window=(first_slot, end_slot))``: a run's days on
a network with thousands of connection points) with the per-cp figures of the whole year that
sizing needs (``YearFigures``).

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
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridledger.errors import GridError
from gridledger.files import replacing

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
class YearFigures:
    """Per-cp figures of the whole profile year (cp order, ``int64``), kept with every model so
    that one holding only a window of the year sizes and equips connection points as the
    full-year model does: capacity (``ConnectionPoint.capacity_w``) on the year's peaks, DER on
    the year's generation and storage, reactive consumption on the year's ratio."""

    pv_peak_wh: IntArray
    """Largest ``pv_wh`` of the year (> 0: the cp has generation)."""
    storage_peak_wh: IntArray
    """Largest absolute ``storage_wh`` of the year (> 0: the cp has storage)."""
    load_sum_wh: IntArray
    load_varh_sum: IntArray

    def reactive_ratio(self) -> FloatArray:
        """Reactive per active consumption over the year, per cp (varh/Wh)."""
        out: FloatArray = self.load_varh_sum / np.maximum(self.load_sum_wh, 1)
        return out


@dataclass(frozen=True, eq=False)
class GridModel:
    """A network with connection points and integer Wh profiles (shape ``(n_cp, columns)``).

    Profiles: ``load_wh`` active consumption, ``load_varh`` reactive consumption, ``pv_wh``
    local generation (PV; in MV grids also wind/biomass static generators), ``storage_wh``
    storage net injection (discharge positive). All ``int64``, read-only. Column ``k`` is slot
    ``first_slot + k`` of the profile year: the whole year (``first_slot`` 0, ``n_slots``
    columns), or the ``window`` a run asked for. Index them with ``column(slot)``; every method
    takes profile-year slots and raises ``GridError`` outside the window.
    """

    name: str
    net: Any = field(repr=False)
    """pandapower network in prosumer form: one ``sgen`` named after each cp id; never mutate."""
    cps: tuple[ConnectionPoint, ...]
    load_wh: IntArray = field(repr=False)
    load_varh: IntArray = field(repr=False)
    pv_wh: IntArray = field(repr=False)
    storage_wh: IntArray = field(repr=False)
    year: YearFigures = field(repr=False)
    first_slot: int
    """Profile-year slot of the arrays' first column."""
    year_slots: int
    """Slots in the profile year (``n_slots``)."""
    profile_source: ProfileSource = "simbench"
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cp_ids(self) -> tuple[str, ...]:
        """Connection-point ids, sorted (built once: callers index it in loops)."""
        ids = self._cache.get("cp_ids")
        if ids is None:
            ids = self._cache["cp_ids"] = tuple(cp.cp_id for cp in self.cps)
        return ids

    @property
    def n_slots(self) -> int:
        """Number of 15-minute slots in the profile year."""
        return self.year_slots

    @property
    def window(self) -> range:
        """The profile-year slots the arrays hold."""
        return range(self.first_slot, self.first_slot + int(self.load_wh.shape[1]))

    @property
    def full_year(self) -> bool:
        """Whether the arrays hold the whole profile year."""
        return self.first_slot == 0 and int(self.load_wh.shape[1]) == self.year_slots

    @property
    def n_buses(self) -> int:
        """Number of buses of the network."""
        return int(len(self.net.bus))

    def cp_index(self, cp_id: str) -> int:
        """Row of ``cp_id`` in the profile arrays; raises ``GridError`` if unknown."""
        index: dict[str, int] | None = self._cache.get("cp_index")
        if index is None:  # once: setdefault's argument was built on every call (5,141 cps)
            index = self._cache["cp_index"] = {cp: i for i, cp in enumerate(self.cp_ids)}
        try:
            return index[cp_id]
        except KeyError:
            raise GridError(f"unknown connection point {cp_id!r} in grid {self.name}") from None

    def check_slot(self, slot: int) -> int:
        """Return ``slot`` if the profiles cover it, else raise ``GridError``."""
        if not 0 <= slot < self.n_slots:
            raise GridError(f"slot {slot} outside the profiles of {self.name} (0..{self.n_slots - 1})")
        if slot not in self.window:
            raise GridError(
                f"slot {slot} outside the window {self.window.start}..{self.window.stop - 1} of "
                f"{self.name}'s profile year that this model holds (load_grid(..., window=...))"
            )
        return int(slot)

    def column(self, slot: int) -> int:
        """Column of profile-year ``slot`` in the arrays; raises ``GridError`` outside them."""
        return self.check_slot(slot) - self.first_slot

    def net_injection_wh(self, slot: int) -> IntArray:
        """Forecast net injection per cp for ``slot`` (PV + storage - load), cp order."""
        s = self.column(slot)
        out: IntArray = self.pv_wh[:, s] + self.storage_wh[:, s] - self.load_wh[:, s]
        return out

    def forecast_wh_by_cp(self, slot: int) -> dict[str, int]:
        """Forecast net injection for ``slot`` as ``{cp_id: Wh}``."""
        return dict(zip(self.cp_ids, (int(v) for v in self.net_injection_wh(slot)), strict=True))

    def load_wh_by_cp(self, slot: int) -> dict[str, int]:
        """Forecast consumption for ``slot`` as ``{cp_id: Wh}``."""
        s = self.column(slot)
        return dict(zip(self.cp_ids, (int(v) for v in self.load_wh[:, s]), strict=True))

    def pv_wh_by_cp(self, slot: int) -> dict[str, int]:
        """Forecast local generation for ``slot`` as ``{cp_id: Wh}``."""
        s = self.column(slot)
        return dict(zip(self.cp_ids, (int(v) for v in self.pv_wh[:, s]), strict=True))


def load_grid(spec: str = DEFAULT_LV_CODE, *, window: tuple[int, int] | None = None) -> GridModel:
    """Load a network with profiles.

    Parameters: ``spec`` is a SimBench code, ``"cigre-lv"``, ``"cigre-mv"``, ``"ieee-caseNN"``
    or a path to a pandapower JSON file. ``window`` = ``(first_slot, end_slot)``: hold only
    these profile-year slots (clipped to the year) — the rest of the year is read once for the
    per-cp figures sizing needs (``YearFigures``) and dropped, so memory follows the window,
    not the year (an MV grid with its LV feeders has ~5,000-10,000 cps: 1.4-2.7 GB per yearly
    array). Every value in the window equals the full-year model's.
    Returns a cached, immutable ``GridModel`` (the same object for the same spec and window).
    Raises ``GridError`` for an unknown code, a file that does not load, profiles with
    gaps/NaN, or an empty window.
    """
    if os.path.sep in spec or spec.endswith(".json") or os.path.exists(spec):
        path = os.path.abspath(spec)
        try:
            mtime = os.path.getmtime(path)
        except OSError as exc:
            raise GridError(f"grid file {spec!r} does not exist or cannot be read: {exc}") from None
        year = _file_year(path, mtime)
    else:
        year = _named_year(spec.strip())
    first, end = (0, year.year_slots) if window is None else window
    first, end = max(0, int(first)), min(year.year_slots, int(end))
    if first >= end:
        raise GridError(f"window {window} holds no slot of {year.name}'s profile year "
                        f"(0..{year.year_slots - 1})")
    return _model_of(year, first, end)


@functools.lru_cache(maxsize=8)
def _model_of(year: _Year, first: int, end: int) -> GridModel:
    return year.model(first, end)


@functools.lru_cache(maxsize=8)
def _named_year(spec: str) -> _Year:
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
def _file_year(path: str, mtime: float) -> _Year:
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
        return _Year.build(os.path.basename(path), net, _AbsoluteFrames(profiles), "simbench")
    return _Year.build(os.path.basename(path), net, _AbsoluteFrames(_standard_profiles(net)),
                       "standard")


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
        # atomic: a concurrent reader sees the whole file or none (a tmp name per process)
        with replacing(path, f".{os.getpid()}.tmp") as tmp, open(tmp, "wb") as fh:
            pickle.dump(net, fh, protocol=pickle.HIGHEST_PROTOCOL)
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


def _from_simbench(code: str) -> _Year:
    net = simbench_net(code)
    return _Year.build(code, net, _SimbenchRelative(net), "simbench")


def _from_pandapower_example(key: str) -> _Year:
    import pandapower.networks as pn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if key == "cigre-lv":
            net = pn.create_cigre_network_lv()
        elif key == "cigre-mv":
            net = pn.create_cigre_network_mv(with_der="pv_wind")
        else:
            net = getattr(pn, _IEEE_CASES[key])()
    return _Year.build(key, net, _AbsoluteFrames(_standard_profiles(net)), "standard")


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


class _ProfileSource(Protocol):
    """Absolute yearly profiles (MW or Mvar per slot) of a network's elements, by rows."""

    def length(self, name: str) -> int:
        """Rows (slots) of the profile year; ``GridError`` if the profiles disagree (gaps)."""
        ...

    def values(self, element: str, column: str, table: pd.DataFrame, rows: slice,
               name: str, net: Any) -> FloatArray | None:
        """Elements of ``table`` (its order) × ``rows``; ``None`` when there are none."""
        ...


class _AbsoluteFrames:
    """Absolute profiles as frames of the whole year (``simbench.get_absolute_values`` of a
    file's net, or the standard profiles of a pandapower example): small networks only."""

    def __init__(self, profiles: Mapping[tuple[str, str], pd.DataFrame]) -> None:
        self.profiles = profiles

    def length(self, name: str) -> int:
        lengths = {f.shape[0] for f in self.profiles.values() if f is not None and f.shape[1] > 0}
        if len(lengths) > 1:
            raise GridError(f"profiles of {name} have different lengths {sorted(lengths)} (gaps)")
        return lengths.pop() if lengths else 0

    def values(self, element: str, column: str, table: pd.DataFrame, rows: slice,
               name: str, net: Any) -> FloatArray | None:
        frame = _profile_frame(self.profiles, element, column, table.index)
        if frame is None:
            return None
        frame = frame[list(table.index)].iloc[rows]
        values: FloatArray = frame.to_numpy(dtype=np.float64)
        _check_finite(values, frame.columns, element, column, net, rows.start)
        return np.ascontiguousarray(values.T)


class _SimbenchRelative:
    """Absolute profiles of any rows, computed from SimBench's relative profiles as
    ``simbench.get_absolute_profiles_from_relative_profiles`` does for the whole year
    (relative value of the element's ``profile`` column, 1 without one, times its ``p_mw`` /
    ``q_mvar``; loads use ``<profile>_pload`` / ``_qload``; static generators the power-plant
    and renewable profiles merged) — the same float operations, so the same values, without
    ever holding a yearly frame per element (12.4 GB for ``1-MVLV-semiurb-all-2-sw``)."""

    def __init__(self, net: Any) -> None:
        self.net = net

    @functools.cached_property
    def _sgen_profiles(self) -> pd.DataFrame:
        from simbench.networks.profiles import merge_dataframes

        frames = [self.net.profiles[k] for k in ("powerplants", "renewables") if k in self.net.profiles]
        merged: pd.DataFrame = merge_dataframes(frames)
        return merged

    def _relative(self, element: str) -> pd.DataFrame:
        if element == "sgen":
            return self._sgen_profiles
        frame: pd.DataFrame = self.net.profiles[element]
        return frame

    def length(self, name: str) -> int:
        lengths = {int(f.shape[0]) for k, f in self.net.profiles.items()
                   if k in ("load", "storage", "powerplants", "renewables") and f.shape[0]}
        if len(lengths) > 1:
            raise GridError(f"profiles of {name} have different lengths {sorted(lengths)} (gaps)")
        return lengths.pop() if lengths else 0

    def values(self, element: str, column: str, table: pd.DataFrame, rows: slice,
               name: str, net: Any) -> FloatArray | None:
        n_rows = len(range(*rows.indices(self.length(name))))
        # one row per element: its relative profile (1 without one), in the table's order
        rel = np.empty((len(table), n_rows))
        if "profile" not in table.columns:
            rel.fill(1.0)
        else:
            suffix = {"p_mw": "_pload", "q_mvar": "_qload"}.get(column, "") if element == "load" else ""
            applied = table["profile"] + suffix
            relative = self._relative(element)
            missing = sorted({str(p) for p in applied.dropna() if p not in relative.columns})
            if missing:
                raise GridError(f"profiles of {name} lack the {element} profiles {missing[:5]}")
            given = ~applied.isnull().to_numpy()
            rel[~given] = 1.0
            names = list(applied[given])
            unique = sorted(set(names))
            block = relative.iloc[rows][unique].to_numpy(dtype=np.float64).T
            position = {p: k for k, p in enumerate(unique)}
            rel[given] = block[[position[p] for p in names]]
        values: FloatArray = rel * table[column].to_numpy(dtype=np.float64).reshape(-1, 1)
        _check_finite(values.T, table.index, element, column, net, rows.start)
        return values


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


def _check_finite(values: FloatArray, labels: Any, element: str, column: str, net: Any,
                  first_row: int) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        idx = labels[cols[0]]
        table = getattr(net, element)
        name = table.at[idx, "name"] if "name" in table.columns and idx in table.index else idx
        prof = table.at[idx, "profile"] if "profile" in table.columns and idx in table.index else "?"
        raise GridError(
            f"{column} profile {prof!r} of {element} {idx} ({name!r}) has {int(bad[:, cols[0]].sum())} "
            f"NaN/inf values, first at slot {first_row + int(rows[0])}; {int(bad.sum())} bad values in all"
        )


_CHUNK_BYTES = 64 * 2**20
"""Largest float block (rows × elements) folded at once: the year is folded in chunks."""


class _Profiles(NamedTuple):
    load_wh: IntArray
    load_varh: IntArray
    pv_wh: IntArray
    storage_wh: IntArray


class _YearScan:
    """Per-cp maxima and sums over the chunks of a year (``YearFigures`` and capacities)."""

    def __init__(self, n_cp: int) -> None:
        low = np.iinfo(np.int64).min
        self.load_max = np.full(n_cp, low)
        self.pv_max = np.full(n_cp, low)
        self.net_abs_max = np.zeros(n_cp, dtype=np.int64)
        self.storage_abs_max = np.zeros(n_cp, dtype=np.int64)
        self.load_sum = np.zeros(n_cp, dtype=np.int64)
        self.varh_sum = np.zeros(n_cp, dtype=np.int64)
        self.first_negative: tuple[int, int] | None = None
        """(cp row, slot) of the first negative load, cps first (as ``np.argwhere``)."""

    def add(self, first_slot: int, p: _Profiles) -> None:
        if p.load_wh.shape[1] == 0:
            return
        np.maximum(self.load_max, p.load_wh.max(axis=1), out=self.load_max)
        np.maximum(self.pv_max, p.pv_wh.max(axis=1), out=self.pv_max)
        net = p.pv_wh + p.storage_wh - p.load_wh
        np.maximum(self.net_abs_max, np.abs(net).max(axis=1), out=self.net_abs_max)
        np.maximum(self.storage_abs_max, np.abs(p.storage_wh).max(axis=1), out=self.storage_abs_max)
        self.load_sum += p.load_wh.sum(axis=1)
        self.varh_sum += p.load_varh.sum(axis=1)
        negative = p.load_wh < 0
        if negative.any():
            i, s = (int(v) for v in np.argwhere(negative)[0])
            if self.first_negative is None or i < self.first_negative[0]:
                self.first_negative = (i, first_slot + s)

    def capacity_w(self, i: int) -> int:
        """Capacity of cp row ``i``: the year's largest absolute load, generation or net
        injection as power, at least 1 kW."""
        peak_wh = max(0, int(self.load_max[i]), int(self.pv_max[i]), int(self.net_abs_max[i]))
        return max(1000, int(peak_wh * 60 // SLOT_MINUTES))

    def figures(self) -> YearFigures:
        arrays = (self.pv_max, self.storage_abs_max, self.load_sum, self.varh_sum)
        for a in arrays:
            a.setflags(write=False)
        return YearFigures(*arrays)


def _fold_in_order(acc: FloatArray, target: IntArray, values: FloatArray) -> None:
    """``acc[target[k]] = sum of values[k]`` per target, in the table's order.

    Each cp's first element is set and the others are added in the table's order: the same
    floats as adding one element after another to zeros (0.0 + x == x up to the sign of a
    zero, which rounds to the same 0 Wh). The k-th element of every cp is added in one
    vectorised step (within a rank the targets are distinct, so ``acc[t] += v`` adds each
    once), ranks in order: the order per cp of ``np.add.at`` in index order, which did the
    same one row at a time (unbuffered: ~2.5x slower; the year's pass over a 9,104-bus
    network's profiles, issue 17)."""
    n = len(target)
    if not n:
        return
    order = np.argsort(target, kind="stable")  # by cp, table order within a cp
    by_cp = target[order]
    starts = np.r_[True, by_cp[1:] != by_cp[:-1]]
    start_of = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - start_of
    first = rank == 0
    acc[target[first]] = values[first]
    for k in range(1, int(rank.max()) + 1):
        nth = rank == k
        acc[target[nth]] += values[nth]


@dataclass(frozen=True, eq=False)
class _Year:
    """A network in prosumer form with its connection points and the figures of the whole
    profile year; folds any window of the year from its source on demand."""

    name: str
    net: Any
    cps: tuple[ConnectionPoint, ...]
    figures: YearFigures
    year_slots: int
    source: ProfileSource
    profiles: _ProfileSource
    source_net: Any
    tables: tuple[tuple[str, str, pd.DataFrame, float], ...]
    """(element, column, active table, sign) folded into load p, load q, PV, storage."""
    row_of_bus: dict[int, int]

    @staticmethod
    def build(name: str, source_net: Any, profiles: _ProfileSource, source: ProfileSource) -> _Year:
        """Fold loads/sgens/storage into one injection per connection point; convert to Wh."""
        import pandapower as pp

        net = copy.deepcopy(source_net)
        slack_buses = {int(b) for b in net.ext_grid.bus[net.ext_grid.in_service]}
        if not slack_buses:
            raise GridError(f"network {name} has no in-service ext_grid (slack)")

        def active(table: pd.DataFrame) -> pd.DataFrame:
            return table[table.in_service.astype(bool)] if len(table) else table

        loads, sgens, storages = (active(source_net[t]) for t in ("load", "sgen", "storage"))
        cp_buses = sorted(
            (set(map(int, loads.bus)) | set(map(int, sgens.bus)) | set(map(int, storages.bus)))
            - slack_buses
        )
        if not cp_buses:
            raise GridError(f"network {name} has no load, sgen or storage away from the slack bus")
        width = max(5, len(str(max(cp_buses))))
        cp_ids = [f"cp-{b:0{width}d}" for b in cp_buses]
        check_supplied(net, cp_buses, cp_ids, name)
        n_slots = profiles.length(name)
        if n_slots == 0 or n_slots % SLOTS_PER_DAY:
            raise GridError(
                f"profiles of {name} have {n_slots} rows: not whole days of 15-minute slots (gaps)"
            )
        # pandapower storage is load-referenced (positive = charging): injection is -p.
        tables = (("load", "p_mw", loads, 1.0), ("load", "q_mvar", loads, 1.0),
                  ("sgen", "p_mw", sgens, 1.0), ("storage", "p_mw", storages, -1.0))
        year = _Year(name, net, (), YearFigures(*(np.zeros(0, np.int64),) * 4), n_slots, source,
                     profiles, source_net, tables, {b: i for i, b in enumerate(cp_buses)})
        scan = _YearScan(len(cp_buses))
        for rows in year.chunks(0, n_slots):
            scan.add(rows.start, year.fold_rows(rows))
        if scan.first_negative is not None:
            # SimBench loads are non-negative; a negative load is a data error, not a prosumer.
            # (Generation may dip below zero: wind turbines draw their own consumption at calm.)
            i, s = scan.first_negative
            raise GridError(f"load profile of {cp_ids[i]} in {name} is negative at slot {s}")
        cps = tuple(
            ConnectionPoint(
                cp_id=cp_ids[i],
                bus=b,
                bus_name=str(net.bus.at[b, "name"]) if "name" in net.bus.columns else str(b),
                vn_kv=float(net.bus.at[b, "vn_kv"]),
                capacity_w=scan.capacity_w(i),
            )
            for i, b in enumerate(cp_buses)
        )
        # Prosumer form: drop loads/sgens/storage (at the slack too: they only change the
        # slack's output), add one zero sgen per cp that power flows later set to the cp's net
        # injection.
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
        return _Year(name, net, cps, scan.figures(), n_slots, source, profiles, source_net,
                     tables, year.row_of_bus)

    def chunks(self, first: int, end: int) -> list[slice]:
        """``first..end`` in chunks of whole days whose float blocks stay near _CHUNK_BYTES."""
        widest = max([len(self.row_of_bus)] + [len(t) for _e, _c, t, _s in self.tables])
        days = max(1, _CHUNK_BYTES // (8 * widest * SLOTS_PER_DAY))
        step = days * SLOTS_PER_DAY
        return [slice(a, min(a + step, end)) for a in range(first, end, step)]

    def fold_rows(self, rows: slice) -> _Profiles:
        """Profiles of the profile-year slots ``rows`` in Wh per cp (rows × elements at once)."""
        n_rows = rows.stop - rows.start
        out: list[IntArray] = []
        for element, column, table, sign in self.tables:
            acc = np.zeros((len(self.row_of_bus), n_rows))
            if len(table):
                values = self.profiles.values(element, column, table, rows, self.name,
                                              self.source_net)
                if values is None:
                    raise GridError(f"profiles of {self.name} lack {element} {column}")
                target = np.array([self.row_of_bus.get(int(b), -1) for b in table.bus])
                folded = target >= 0
                target = target[folded]
                values = np.asarray(values[folded], dtype=np.float64)  # a copy (mask)
                values *= sign  # in place: the same products as ``sign * values``
                _fold_in_order(acc, target, values)
            # in place (the same float operations): a year's pass over a 9,104-bus network
            # made three temporaries of ~50 MB per table and chunk, most of its time in page
            # faults (issue 17)
            np.multiply(acc, WH_PER_MW_SLOT, out=acc)
            np.rint(acc, out=acc)
            wh = acc.astype(np.int64)
            out.append(wh)
        return _Profiles(*out)

    def model(self, first: int, end: int) -> GridModel:
        """The model holding profile-year slots ``first..end-1``."""
        parts = [self.fold_rows(rows) for rows in self.chunks(first, end)]
        arrays = [np.concatenate(a, axis=1) if len(a) > 1 else a[0] for a in zip(*parts, strict=True)]
        for a in arrays:
            a.setflags(write=False)
        load_wh, load_varh, pv_wh, storage_wh = arrays
        return GridModel(
            name=self.name,
            net=self.net,
            cps=self.cps,
            load_wh=load_wh,
            load_varh=load_varh,
            pv_wh=pv_wh,
            storage_wh=storage_wh,
            year=self.figures,
            first_slot=first,
            year_slots=self.year_slots,
            profile_source=self.source,
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
    _require_full_year(model, "with_profiles")
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
        ratio = model.year.reactive_ratio()
        qv = np.rint(lw * ratio[:, None]).astype(np.int64)
        qv.setflags(write=False)
    else:
        qv = check("load_varh", load_varh, False)
        if qv.shape != lw.shape:
            raise GridError(f"load_varh shape {qv.shape} differs from load_wh {lw.shape}")
    scan = _YearScan(n_cp)
    scan.add(0, _Profiles(lw, qv, pw, sw))
    cps = tuple(
        ConnectionPoint(cp.cp_id, cp.bus, cp.bus_name, cp.vn_kv, scan.capacity_w(i))
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
        year=scan.figures(),
        first_slot=0,
        year_slots=int(lw.shape[1]),
        profile_source="user",
        _cache=_shared_network_cache(model),
    )


def _require_full_year(model: GridModel, what: str) -> None:
    if not model.full_year:
        raise GridError(
            f"{what} needs {model.name}'s whole profile year (it sizes connection points on the "
            f"year's peaks); this model holds slots {model.window.start}..{model.window.stop - 1}: "
            "load it without a window"
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

