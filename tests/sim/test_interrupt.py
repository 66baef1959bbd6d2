"""Ctrl-C during a long run (issue 17): the run ends after the step in progress, every store
verifies, and the summary and report say the run is partial."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from rich.console import Console

from gridledger.node.verify import verify_dir
from gridledger.sim.demo import StopOnInterrupt, run_demo, write_outputs
from gridledger.sim.scenario import Scenario

STOP_AFTER = 3


def test_a_stopped_run_leaves_verifiable_stores_and_a_partial_report(tmp_path: Path) -> None:
    stop = threading.Event()
    seen: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, label: str) -> None:
        seen.append((done, total, label))
        if done == STOP_AFTER:  # what the Ctrl-C handler does, at a known step
            stop.set()

    sc = Scenario(participants=6, slots=8, validators=2, attacks=(), start_slot_of_day=40)
    summary, series = run_demo(sc, tmp_path, progress=progress, stop=stop)
    steps = seen[0][1]
    assert steps > sc.slots and len(seen) == STOP_AFTER  # no step after the stop
    assert summary["interrupted"] == {"steps_done": STOP_AFTER, "steps": steps,
                                      "last_slot": seen[-1][2]}
    ledger = summary["ledger"]
    assert ledger["blocks"] > 0 and ledger["certificates_ok"]
    reports = verify_dir(tmp_path / "ledger")
    assert len(reports) == 2 and all(r.ok and r.blocks == ledger["blocks"] for r in reports)
    write_outputs(summary, series, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert f"partial run: stopped after step {STOP_AFTER} of {steps}" in page


def test_first_ctrl_c_asks_to_stop_the_second_aborts() -> None:
    before = signal.getsignal(signal.SIGINT)
    with StopOnInterrupt(Console(file=None, quiet=True)) as handler:
        assert signal.getsignal(signal.SIGINT) is handler
        handler(signal.SIGINT, None)
        assert handler.event.is_set()
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is before
