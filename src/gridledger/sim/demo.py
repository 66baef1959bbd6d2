"""``gridledger demo``: run a scenario, check it, and write summary.json and report.html.

``run_demo`` is the library entry (tests and the benchmark call it); ``run_demo_cli`` adds
rich progress bars and the results table. The summary is deterministic for a seed: every
wall-clock figure lives under ``timings`` and nowhere else.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from gridledger.grid import SLOTS_PER_DAY
from gridledger.node.verify import verify_dir
from gridledger.sim.engine import Engine, Progress
from gridledger.sim.scenario import Scenario, check_scenario, parse_attacks


def run_demo(sc: Scenario, out: Path, progress: Progress | None = None,
             attack_overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``sc`` into ``out`` (ledger stores under ``out/ledger``); returns (summary, series).

    Raises ``ConfigError`` before any work if the scenario is invalid.
    """
    model = check_scenario(sc)
    ledger = out / "ledger"
    if ledger.exists():
        shutil.rmtree(ledger)  # a fresh chain per run: stale stores would not match this genesis
    out.mkdir(parents=True, exist_ok=True)
    eng = Engine(sc, model, out, progress=progress, attack_overrides=attack_overrides)
    eng.run()
    t0 = time.perf_counter()
    reports = verify_dir(ledger)
    verify_s = time.perf_counter() - t0
    summary = summarize(eng, reports)
    summary["timings"]["verify_chain_s"] = round(verify_s, 3)
    return summary, series_of(eng)


