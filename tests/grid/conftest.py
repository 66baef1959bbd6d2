"""Grid fixtures: networks are loaded once per session (``load_grid`` also caches)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from gridledger.grid import GridModel, add_der, load_grid

LV = "1-LV-rural1--0-sw"
CLEAR_DAY = 137
"""17 May 2016: a clear day in SimBench's PV profiles (noon PV peak, evening EV peak)."""


@pytest.fixture(scope="session")
def lv() -> GridModel:
    """The default SimBench LV grid with its own profiles."""
    return load_grid(LV)


@pytest.fixture(scope="session")
def stressed(lv: GridModel) -> GridModel:
    """rural1 with 15 kWp PV and an 11 kW EV at every connection point (EVs charge 18-21 h)."""
    return add_der(lv, pv_kwp_per_cp=15.0, ev_kw_per_cp=11.0)


@pytest.fixture(scope="session")
def rural3() -> GridModel:
    """A 129-bus SimBench LV grid (long rural feeders: voltage problems, not only loading)."""
    return load_grid("1-LV-rural3--0-sw")


@pytest.fixture(scope="session")
def raw_lv_net() -> Any:
    """The stock SimBench net behind ``lv`` (deep-copy before changing it)."""
    import simbench as sb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sb.get_simbench_net(LV)


DEMO_NETWORK = "1-LV-semiurb4--2-sw"
DEMO_DAY = 136
"""The demo's default network and day (``gridledger.sim.scenario``)."""


@pytest.fixture(scope="session")
def demo_grid() -> GridModel:
    """The demo's SimBench semi-urban grid: households, shops, PV, batteries, heat pumps, EVs."""
    return load_grid(DEMO_NETWORK)
