"""``gridledger demo``: run a scenario, check it, and write summary.json and report.html.

``run_demo`` is the library entry (tests and the benchmark call it); ``run_demo_cli`` adds
rich progress bars and the results table. The summary is deterministic for a seed: every
wall-clock figure lives under ``timings`` and nowhere else.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from gridledger.errors import ConfigError
from gridledger.grid import SLOTS_PER_DAY
from gridledger.node.verify import verify_dir
from gridledger.sim.attacks import parse_attacks
from gridledger.sim.engine import Engine
from gridledger.sim.engine import Progress as ProgressFn
from gridledger.sim.features import FEATURES
from gridledger.sim.report import write_report
from gridledger.sim.scenario import (
    DEFAULT_NETWORK,
    DEMO_PRIVACY,
    EVENING_PEAK_DAY,
    EVENING_PEAK_START,
    SCENARIOS,
    Scenario,
    check_scenario,
    scenario_start,
)
from gridledger.sim.summary import series_of, summarize


def run_demo(sc: Scenario, out: Path, progress: ProgressFn | None = None,
             attack_overrides: dict[str, dict[str, Any]] | None = None,
             stop: threading.Event | None = None,
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``sc`` into ``out`` (ledger stores under ``out/ledger``); returns (summary, series).

    ``stop``, once set, ends the run after the step in progress: the stores hold every block
    so far, verify-chain checks them, and the summary covers what ran, with
    ``summary["interrupted"] = {"steps_done", "steps", "last_slot"}`` (absent for a whole run).
    Raises ``ConfigError`` before any work if the scenario is invalid.
    """
    model = check_scenario(sc)
    ledger = out / "ledger"
    if ledger.exists():
        shutil.rmtree(ledger)  # a fresh chain per run: stale stores would not match this genesis
    out.mkdir(parents=True, exist_ok=True)
    eng = Engine(sc, model, out, progress=progress, attack_overrides=attack_overrides, stop=stop)
    eng.run()
    t0 = time.perf_counter()
    reports = verify_dir(ledger)
    verify_s = time.perf_counter() - t0
    summary = summarize(eng, reports)
    summary["timings"]["verify_chain_s"] = round(verify_s, 3)
    if eng.stopped is not None:
        done, steps, last = eng.stopped
        summary["interrupted"] = {"steps_done": done, "steps": steps, "last_slot": last}
    return summary, series_of(eng)


class StopOnInterrupt:
    """A SIGINT handler for a long run: the first Ctrl-C sets ``event`` (the run ends after
    its current step, with verifiable stores and a partial report), a second one raises
    ``KeyboardInterrupt`` at once. Use as a context manager; the previous handler comes back
    on exit."""

    def __init__(self, console: Console) -> None:
        self.event = threading.Event()
        self.console = console
        self._old: Any = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        self.console.print("[yellow]Ctrl-C: stopping after this slot, then verify-chain and a "
                           "partial report (Ctrl-C again to abort at once)[/]")

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def write_outputs(summary: dict[str, Any], series: dict[str, Any], out: Path) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    # per-slot rows (prices, grid results) for `gridledger export` and other tools
    (out / "series.json").write_text(json.dumps(series, sort_keys=True) + "\n")
    extra = [s for cls in FEATURES for s in cls.report_sections(summary)]
    write_report(summary, series, out / "report.html", extra)


def scenario_from_flags(prosumers: int, hours: int, validators: int, attacks: str, seed: int,
                        network: str | None, privacy: bool = DEMO_PRIVACY,
                        serve_port: int | None = None, profiles: Path | None = None, *,
                        scenario: str = "default", flexibility: bool = True) -> Scenario:
    """The ``Scenario`` of ``gridledger demo``'s flags. ``scenario="evening-peak"`` starts
    at 16:00 on a winter weekday (``scenario.EVENING_PEAK_DAY``) with an EV charger at every
    connection point (issue 15). Raises ``ConfigError`` naming a bad flag."""
    if hours < 1:
        raise ConfigError(f"--hours must be at least 1, got {hours}")
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown --scenario {scenario!r} ({', '.join(SCENARIOS)})")
    if scenario == "evening-peak" and profiles is not None:
        raise ConfigError("--scenario evening-peak runs SimBench's own winter evening; "
                          "it cannot take --profiles")
    names, notes = parse_attacks(attacks, validators, privacy)
    profile_file = None if profiles is None else str(profiles)
    start_day, start_slot = scenario_start(profile_file)  # a profile file starts the run
    if scenario == "evening-peak":
        start_day, start_slot = EVENING_PEAK_DAY, EVENING_PEAK_START
    return Scenario(participants=prosumers, slots=hours * SLOTS_PER_DAY // 24,
                    validators=validators, attacks=names, seed=seed,
                    network=network or DEFAULT_NETWORK, notes=notes, privacy=privacy,
                    serve_port=serve_port, profiles=profile_file, start_day=start_day,
                    start_slot_of_day=start_slot, scenario=scenario, flexibility=flexibility)


