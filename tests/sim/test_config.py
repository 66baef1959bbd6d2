"""Scenario files (issue 20.3): ``gridledger demo --config FILE`` / ``--write-config FILE``,
checked whole before any work, flags over the file, the defaults written as a start."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridledger.cli.main import app
from gridledger.errors import ConfigError
from gridledger.sim.community import demo_params
from gridledger.sim.config import (
    FLAG_KEYS,
    DemoConfig,
    config_of,
    dumps,
    load_config,
    parse_config,
    scenario_of,
)
from gridledger.sim.demo import scenario_from_flags
from gridledger.sim.scenario import DEMO_PRIVACY, Scenario


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["demo", *args])
    return res.exit_code, " ".join(res.output.split())


def test_defaults_are_the_flags_defaults() -> None:
    assert scenario_of(DemoConfig()) == scenario_from_flags(30, 24, 4, "default", 7, None)


def test_written_defaults_list_every_parameter_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "community.toml"
    code, out = cli("--write-config", str(path), "--days", "2", "--attacks", "fdi-meter,replay",
                    "--seed", "11")
    assert code == 0 and "wrote" in out, out
    doc = tomllib.loads(path.read_text())
    assert doc["community"]["hours"] == 48 and doc["ledger"]["seed"] == 11
    assert doc["attacks"]["names"] == ["fdi-meter", "replay"]
    # the demo's own parameters are in the file, so a user sees (and can change) them
    assert doc["params"]["settle_window_s"] == demo_params(Scenario())["settle_window_s"]
    assert len(doc["params"]["grid_fee_tou_micro_per_kwh"]) == 96
    assert "retail_import_micro_per_kwh" in doc["params"] and doc["params"]["mechanism"] == "uniform"
    sc = scenario_of(load_config(path))
    assert sc == Scenario(slots=192, seed=11, attacks=("fdi-meter", "replay"),
                          privacy=DEMO_PRIVACY)
    assert sc.params == ()          # values the demo uses anyway are no overrides
    code, out = cli("--write-config", str(path))
    assert code == 2 and "exists" in out and str(path) in out


def test_overrides_round_trip() -> None:
    sc = Scenario(participants=12, slots=8, validators=1, attacks=("fake-bids",), seed=3,
                  start_day=20, start_slot_of_day=40, mechanism="pay_as_bid", chain_id="c-1",
                  params=(("feed_in_micro_per_kwh", 60_000), ("retail_hold_slots", 0)))
    doc = tomllib.loads(dumps(config_of(sc, all_params=True)))
    assert scenario_of(parse_config(doc)) == sc


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[community]\nparticipants = 12\nhours = 6\n[ledger]\nvalidators = 1\n'
                    '[attacks]\nnames = ["none"]\n[params]\nfeed_in_micro_per_kwh = 60000\n')
    out = tmp_path / "again.toml"
    code, text = cli("--config", str(path), "--prosumers", "14", "--write-config", str(out))
    assert code == 0, text
    sc = scenario_of(load_config(out))
    assert (sc.participants, sc.slots, sc.validators, sc.attacks) == (14, 24, 1, ())
    assert sc.params == (("feed_in_micro_per_kwh", 60_000),)


@pytest.mark.parametrize("text, needle", [
    ("[community]\nparticipants = \"x\"\n", "[community] participants"),
    ("[community]\nhours = 0\n", "[community] hours"),
    ("[community]\nhours = 2\ndays = 1\n", "hours or days, not both"),
    ("[ledger]\nvalidators = 99\n", "[ledger] validators"),
    ("[ledger]\nchain_id = \"bad id\"\n", "[ledger] chain_id"),
    ("[bogus]\nx = 1\n", "bogus"),
    ("[community]\nprosumers = 3\n", "[community] prosumers"),
    ("[attacks]\nnames = [\"nope\"]\n", "[attacks] names: unknown attack 'nope'"),
    ("[attacks]\nnames = [\"byzantine-validator\"]\n[ledger]\nvalidators = 1\n", "[attacks] names"),
    ("[params]\nretail_hold_slot = 1\n", "unknown ledger parameter(s) retail_hold_slot"),
    ("[params]\nretail_hold_slots = 500\n", "[params] retail_hold_slots"),
    ("[params]\nslot_seconds = 60\n", "slot_seconds must stay 900"),
    ("x =\n", "not TOML"),
    ("[community]\nscenario = \"peak\"\n", "[community] scenario"),
    ("[community]\nflexibility = \"on\"\n", "[community] flexibility"),
    ("[community]\nscenario = \"evening-peak\"\nprofiles = \"p.csv\"\n", "cannot take profiles"),
    ("[run]\nserve = 0\n", "[run] serve"),
    ("[run]\nport = 8080\n", "[run] port"),
])
def test_bad_file_names_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)
    code, out = cli("--config", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and needle in out, out
    assert not (tmp_path / "o").exists()


def test_missing_file_and_transfer_workload(tmp_path: Path) -> None:
    code, out = cli("--config", str(tmp_path / "none.toml"))
    assert code == 2 and "no such file" in out
    code, out = cli("--config", str(tmp_path / "none.toml"), "--workload", "transfers")
    assert code == 2 and "community runs" in out


def test_every_flag_has_a_key() -> None:
    """Issue 20.3: each ``gridledger demo`` flag (but the file flags and the non-community
    workload) maps to a key the file model really has."""
    import typer.main

    demo = typer.main.get_command(app).commands["demo"]   # type: ignore[attr-defined]
    flags = {p.name for p in demo.params} - {"config", "write_config", "workload"}
    assert flags == set(FLAG_KEYS)
    for table, key in FLAG_KEYS.values():
        assert key in type(getattr(DemoConfig(), table)).model_fields, (table, key)


def test_evening_peak_starts_and_lasts_as_the_flag_does() -> None:
    cfg = parse_config({"community": {"scenario": "evening-peak", "flexibility": False}})
    assert scenario_of(cfg) == scenario_from_flags(30, 8, 4, "default", 7, None,
                                                   scenario="evening-peak", flexibility=False)


def test_scenario_flags_and_run_options_over_a_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[community]\nparticipants = 12\nstart_day = 100\nhours = 6\n'
                    '[ledger]\nvalidators = 1\n[attacks]\nnames = ["none"]\n')
    out = tmp_path / "again.toml"
    code, text = cli("--config", str(path), "--scenario", "evening-peak", "--flexibility", "off",
                     "--serve", "8123", "--out", str(tmp_path / "res"), "--write-config", str(out))
    assert code == 0, text
    doc = tomllib.loads(out.read_text())
    assert doc["run"] == {"serve": 8123, "out": str(tmp_path / "res")}
    sc = scenario_of(load_config(out))
    # the flag's scenario starts the run (16:00 on the winter day), the file's hours stay
    assert (sc.scenario, sc.flexibility, sc.start_day, sc.start_slot_of_day, sc.slots) == (
        "evening-peak", False, 20, 64, 24)
    assert (sc.participants, sc.validators, sc.serve_port) == (12, 1, 8123)


def test_saved_scenario_of_an_evening_peak_run_reads_back() -> None:
    sc = scenario_from_flags(12, 8, 1, "none", 3, None, scenario="evening-peak",
                             flexibility=False)
    doc = tomllib.loads(dumps(config_of(sc, all_params=True)))
    assert "run" not in doc and scenario_of(parse_config(doc)) == sc