def summarize(eng: Engine, reports: list[Any]) -> dict[str, Any]:
    sc, st = eng.sc, eng.stats
    honest = [m for m in eng.members if m.honest]
    honest_addr = {m.address for m in honest}
    trading = set(eng.trading_slots())
    # market
    trades = [t for s in sorted(eng.trades) if s in trading for t in eng.trades[s]]
    volume = sum(t["energy_wh"] for t in trades)
    paid = sum(t["payment_micro"] for t in trades)
    bills = [b for s in sorted(eng.bills) for b in eng.bills[s].values()]
    tot_h = sum(b["total_micro"] for b in bills if b["addr"] in honest_addr)
    base_h = sum(b["baseline_total_micro"] for b in bills if b["addr"] in honest_addr)
    savings = 100.0 * (base_h - tot_h) / abs(base_h) if base_h else 0.0
    # grid
    recs = [eng.slots[s] for s in sorted(eng.slots)]
    # invariants
    money = eng.final["money"]
    supply_ok = eng.final["supply"] == eng.supply0 == sum(money.values()) == sum(eng.money0.values())
    energy_ok = True
    for s, by in eng.bills.items():
        bought = sum(b["market_bought_wh"] for b in by.values())
        sold = sum(b["market_sold_wh"] for b in by.values())
        energy_ok &= bought == sold
        for b in by.values():
            energy_ok &= (b["import_wh"] - b["export_wh"] == b["retail_import_wh"] - b["retail_export_wh"]
                          + b["market_bought_wh"] - b["market_sold_wh"])
    honest_worse = [(s, eng.by_addr[a].name) for s, by in sorted(eng.bills.items()) for a, b in by.items()
                    if a in honest_addr and b["total_micro"] > b["baseline_total_micro"]]
    settled = {e["slot"] for e in eng.events if e["type"] == "slot_settled"}
    cleared = {e["slot"] for e in eng.events if e["type"] == "slot_cleared"}
    cert_checks = sum(len(fb.cert.votes) for fb in eng.net.finalized) * len(reports)
    detections = {
        "fdi_flags": sum(len(v) for v in eng.flagged.values()),
        "validator_offences": sum(len(r) for r in eng.net.offenders.values()),
        "admission_rejections": sum(st.admission_rejected.values()),
        "failed_transactions": st.rejected_txs,
        "non_delivery": sum(1 for e in eng.events if e["type"] == "non_delivery"),
        "disputes_lost": sum(1 for e in eng.events
                             if e["type"] == "dispute_decided" and e["outcome"] == "rejected"),
        "unpaid": sum(1 for e in eng.events if e["type"] == "unpaid"),
    }
    attacks = {a.name: a.result() for a in eng.attacks}
    run_s = eng.timings.get("run_s", 0.0)
    timings: dict[str, Any] = {k: round(v, 3) for k, v in sorted(eng.timings.items())}
    timings["tx_per_s"] = round(st.txs / eng.timings["ledger_s"], 1) if eng.timings["ledger_s"] else 0.0
    timings["slots_per_s"] = round(sc.slots / run_s, 2) if run_s else 0.0
    flood = [a for a in eng.attacks if a.name == "dos-flood"]
    if flood:
        fl = set(flood[0].flood_slots)  # type: ignore[attr-defined]
        lat_f = sorted(v for s, v in eng.step_latency_s if s in fl)
        lat_b = sorted(v for s, v in eng.step_latency_s if s not in fl and s in trading)
        if lat_f and lat_b:
            p99 = lat_b[min(len(lat_b) - 1, int(0.99 * len(lat_b)))]
            timings["dos_flood"] = {"honest_admit_to_final_s_flood_max": round(max(lat_f), 3),
                                    "honest_admit_to_final_s_baseline_p99": round(p99, 3)}
    return {
        "scenario": {"network": eng.model.name, "participants": len(eng.members),
                     "outsiders": len(eng.community.outsiders), "validators": sc.validators,
                     "slots": sc.slots, "seed": sc.seed, "attacks": list(sc.attacks),
                     "start": eng.label(eng.first), "first_slot": eng.first,
                     "mechanism": sc.mechanism, "notes": list(sc.notes),
                     "currency_note": "CU = community currency unit; 1 CU = 1 000 000 micro",
                     "strategies": _count(m.strategy for m in eng.members),
                     "equipment": _count(d for m in eng.members for d in m.der)},
        "ledger": {"blocks": st.blocks, "txs": st.txs, "rejected_txs": st.rejected_txs,
                   "state_root": eng.final_roots[0] if eng.final_roots else "",
                   "certificates_ok": bool(reports) and all(r.ok for r in reports),
                   "certificate_checks": cert_checks, "validators": sc.validators,
                   "validators_agree": eng.validators_agree,
                   "admitted": st.admitted,
                   "admission_rejected": dict(sorted(st.admission_rejected.items())),
                   "rejected_by_rule": dict(sorted(st.rejected_receipts.items())),
                   "stores": [{"path": r.path.name, "ok": r.ok, "blocks": r.blocks,
                               "reason": r.reason} for r in reports]},
        "market": {"trades": len(trades), "energy_traded_wh": volume,
                   "mean_price": round(paid / volume / 1000, 6) if volume else None,
                   "mean_price_micro_per_kwh": paid * 1000 // volume if volume else None,
                   "savings_pct": round(savings, 3), "mechanism": sc.mechanism,
                   "slots_cleared": len(cleared & trading), "slots_settled": len(settled & trading),
                   "honest_total_micro": tot_h, "honest_baseline_micro": base_h,
                   "currency": "CU"},
        "grid": {"max_voltage_pu": max((r.max_vm_pu for r in recs), default=None),
                 "min_voltage_pu": min((r.min_vm_pu for r in recs), default=None),
                 "max_line_loading_pct": max((r.max_loading_pct for r in recs), default=None),
                 "violations": sum(r.violations for r in recs),
                 "curtailed_wh": sum(r.curtailed_wh for r in recs),
                 "envelope_clipped_wh": sum(r.clipped_wh for r in recs)},
        "invariants": {"money_conserved": supply_ok, "energy_balanced": bool(energy_ok),
                       "honest_not_worse": not honest_worse,
                       "all_slots_settled": trading <= settled,
                       "validators_agree": eng.validators_agree},
        "detections": detections,
        "attacks": attacks,
        "timings": timings,
    }


