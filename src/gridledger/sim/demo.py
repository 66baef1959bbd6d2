"""``gridledger demo``: run a scenario, check it, and write summary.json and report.html.

``run_demo`` is the library entry (tests and the benchmark call it); ``run_demo_cli`` adds
rich progress bars and the results table. The summary is deterministic for a seed: every
wall-clock figure lives under ``timings`` and nowhere else.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
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
from gridledger.node.verify import StoreFollower, find_stores, verify_stores, verify_workers
from gridledger.sim.attacks import parse_attacks
from gridledger.sim.clock import TAIL_STEPS
from gridledger.sim.config import CONFIG_NAME, write_config
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

FOLLOW_FROM_SLOTS = 24
"""Runs this long (six hours, `bench scale --quick`) check their stores while they are
written (``StoreFollower``, on the other core); shorter ones after the run, here (a worker's
start-up, ~0.5 s of CPU, would cost about what the replay does)."""


def run_demo(sc: Scenario, out: Path, progress: ProgressFn | None = None,
             attack_overrides: dict[str, dict[str, Any]] | None = None,
             stop: threading.Event | None = None,
             verify_progress: Callable[[int, int], None] | None = None,
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``sc`` into ``out`` (ledger stores under ``out/ledger``), then verify-chain every
    store; returns (summary, series). ``progress(step, steps, slot label)`` after each engine
    step, ``verify_progress(stores done, stores)`` during verification.

    ``stop``, once set, ends the run after the step in progress: the stores hold every block
    so far, verify-chain checks them, and the summary covers what ran, with
    ``summary["interrupted"] = {"steps_done", "steps", "last_slot"}`` (absent for a whole run).
    Raises ``ConfigError`` before any work if the scenario is invalid.
    """
    setup = Stopwatch()
    model = check_scenario(sc)
    ledger = out / "ledger"
    if ledger.exists():
        shutil.rmtree(ledger)  # a fresh chain per run: stale stores would not match this genesis
    out.mkdir(parents=True, exist_ok=True)
    eng = Engine(sc, model, out, progress=progress, attack_overrides=attack_overrides, stop=stop)
    stores = find_stores(ledger)
    # a day's stores are followed on the other core while the run writes them (issue 17)
    follower = StoreFollower(stores) if sc.slots >= FOLLOW_FROM_SLOTS else None
    setup.stop()
    summary: dict[str, Any] | None = None
    try:
        run = Stopwatch()
        try:
            eng.run()
        except BaseException:
            if follower is not None:
                follower.close()
            raise
        run.stop()
        verify = Stopwatch()
        if follower is not None:
            # e.g. the audit bundle's replay, here, while the follower finishes on the other
            # core (told now that the stores are closed: its tail and the other stores' checks
            # run beside the scenarios' after-run work)
            follower.writer_done()
            eng.after_run()
            reports = follower.reports(verify_progress)
        else:  # each chain replayed once, its other stores checked against that replay
            reports = verify_stores(stores, progress=verify_progress)
        eng.after_verify(reports)
        verify.stop()
        summary = summarize(eng, reports)
        summary["timings"].update({
            "setup_s": round(setup.wall_s, 3), "setup_cpu_s": round(setup.cpu_s, 3),
            "run_cpu_s": round(run.cpu_s, 3), "verify_chain_s": round(verify.wall_s, 3),
            "verify_chain_cpu_s": round(verify.cpu_s, 3),
            "verify_chain_workers": 1 if follower is not None else verify_workers(stores),
            "verify_chain_followed": follower is not None})
        if eng.stopped is not None:
            done, steps, last = eng.stopped
            summary["interrupted"] = {"steps_done": done, "steps": steps, "last_slot": last}
    finally:  # the live dashboard shows the final results (or that the run failed), then stops
        for f in eng.features:
            f.run_ended(summary)
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


class Stopwatch:
    """Wall and CPU seconds from creation to ``stop`` (CPU of this process and of the child
    processes that ended meanwhile, such as verify-chain's workers)."""

    def __init__(self) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), self._cpu()
        self.wall_s = self.cpu_s = 0.0

    @staticmethod
    def _cpu() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    def stop(self) -> None:
        self.wall_s = time.perf_counter() - self._wall0
        self.cpu_s = self._cpu() - self._cpu0


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


