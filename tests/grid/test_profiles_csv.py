"""``--profiles FILE.csv``: a community's own 15-minute data in place of the network's.

The equality test runs the same short scenario twice: once on SimBench's profiles, once on
``tests/fixtures/profiles-semiurb4-2016-05-16.csv`` — a community's 16 slots as a user would
hand them in (kWh, local time with its UTC offset), made once from that SimBench window and
checked in, so it is loaded only through the CSV path and the reader is checked against
SimBench, not against our writer; the market and grid results are the same. Bad files name
file, row and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gridledger.errors import ConfigError, GridError
from gridledger.grid import SLOTS_PER_DAY, load_grid
from gridledger.grid.profiles_csv import first_slot_of_file, read_profiles_csv, write_profiles_csv
from gridledger.sim.scenario import DEFAULT_NETWORK, DEFAULT_START_DAY, Scenario, check_scenario

START = DEFAULT_START_DAY * SLOTS_PER_DAY + 44  # 16 May 2016, 11:00 UTC
ROWS = 16
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "profiles-semiurb4-2016-05-16.csv"
"""16 slots from START of DEFAULT_NETWORK's SimBench profiles (``write_profiles_csv``, then
the timestamps written in Europe/Berlin summer time, ``+02:00``); see tests/fixtures/README.md."""


@pytest.fixture(scope="module")
def model():
    return load_grid(DEFAULT_NETWORK)


@pytest.fixture(scope="module")
def csv_file(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profiles") / "community.csv"
    write_profiles_csv(path, model, START, ROWS)
    return path


def test_round_trip_is_exact(model, csv_file: Path) -> None:
    w = read_profiles_csv(csv_file, model)
    assert (w.first_slot, w.n_slots) == (START, ROWS)
    assert first_slot_of_file(csv_file) == START
    for a in ("load_wh", "pv_wh", "storage_wh", "load_varh"):
        assert np.array_equal(getattr(w.model, a), getattr(model, a)), a


def test_the_checked_in_file_is_the_simbench_window(model) -> None:
    """The user's file (local time with offset, kWh) reads to SimBench's own values."""
    w = read_profiles_csv(FIXTURE, model)
    assert (w.first_slot, w.n_slots) == (START, ROWS)
    assert pd.read_csv(FIXTURE, dtype=str)["timestamp"][0] == "2016-05-16T13:00:00+02:00"
    window = slice(START, START + ROWS)
    for a in ("load_wh", "pv_wh", "storage_wh", "load_varh"):
        assert np.array_equal(getattr(w.model, a)[:, window], getattr(model, a)[:, window]), a


def test_meter_columns_and_offsets(model, csv_file: Path, tmp_path: Path) -> None:
    """import/export in Wh with a +02:00 offset (summer time) read as load/pv in place."""
    frame = pd.read_csv(csv_file, dtype=str)
    times = pd.to_datetime(frame["timestamp"]).dt.tz_convert("Europe/Berlin")
    frame["timestamp"] = [t.isoformat() for t in times]
    keep = {"timestamp": frame["timestamp"]}
    for cp in model.cp_ids:
        keep[f"{cp}:import_wh"] = (frame[f"{cp}:load_kwh"].astype(float) * 1000).round().astype(int)
        keep[f"{cp}:export_wh"] = (frame[f"{cp}:pv_kwh"].astype(float) * 1000).round().astype(int)
    path = tmp_path / "meters.csv"
    pd.DataFrame(keep).to_csv(path, index=False)
    w = read_profiles_csv(path, model)
    win = slice(START, START + ROWS)
    assert w.first_slot == START
    assert np.array_equal(w.model.load_wh[:, win], model.load_wh[:, win])
    assert np.array_equal(w.model.pv_wh[:, win], model.pv_wh[:, win])
    assert not w.model.storage_wh[:, win].any()  # no storage column: no battery in the window


def _broken(csv_file: Path, tmp_path: Path, edit) -> Path:
    frame = pd.read_csv(csv_file, dtype=str, keep_default_na=False)
    frame = edit(frame)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("edit, needles", [
    (lambda f: f.drop(index=5).reset_index(drop=True),
     ["row 7", "'timestamp'", "a gap of 30 minutes (1 missing slot)"]),
    (lambda f: f.assign(**{"cp-00001:load_kwh": ["-0.5"] + list(f["cp-00001:load_kwh"][1:])}),
     ["row 2", "'cp-00001:load_kwh'", "negative"]),
    (lambda f: f.assign(**{"cp-00005:pv_kwh": list(f["cp-00005:pv_kwh"][:3]) + [""]
                          + list(f["cp-00005:pv_kwh"][4:])}),
     ["row 5", "'cp-00005:pv_kwh'", "missing value"]),
    (lambda f: f.rename(columns={"cp-00003:load_kwh": "cp-99999:load_kwh"}),
     ["row 1", "'cp-99999:load_kwh'", "unknown connection point"]),
    (lambda f: f.drop(columns=["cp-00004:pv_kwh"]),
     ["row 1", "no pv column for connection point cp-00004"]),
    (lambda f: f.assign(timestamp=[t.replace("+00:00", "") for t in f["timestamp"]]),
     ["row 2", "no UTC offset"]),
    (lambda f: f.assign(timestamp=[t.replace(":00+00:00", ":00+01:00") if i >= 8 else t
                                   for i, t in enumerate(f["timestamp"])]),
     ["row 10", "repeated or earlier time", "daylight-saving"]),
    (lambda f: f.assign(timestamp=[t.replace(":15:00+", ":20:00+") for t in f["timestamp"]]),
     ["row 3", "a step of 20 minutes, not 15"]),
    (lambda f: f.rename(columns={"cp-00001:load_kwh": "cp-00001:load_mw"}),
     ["column 2 'cp-00001:load_mw'", "unit 'mw'"]),
])
def test_bad_files_name_file_row_and_column(model, csv_file: Path, tmp_path: Path, edit,
                                            needles: list[str]) -> None:
    path = _broken(csv_file, tmp_path, edit)
    with pytest.raises(GridError) as exc:
        read_profiles_csv(path, model)
    for n in [str(path), *needles]:
        assert n in str(exc.value), (n, str(exc.value))


def test_a_run_outside_the_file_is_refused_before_any_work(csv_file: Path) -> None:
    sc = Scenario(participants=20, slots=ROWS, validators=1, attacks=(),
                  start_day=DEFAULT_START_DAY, start_slot_of_day=44, profiles=str(csv_file))
    with pytest.raises(ConfigError, match=r"--profiles: .* needs 20 rows"):
        check_scenario(sc)


@pytest.mark.slow
def test_same_results_as_the_same_window_from_simbench(tmp_path: Path) -> None:
    from gridledger.sim.demo import run_demo

    base: dict[str, Any] = {"participants": 20, "slots": ROWS - 4, "validators": 1,
                            "attacks": (), "seed": 7, "start_day": DEFAULT_START_DAY,
                            "start_slot_of_day": 44}
    simbench, s_series = run_demo(Scenario(**base), tmp_path / "simbench")
    from_csv, c_series = run_demo(Scenario(**base, profiles=str(FIXTURE)), tmp_path / "csv")
    assert simbench["market"]["trades"] > 10
    assert from_csv["market"] == simbench["market"]
    assert from_csv["grid"] == simbench["grid"]
    assert c_series["slots"] == s_series["slots"]
    assert [p["total_micro"] for p in c_series["participants"]] == \
        [p["total_micro"] for p in s_series["participants"]]


def test_a_file_larger_than_any_year_of_the_network_is_refused_unread(model, tmp_path: Path) -> None:
    """Operator's files are read whole (pandas): one past the largest file the network's
    year can take is refused by its size before it is read (a sparse file: nothing to read)."""
    from gridledger.grid.profiles_csv import max_csv_bytes

    big = tmp_path / "huge.csv"
    with big.open("wb") as f:
        f.truncate(max_csv_bytes(model) + 1)
    with pytest.raises(GridError, match=r"huge\.csv: the file: .* bytes, more than the .* "
                                        r"that a year of 15-minute rows"):
        read_profiles_csv(big, model)