def run_demo_cli(*, prosumers: int, hours: int, validators: int, attacks: str, out: Path,
                 seed: int, network: str | None, console: Console,
                 privacy: bool = DEMO_PRIVACY, serve_port: int | None = None,
                 profiles: Path | None = None, scenario: str = "default",
                 flexibility: bool = True) -> dict[str, Any]:
    sc = scenario_from_flags(prosumers, hours, validators, attacks, seed, network, privacy,
                             serve_port, profiles, scenario=scenario, flexibility=flexibility)
    check_scenario(sc)  # every input error before any work
    for n in sc.notes:
        console.print(f"[yellow]note:[/] {n}")
    console.print(f"[bold]GridLedger demo[/]: {sc.participants} participants on {sc.network}, "
                  f"{sc.slots} slots, {sc.validators} validators, seed {sc.seed}, "
                  f"attacks: {', '.join(sc.attacks) or 'none'}, "
                  f"privacy mode {'on' if sc.privacy else 'off'}")
    if sc.serve_port is not None:
        console.print(f"live dashboard while it runs: http://127.0.0.1:{sc.serve_port}/")
    with StopOnInterrupt(console) as interrupt, Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[at]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False) as prog:
        task = prog.add_task("slots", total=None, at="")
        summary, series = run_demo(
            sc, out, lambda d, t, at: prog.update(task, completed=d, total=t, at=at),
            stop=interrupt.event)
    write_outputs(summary, series, out)
    console.print(results_table(summary))
    stopped = summary.get("interrupted")
    if stopped is not None:
        console.print(f"[yellow]partial run[/]: stopped after step {stopped['steps_done']} of "
                      f"{stopped['steps']} (last slot {stopped['last_slot']}); the stores hold "
                      "every block up to there")
    console.print(f"wrote {out / 'report.html'}, {out / 'summary.json'}; "
                  f"check the ledger with: gridledger verify-chain {out}")
    audit = summary["attacks"].get("audit-export")
    if audit is not None:  # the regulator's view: one file, checked with nothing else
        console.print(f"audit bundle: {out / audit['bundle']}; check it with: "
                      f"gridledger audit verify {out / audit['bundle']}")
    return summary


def results_table(summary: dict[str, Any]) -> Table | Group:
    led, mkt, grid, inv = summary["ledger"], summary["market"], summary["grid"], summary["invariants"]
    t = Table(title="Community day on the ledger", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("blocks / transactions",
              f"{led['blocks']} / {led['txs']} ({led['rejected_txs']} rejected)")
    t.add_row("certificates verified", f"{led['certificate_checks']} signatures, ok={led['certificates_ok']}")
    t.add_row("trades / energy", f"{mkt['trades']} / {mkt['energy_traded_wh'] / 1000:.1f} kWh")
    mp = mkt["mean_price"]
    t.add_row("mean price", f"{mp:.4f} /kWh" if mp is not None else "-")
    t.add_row("honest members' savings vs tariff", f"{mkt['savings_pct']:.1f} %")
    t.add_row("voltage range / max loading",
              f"{grid['min_voltage_pu']:.3f}-{grid['max_voltage_pu']:.3f} p.u. / "
              f"{grid['max_line_loading_pct']:.1f} %" if grid["max_voltage_pu"] is not None else "-")
    t.add_row("invariants", ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in inv.items()))
    t.add_row("tx/s (ledger time)", str(summary["timings"].get("tx_per_s")))
    if summary["attacks"]:
        a = Table(title="Attacks")
        for c in ("attack", "injected", "detected", "mitigated", "loss (micro)"):
            a.add_column(c, justify="right" if c != "attack" else "left")
        for name, r in summary["attacks"].items():
            a.add_row(name, str(r["injected"]),
                      "passive" if r.get("passive") else str(r["detected"]),
                      "[green]yes[/]" if r["mitigated"] else "[red]no[/]", str(r["loss"]))
        return Group(t, a)
    return t