def cli_command() -> str:
    """How the user can invoke this CLI again: ``gridledger`` if that name on PATH is this
    program, else the path it was started by (``.venv/bin/gridledger`` after ``make demo``)."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "gridledger":      # called as a library (tests, notebooks)
        return "gridledger"
    on_path = shutil.which("gridledger")
    if on_path is not None and Path(on_path).resolve() == argv0.resolve():
        return "gridledger"
    try:
        return str(argv0.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(argv0)


def run_demo_cli(sc: Scenario, *, out: Path, console: Console) -> dict[str, Any]:
    """Run ``sc`` with progress bars, write the outputs and the scenario file it ran
    (``config.toml``, read back by ``--config``), print the results."""
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
            TextColumn("[bold]{task.description:<13}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[at]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False) as prog:
        slots = prog.add_task("slots", total=sc.slots, at="")
        tail = prog.add_task("settle tail", total=TAIL_STEPS, at="", start=False)
        verify = prog.add_task("verify-chain", total=sc.validators, at="stores", start=False)

        def on_step(done: int, _total: int, at: str) -> None:
            if done <= sc.slots:
                prog.update(slots, completed=done, at=at)
            else:
                prog.start_task(tail)
                prog.update(tail, completed=done - sc.slots, at="reading, settling, disputes")

        def on_verify(done: int, total: int) -> None:
            prog.start_task(verify)
            prog.update(verify, completed=done, total=total)

        summary, series = run_demo(sc, out, on_step, verify_progress=on_verify,
                                   stop=interrupt.event)
    write_outputs(summary, series, out)
    write_config(sc, out / CONFIG_NAME, all_params=True)
    console.print(results_table(summary))
    stopped = summary.get("interrupted")
    if stopped is not None:
        console.print(f"[yellow]partial run[/]: stopped after step {stopped['steps_done']} of "
                      f"{stopped['steps']} (last slot {stopped['last_slot']}); the stores hold "
                      "every block up to there")
    # soft-wrapped (the terminal folds the line, rich does not break it): a command and its
    # paths stay whole, so they can be copied
    console.print(f"wrote {out / 'report.html'}, {out / 'summary.json'}, {out / CONFIG_NAME}; "
                  f"check the ledger with: {cli_command()} verify-chain {out}", soft_wrap=True)
    audit = summary["attacks"].get("audit-export")
    if audit is not None:  # the regulator's view: one file, checked with nothing else
        console.print(f"audit bundle: {out / audit['bundle']}; check it with: "
                      f"{cli_command()} audit verify {out / audit['bundle']}", soft_wrap=True)
    return summary


def _loss_text(r: dict[str, Any]) -> str:
    """An attack's loss: currency units for money, else the number with its unit."""
    if r.get("loss_unit", "micro") != "micro":
        return f"{r['loss']:,} {r['loss_unit']}"
    return f"{r['loss'] / 1_000_000:,.6f}".rstrip("0").rstrip(".")


def results_table(summary: dict[str, Any]) -> Table | Group:
    led, mkt, grid, inv = summary["ledger"], summary["market"], summary["grid"], summary["invariants"]
    sc = summary["scenario"]
    t = Table(title=f"Community run on the ledger ({sc['slots']} slots from {sc['start']})",
              show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("blocks / transactions",
              f"{led['blocks']} / {led['txs']} ({led['rejected_txs']} rejected)")
    t.add_row("certificates verified", f"{led['certificate_checks']} signatures, ok={led['certificates_ok']}")
    t.add_row("trades / energy", f"{mkt['trades']} / {mkt['energy_traded_wh'] / 1000:.1f} kWh")
    mp = mkt["mean_price"]
    unit = mkt.get("currency", "CU")
    t.add_row("mean clearing price", f"{mp:.4f} {unit}/kWh" if mp is not None else "-")
    t.add_row("honest members' saving vs tariffs", f"{mkt['savings_pct']:.1f} %")
    t.add_row("curtailed", f"{grid.get('curtailed_wh', 0) / 1000:,.3f} kWh"
              + "".join(f"; {c['curtailed_wh'] / 1000:,.3f} kWh {c['limit']} {c['element']}".rstrip()
                        for c in grid.get("curtailment_causes", [])[:3]))
    t.add_row("voltage range / max loading",
              f"{grid['min_voltage_pu']:.3f}-{grid['max_voltage_pu']:.3f} p.u. / "
              f"{grid['max_line_loading_pct']:.1f} %" if grid["max_voltage_pu"] is not None else "-")
    t.add_row("invariants", ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in inv.items()))
    t.add_row("ledger throughput (wall clock)", f"{summary['timings'].get('tx_per_s')} tx/s")
    if summary["attacks"]:
        ok = sum(1 for r in summary["attacks"].values() if r["mitigated"])
        allowed = [f"{name}: {r['allowed']:,} of its {r['injected']:,} were within the "
                   "attacker's own quota and admitted" for name, r in summary["attacks"].items()
                   if r.get("allowed")]
        a = Table(title=f"Attacks: {ok} / {len(summary['attacks'])} scenarios mitigated",
                  caption="; ".join(allowed) or None)
        for c in ("attack", "row", "injected", "detected", "mitigated", f"loss ({unit})"):
            a.add_column(c, justify="left" if c == "attack" else "right",
                         no_wrap=c == "attack")
        for name, r in summary["attacks"].items():
            a.add_row(name, str(r.get("threat", "")).split(" ", 1)[0], f"{r['injected']:,}",
                      "passive" if r.get("passive") else f"{r['detected']:,}",
                      "[green]yes[/]" if r["mitigated"] else "[red]no[/]",
                      _loss_text(r))
        return Group(t, a)
    return t
