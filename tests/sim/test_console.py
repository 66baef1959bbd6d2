"""``gridledger demo`` as a user reads it in the terminal: progress, results, the closing hint."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from rich.console import Console

from gridledger.sim.config import load_config, scenario_of
from gridledger.sim.demo import cli_command, results_table, run_demo_cli, scenario_from_flags
from tests.sim.conftest import DemoRun, must_hold


def test_closing_hint_names_a_command_that_exists(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / ".venv" / "bin" / "gridledger"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(exe), "demo"])
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert cli_command() == ".venv/bin/gridledger"       # after `make demo`: not on PATH
    monkeypatch.setenv("PATH", str(exe.parent))
    assert cli_command() == "gridledger"                 # an activated venv


@pytest.mark.slow
def test_progress_counts_slots_tail_and_verification(tmp_path: Path) -> None:
    console = Console(record=True, width=120, force_terminal=False)
    summary = run_demo_cli(scenario_from_flags(6, 2, 2, "none", 3, None), out=tmp_path,
                           console=console)
    text = console.export_text()
    assert summary["scenario"]["slots"] == 8
    assert "slots" in text and "8/8" in text             # slots, not slots + tail steps
    assert "settle tail" in text and "4/4" in text
    assert "verify-chain" in text and "2/2" in text      # one per store
    assert "verify-chain " + str(tmp_path) in text
    # the scenario it ran, saved next to the results, runs the same again
    again = scenario_of(load_config(tmp_path / "config.toml"))
    assert again == scenario_from_flags(6, 2, 2, "none", 3, None)


def test_results_table_of_the_default_day(default_day: DemoRun) -> None:
    console = Console(record=True, width=140, force_terminal=False)
    console.print(results_table(default_day.summary))
    text = " ".join(console.export_text().split())   # captions wrap
    attacks = default_day.summary["attacks"]
    held = sum(1 for a in attacks.values() if a["mitigated"])
    assert held == sum(1 for n in attacks if must_hold(default_day.summary, n))
    assert f"{held} / {len(attacks)} scenarios mitigated" in text
    assert "own quota and admitted" in text              # the flood's admitted part, named
    assert "CU/kWh" in text and "96 slots" in text
    assert re.search(r"curtailed\W+0\.000 kWh", text), text   # the row, across the table's rule


def test_loss_in_its_own_unit() -> None:
    from gridledger.sim.demo import _loss_text

    assert _loss_text({"loss": 1_250_000, "loss_unit": "micro"}) == "1.25"
    assert _loss_text({"loss": 400, "loss_unit": "reputation points"}) == "400 reputation points"
