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
