"""Networks, connection points, integer profiles and their error paths."""

from __future__ import annotations

import copy
import json
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pytest

import gridledger.grid as grid
from gridledger.errors import GridError
from gridledger.grid import (
    SLOTS_PER_DAY,
    WH_PER_MW_SLOT,
    GridModel,
    add_der,
    load_grid,
    with_profiles,
)


def test_public_api_matches_all() -> None:
    # httpx-style drift check: the package exports exactly what __all__ lists.
    public = {
        n for n, v in vars(grid).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public == set(grid.__all__)


def test_simbench_lv_connection_points(lv: GridModel) -> None:
    assert lv.name == "1-LV-rural1--0-sw"
    assert list(lv.cp_ids) == sorted(lv.cp_ids)
    assert len(lv.cp_ids) == 13
    # One cp per bus with loads/generation; the LV busbar (bus 3) carries none.
    assert [cp.bus for cp in lv.cps] == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert lv.cp_ids[0] == "cp-00000"
    assert lv.profile_source == "simbench"
    for arr in (lv.load_wh, lv.load_varh, lv.pv_wh, lv.storage_wh):
        assert arr.dtype == np.int64
        assert arr.shape == (13, 366 * SLOTS_PER_DAY)
        assert not arr.flags.writeable
    assert all(cp.capacity_w >= 1000 for cp in lv.cps)


def test_profiles_are_simbench_absolute_values_in_wh(lv: GridModel, raw_lv_net: Any) -> None:
    import simbench as sb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = sb.get_absolute_values(raw_lv_net, profiles_instead_of_study_cases=True)
    load_p = prof[("load", "p_mw")]
    # Load 0 sits alone on bus 9.
    i = lv.cp_index("cp-00009")
    expected = np.rint(load_p[0].to_numpy() * WH_PER_MW_SLOT).astype(np.int64)
    assert np.array_equal(lv.load_wh[i], expected)
    # PV: sgen 1 (PV8) at bus 10.
    sgen_p = prof[("sgen", "p_mw")]
    assert np.array_equal(lv.pv_wh[lv.cp_index("cp-00010")], np.rint(sgen_p[1].to_numpy() * WH_PER_MW_SLOT))


def test_forecast_is_pv_plus_storage_minus_load(lv: GridModel) -> None:
    slot = 137 * SLOTS_PER_DAY + 50
    f = lv.forecast_wh_by_cp(slot)
    load, pv = lv.load_wh_by_cp(slot), lv.pv_wh_by_cp(slot)
    assert all(f[cp] == pv[cp] - load[cp] for cp in lv.cp_ids)
    assert all(isinstance(v, int) for v in f.values())


def test_load_grid_is_cached(lv: GridModel) -> None:
    assert load_grid("1-LV-rural1--0-sw") is lv


@pytest.mark.parametrize("spec", ["cigre-lv", "ieee-case33", "ieee-case14"])
def test_pandapower_examples_get_standard_profiles(spec: str) -> None:
    m = load_grid(spec)
    assert m.profile_source == "standard"
    assert len(m.cps) > 5
    assert m.load_wh.shape[1] == 366 * SLOTS_PER_DAY
    assert m.load_wh.max() > 0
    # The slack bus never becomes a connection point.
    slack = set(m.net.ext_grid.bus)
    assert not slack & {cp.bus for cp in m.cps}


def test_user_json_file(tmp_path: Path) -> None:
    import pandapower.networks as pn

    path = tmp_path / "mine.json"
    pp.to_json(pn.create_cigre_network_lv(), str(path))
    m = load_grid(str(path))
    assert m.name == "mine.json"
    assert m.profile_source == "standard"
    assert len(m.cps) == len(load_grid("cigre-lv").cps)


def test_simbench_json_keeps_its_profiles(tmp_path: Path, lv: GridModel, raw_lv_net: Any) -> None:
    net = copy.deepcopy(raw_lv_net)
    path = tmp_path / "rural1.json"
    pp.to_json(net, str(path))
    m = load_grid(str(path))
    assert m.profile_source == "simbench"
    assert np.array_equal(m.load_wh, lv.load_wh)


def test_unknown_specs_are_clear_errors() -> None:
    with pytest.raises(GridError, match="unknown SimBench code"):
        load_grid("1-LV-nowhere9--0-sw")
    with pytest.raises(GridError, match="unknown grid spec 'ieee-case7'"):
        load_grid("ieee-case7")
    with pytest.raises(GridError, match="does not exist"):
        load_grid("/nonexistent/grid.json")


def test_file_that_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{ this is not json")
    with pytest.raises(GridError, match="cannot load pandapower network"):
        load_grid(str(bad))
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"hello": 1}))
    with pytest.raises(GridError):
        load_grid(str(empty))


