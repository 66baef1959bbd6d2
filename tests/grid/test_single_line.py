"""The dashboard's network panel (issue 20.1): a single-line drawing of the network and the
state of one slot (the fast AC power flow), also from a validator's certified readings."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.errors import GridError
from gridledger.grid import load_grid
from gridledger.grid.powerflow import schedule_array, solve_fast
from gridledger.grid.single_line import ledger_grid_source, network_state, readings_state, single_line

NETWORK = "cigre-lv"


def test_every_bus_is_drawn_as_a_tree_from_the_external_grid() -> None:
    model = load_grid(NETWORK)
    d = single_line(model)
    assert set(d.buses) == set(map(int, model.net.bus.index))
    slack = int(model.net.ext_grid.bus.iloc[0])
    assert d.buses[slack][0] == 0
    for _kind, _el, a, b in d.branches:  # a tree edge joins buses one hop apart (radial net)
        assert abs(d.buses[a][0] - d.buses[b][0]) == 1
    assert len(set(d.buses.values())) == len(d.buses)  # no two buses on one spot
    assert {c for cps in d.cps_at.values() for c in cps} == set(model.cp_ids)
    assert single_line(model) is d  # drawn once per model


def test_state_is_the_power_flow_of_the_slot() -> None:
    model = load_grid(NETWORK)
    injection = {cp: (-800 if i % 2 else 1_200) for i, cp in enumerate(model.cp_ids)}
    st = network_state(model, 48, injection)
    flow = solve_fast(model, 48, schedule_array(model, injection))
    assert max(b["vm_pu"] for b in st["buses"]) == pytest.approx(float(np.max(flow.vm_pu)), abs=1e-4)
    assert max(ln["loading_pct"] or 0 for ln in st["lines"]) == pytest.approx(
        float(np.max(flow.loading_pct)), abs=0.01)
    assert {ln["kind"] for ln in st["lines"]} >= {"line", "trafo"}
    assert len(st["buses"]) == len(model.net.bus)  # switch-fused buses share one voltage
    assert st["limits"] == {"vm_min_pu": 0.9, "vm_max_pu": 1.1, "loading_max_pct": 100.0}
    with pytest.raises(GridError, match="unknown connection points"):
        network_state(model, 48, {**injection, "cp-x": 1})


def test_a_validator_draws_its_certified_readings() -> None:
    model = load_grid(NETWORK)
    cps = model.cp_ids
    readings = [{"cp": cps[0], "import_wh": 0, "export_wh": 2_000},
                {"cp": cps[1], "import_wh": 1_500, "export_wh": 0},
                {"cp": "cp-not-on-this-network", "import_wh": 9, "export_wh": 0}]
    slot = 3 * model.n_slots + 48  # a ledger slot: the same slot of the profile year
    st = readings_state(model, slot, readings)
    injection = dict.fromkeys(cps, 0) | {cps[0]: 2_000, cps[1]: -1_500}
    assert st["slot"] == slot and st["buses"] == network_state(model, 48, injection)["buses"]
    assert st["source"].startswith(f"power flow of the certified readings: 2 of {len(cps)} cps")
    source = ledger_grid_source(model)
    assert source(None, []) is None
    assert source(slot, readings) is source(slot, readings)  # one power flow per read slot