def series_of(eng: Engine) -> dict[str, Any]:
    totals: dict[bytes, list[int]] = {m.address: [0, 0] for m in eng.members}
    for by in eng.bills.values():
        for a, b in by.items():
            if a in totals:
                totals[a][0] += b["total_micro"]
                totals[a][1] += b["baseline_total_micro"]
    return {
        "slots": [vars(eng.slots[s]).copy() for s in sorted(eng.slots)],
        "participants": [{"name": m.name, "cp": m.cp, "role": m.role, "der": list(m.der),
                          "strategy": m.strategy, "honest": m.honest, "attack": m.attack,
                          "total_micro": totals[m.address][0],
                          "baseline_micro": totals[m.address][1],
                          "reputation": eng.reputation(m.address)} for m in eng.members],
        "limits": {"v_min_pu": eng.limits.vm_min_pu, "v_max_pu": eng.limits.vm_max_pu,
                   "max_loading_pct": eng.limits.max_loading_pct},
    }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items()))


def write_outputs(summary: dict[str, Any], series: dict[str, Any], out: Path) -> None:
    from gridledger.sim.report import write_report

    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    write_report(summary, series, out / "report.html")


def scenario_from_flags(prosumers: int, hours: int, validators: int, attacks: str, seed: int,
                        network: str | None) -> Scenario:
    from gridledger.errors import ConfigError
    from gridledger.sim.scenario import DEFAULT_NETWORK

    if hours < 1:
        raise ConfigError(f"--hours must be at least 1, got {hours}")
    names, notes = parse_attacks(attacks, validators)
    return Scenario(participants=prosumers, slots=hours * SLOTS_PER_DAY // 24,
                    validators=validators, attacks=names, seed=seed,
                    network=network or DEFAULT_NETWORK, notes=notes)


def run_demo_cli(*, prosumers: int, hours: int, validators: int, attacks: str, out: Path,
                 seed: int, network: str | None, console: Any) -> dict[str, Any]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    sc = scenario_from_flags(prosumers, hours, validators, attacks, seed, network)
    check_scenario(sc)  # every input error before any work
    for n in sc.notes:
        console.print(f"[yellow]note:[/] {n}")
    console.print(f"[bold]GridLedger demo[/]: {sc.participants} participants on {sc.network}, "
                  f"{sc.slots} slots, {sc.validators} validators, seed {sc.seed}, "
                  f"attacks: {', '.join(sc.attacks) or 'none'}")
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[at]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as prog:
        task = prog.add_task("slots", total=sc.slots + 4, at="")
        summary, series = run_demo(sc, out, lambda d, _t, at: prog.update(task, completed=d, at=at))
    write_outputs(summary, series, out)
    console.print(results_table(summary))
    console.print(f"wrote {out / 'report.html'}, {out / 'summary.json'}; "
                  f"check the ledger with: gridledger verify-chain {out}")
    return summary


def results_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    led, mkt, grid, inv = summary["ledger"], summary["market"], summary["grid"], summary["invariants"]
    t = Table(title="Community day on the ledger", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("blocks / transactions", f"{led['blocks']} / {led['txs']} ({led['rejected_txs']} rejected)")
    t.add_row("certificates verified", f"{led['certificate_checks']} signatures, ok={led['certificates_ok']}")
    t.add_row("trades / energy", f"{mkt['trades']} / {mkt['energy_traded_wh'] / 1000:.1f} kWh")
    mp = mkt["mean_price"]
    t.add_row("mean price", f"{mp:.4f} /kWh" if mp is not None else "-")
    t.add_row("honest members' savings vs tariff", f"{mkt['savings_pct']:.1f} %")
    t.add_row("voltage range / max loading",
              f"{grid['min_voltage_pu']:.3f}-{grid['max_voltage_pu']:.3f} p.u. / {grid['max_line_loading_pct']:.1f} %"
              if grid["max_voltage_pu"] is not None else "-")
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
        from rich.console import Group

        return Group(t, a)
    return t