def test_nan_in_profiles_names_element_and_slot(tmp_path: Path, raw_lv_net: Any) -> None:
    net = copy.deepcopy(raw_lv_net)
    net.profiles["load"].loc[100, "H0-A_pload"] = np.nan
    path = tmp_path / "nan.json"
    pp.to_json(net, str(path))
    with pytest.raises(GridError, match=r"'H0-A' of load 10 .* NaN.*first at slot 100"):
        load_grid(str(path))


def test_with_profiles_validates(lv: GridModel) -> None:
    n = len(lv.cps)
    good = np.full((n, SLOTS_PER_DAY), 100, dtype=np.int64)
    m = with_profiles(lv, load_wh=good, pv_wh=good * 0)
    assert m.n_slots == SLOTS_PER_DAY and m.profile_source == "user"
    assert m.net is lv.net
    gappy = good.astype(float)
    gappy[3, 7] = np.nan
    with pytest.raises(GridError, match=r"NaN/inf values \(gaps\), first for cp-00004 at slot 7"):
        with_profiles(lv, load_wh=gappy, pv_wh=good)
    with pytest.raises(GridError, match="not whole days"):
        with_profiles(lv, load_wh=good[:, :50], pv_wh=good[:, :50])
    with pytest.raises(GridError, match="shape"):
        with_profiles(lv, load_wh=good[:3], pv_wh=good)
    neg = good.copy()
    neg[0, 0] = -1
    with pytest.raises(GridError, match="negative"):
        with_profiles(lv, load_wh=neg, pv_wh=good)


