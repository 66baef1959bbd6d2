"""Session-scoped demo runs shared by the simulator's tests.

``default_day`` is ``gridledger demo`` exactly as a newcomer runs it (30 participants, 96
slots, 4 validators, the default attacks, seed 7) with its outputs written; tests that only
read a defended run's figures use it instead of starting a run of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridledger.sim import attacks, context
from gridledger.sim.demo import run_demo, scenario_from_flags, write_outputs


def must_hold(summary: dict[str, Any], name: str) -> bool:
    """Whether scenario ``name`` must be mitigated in the run ``summary`` describes (the
    privacy-mode scenarios report the leak in clear mode: ``sim.attacks.must_hold``)."""
    return attacks.must_hold(name, summary.get("privacy", {}).get("mode") == "on")


@pytest.fixture(autouse=True)
def _validators_in_process_when_patched(request: pytest.FixtureRequest) -> None:
    """A test that removes a defence by monkeypatching ledger code runs every validator in
    this process: a hosted validator (``node.validator_host``, the demo's upper half) is a
    fresh interpreter that executes the installed rule, so the patched and the real
    validators split 2 against 2 and the chain halts with no quorum. Session-scoped runs
    (the shared default day) are built before this and keep their hosted validators."""
    if "monkeypatch" in request.fixturenames:
        mp: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        mp.setattr(context, "hosted_validators", lambda n: ())


@dataclass(frozen=True)
class DemoRun:
    out: Path
    summary: dict[str, Any]
    series: dict[str, Any]


@pytest.fixture(scope="session")
def default_day(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("default-day")
    summary, series = run_demo(scenario_from_flags(30, 24, 4, "default", 7, None), out)
    write_outputs(summary, series, out)
    return DemoRun(out, summary, series)