def test_add_der_adds_pv_and_evening_ev(lv: GridModel, stressed: GridModel) -> None:
    day = 137 * SLOTS_PER_DAY
    ev_slot, night_slot = day + 19 * 4, day + 3 * 4
    extra = stressed.load_wh[:, ev_slot] - lv.load_wh[:, ev_slot]
    assert np.all(extra == 11_000 // 4)
    assert np.all(stressed.load_wh[:, night_slot] == lv.load_wh[:, night_slot])
    noon = day + 48
    assert np.all(stressed.pv_wh[:, noon] > lv.pv_wh[:, noon])
    with pytest.raises(GridError):
        add_der(lv, pv_kwp_per_cp=-1)


def test_unknown_cp_and_slot(lv: GridModel) -> None:
    with pytest.raises(GridError, match="unknown connection point"):
        lv.cp_index("cp-99999")
    with pytest.raises(GridError, match="outside the profiles"):
        lv.forecast_wh_by_cp(lv.n_slots)


def _folded_the_old_way(code: str) -> dict[str, np.ndarray]:
    """A SimBench net's yearly profiles as the model built them before windows: simbench's
    absolute yearly frames, folded per connection point element by element, in Wh."""
    import simbench as sb

    from gridledger.grid.model import simbench_net

    net = simbench_net(code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    slack = {int(b) for b in net.ext_grid.bus[net.ext_grid.in_service]}
    tables = {t: net[t][net[t].in_service.astype(bool)] for t in ("load", "sgen", "storage")}
    buses = sorted(set().union(*(set(map(int, t.bus)) for t in tables.values())) - slack)
    row = {b: i for i, b in enumerate(buses)}
    out = {}
    folds = (("load_wh", "load", "p_mw", 1.0), ("load_varh", "load", "q_mvar", 1.0),
             ("pv_wh", "sgen", "p_mw", 1.0), ("storage_wh", "storage", "p_mw", -1.0))
    for key, element, column, sign in folds:
        acc = np.zeros((len(buses), len(prof[("load", "p_mw")])))
        table = tables[element]
        values = prof[(element, column)][list(table.index)].to_numpy()
        for j, bus in enumerate(table.bus):
            if int(bus) in row:
                acc[row[int(bus)]] += sign * values[:, j]
        out[key] = np.rint(acc * WH_PER_MW_SLOT).astype(np.int64)
    return out


def test_profiles_from_relative_ones_equal_simbench_absolute_values(demo_grid: GridModel) -> None:
    # The model computes absolute profiles from SimBench's relative ones by rows (it never
    # holds a yearly frame per element): every value equals simbench's own, folded as before.
    # The demo grid has several loads per bus, shops, heat pumps, EVs, PV and storage.
    old = _folded_the_old_way(demo_grid.name)
    for key, expected in old.items():
        assert np.array_equal(getattr(demo_grid, key), expected), key


@pytest.mark.parametrize("window", [(136 * SLOTS_PER_DAY - 96, 139 * SLOTS_PER_DAY),
                                    (0, 50), (366 * SLOTS_PER_DAY - 10, 366 * SLOTS_PER_DAY + 500)])
def test_a_window_holds_the_years_values_and_figures(demo_grid: GridModel, window: tuple[int, int]) -> None:
    w = load_grid(demo_grid.name, window=window)
    first, end = window[0], min(window[1], demo_grid.n_slots)
    assert w.window == range(first, end) and not w.full_year and demo_grid.full_year
    assert w.n_slots == demo_grid.n_slots and w.net is demo_grid.net
    assert load_grid(demo_grid.name, window=window) is w  # cached per window
    for key in ("load_wh", "load_varh", "pv_wh", "storage_wh"):
        assert np.array_equal(getattr(w, key), getattr(demo_grid, key)[:, first:end]), key
    # sized and equipped on the whole year, not the window
    assert w.cps == demo_grid.cps
    for key in ("pv_peak_wh", "storage_peak_wh", "load_sum_wh", "load_varh_sum"):
        assert np.array_equal(getattr(w.year, key), getattr(demo_grid.year, key)), key
    assert np.array_equal(demo_grid.year.pv_peak_wh, demo_grid.pv_wh.max(axis=1))
    assert np.array_equal(demo_grid.year.storage_peak_wh, np.abs(demo_grid.storage_wh).max(axis=1))
    for slot in (first, end - 1):
        assert w.forecast_wh_by_cp(slot) == demo_grid.forecast_wh_by_cp(slot)
        assert w.load_varh[:, w.column(slot)].tolist() == demo_grid.load_varh[:, slot].tolist()
    for outside in (first - 1, end):
        if 0 <= outside < demo_grid.n_slots:
            with pytest.raises(GridError, match=f"slot {outside} outside the window"):
                w.column(outside)
    with pytest.raises(GridError, match="whole profile year"):
        with_profiles(w, load_wh=w.load_wh, pv_wh=w.pv_wh)


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(GridError, match="holds no slot"):
        load_grid("1-LV-rural1--0-sw", window=(400 * SLOTS_PER_DAY, 401 * SLOTS_PER_DAY))


def test_fold_in_order_gives_add_at_floats() -> None:
    """``model._fold_in_order`` (rank by rank) gives the bytes ``np.add.at`` in index order
    gave after setting each target's first element (issue 17: the year's fold)."""
    from gridledger.grid.model import _fold_in_order

    rng = np.random.default_rng(17)
    for n_cp, n_el, rows in ((1, 1, 3), (5, 40, 7), (300, 1000, 12), (50, 50, 1)):
        target = rng.integers(0, n_cp, n_el)
        values = rng.normal(size=(n_el, rows)) * 10.0 ** rng.integers(-8, 8, size=(n_el, 1))
        values[rng.random(n_el) < 0.1] = -0.0
        ref = np.zeros((n_cp, rows))
        first = np.zeros(n_el, dtype=bool)
        first[np.unique(target, return_index=True)[1]] = True
        ref[target[first]] = values[first]
        np.add.at(ref, target[~first], values[~first])
        got = np.zeros((n_cp, rows))
        _fold_in_order(got, target, values)
        assert got.tobytes() == ref.tobytes()
    empty = np.zeros((2, 3))
    _fold_in_order(empty, np.zeros(0, dtype=np.int64), np.zeros((0, 3)))
    assert not empty.any()
