"""``summary.json`` and the report's series, from a finished run.

The summary is deterministic for a seed: every wall-clock figure lives under ``timings``
and nowhere else. Sections: ``scenario``, ``ledger``, ``market``, ``invariants``,
``detections``, ``attacks``, ``threat_rows``, ``timings``, plus what each feature adds
(``Feature.summary``: the delivery feature's ``grid``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gridledger.ledger.modules.reputation.types import MIN_SCORE
from gridledger.node.verify import VerifyReport
from gridledger.sim.context import SimContext
from gridledger.sim.engine import Engine
from gridledger.sim.threats import ROWS


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items()))


def _member_bills(ctx: SimContext, honest_only: bool = True) -> list[dict[str, Any]]:
    """Every bill of an honest member (``honest_only=False``: of every member), under any of
    its identities, in slot order."""
    out = []
    for s in sorted(ctx.data.bills):
        for a, b in ctx.data.bills[s].items():
            m = ctx.identities.owner(a)
            if m is not None and (m.honest or not honest_only):
                out.append(b)
    return out


def _savings_pct(bills: list[dict[str, Any]]) -> float:
    total = sum(b["total_micro"] for b in bills)
    base = sum(b["baseline_total_micro"] for b in bills)
    return round(100.0 * (base - total) / abs(base), 3) if base else 0.0


def market_section(ctx: SimContext) -> dict[str, Any]:
    data, sc = ctx.data, ctx.sc
    trading = set(ctx.trading_slots())
    trades = [t for s in sorted(data.trades) if s in trading for t in data.trades[s]]
    volume = sum(t["energy_wh"] for t in trades)
    paid = sum(t["payment_micro"] for t in trades)
    bills = _member_bills(ctx)
    tot_h = sum(b["total_micro"] for b in bills)
    base_h = sum(b["baseline_total_micro"] for b in bills)
    every = _member_bills(ctx, honest_only=False)
    settled = {e["slot"] for e in data.events_of("slot_settled")}
    cleared = {e["slot"] for e in data.events_of("slot_cleared")}
    return {"trades": len(trades), "energy_traded_wh": volume,
            "mean_price": round(paid / volume / 1000, 6) if volume else None,
            "mean_price_micro_per_kwh": paid * 1000 // volume if volume else None,
            # cleared trades include those annulled for non-delivery; billed = what settled
            "energy_billed_wh": sum(b["market_bought_wh"] for b in every if b["slot"] in trading),
            # the honest members' figure is over the members no scenario recruited, so it moves
            # with the attack set: read it with its population, beside every member's figure
            "savings_pct": _savings_pct(bills), "mechanism": sc.mechanism,
            "members": len(ctx.members),
            "honest_members": sum(1 for m in ctx.members if m.honest),
            "savings_pct_all_members": _savings_pct(every),
            "slots_cleared": len(cleared & trading), "slots_settled": len(settled & trading),
            "honest_total_micro": tot_h, "honest_baseline_micro": base_h, "currency": "CU"}


def invariants_section(ctx: SimContext) -> dict[str, bool]:
    final = ctx.close()
    money = final.money
    supply_ok = final.supply == ctx.supply0 == sum(money.values()) == sum(ctx.money0.values())
    energy_ok = True
    for by in ctx.data.bills.values():
        bought = sum(b["market_bought_wh"] for b in by.values())
        sold = sum(b["market_sold_wh"] for b in by.values())
        energy_ok &= bought == sold
        for b in by.values():
            energy_ok &= (b["import_wh"] - b["export_wh"] == b["retail_import_wh"]
                          - b["retail_export_wh"] + b["market_bought_wh"] - b["market_sold_wh"])
    honest_worse = [b for b in _member_bills(ctx) if b["total_micro"] > b["baseline_total_micro"]]
    settled = {e["slot"] for e in ctx.data.events_of("slot_settled")}
    return {"money_conserved": supply_ok, "energy_balanced": bool(energy_ok),
            "honest_not_worse": not honest_worse,
            "all_slots_settled": set(ctx.trading_slots()) <= settled,
            "validators_agree": ctx.validators_agree}


def ledger_section(eng: Engine, reports: list[VerifyReport]) -> dict[str, Any]:
    ctx = eng.ctx
    st, final = ctx.data.stats, ctx.close()
    # verify-chain checks the certificates' signatures of each store it replays; a store
    # compared with that replay (the same bytes) checks none again
    cert_checks = ctx.net.cert_votes * sum(1 for r in reports if r.replayed)
    return {"blocks": st.blocks, "txs": st.txs, "rejected_txs": st.rejected_txs,
            "state_root": final.roots[0] if final.roots else "",
            "certificates_ok": bool(reports) and all(r.ok for r in reports),
            "certificate_checks": cert_checks, "validators": ctx.sc.validators,
            "validators_agree": ctx.validators_agree,
            "admitted": st.admitted,
            "admission_rejected": dict(sorted(st.admission_rejected.items())),
            "rejected_by_rule": dict(sorted(st.rejected_receipts.items())),
            "stores": [{"path": r.path.name, "ok": r.ok, "blocks": r.blocks,
                        "reason": r.reason, "replayed": r.replayed} for r in reports]}


UNATTRIBUTED = "unattributed"


def failures_by_cause(eng: Engine) -> dict[str, int]:
    """Failed receipts by the attack that caused each (``UNATTRIBUTED``: none did — a
    defect, since honest clients send only transactions they expect to pass)."""
    out: dict[str, int] = {}
    for f in eng.ctx.data.failed:
        cause = next((a.name for a in eng.attacks if a.caused(f.tx_id)), UNATTRIBUTED)
        out[cause] = out.get(cause, 0) + 1
    return dict(sorted(out.items()))


def detections_section(eng: Engine) -> dict[str, int]:
    """What the defences caught, by kind: all 0 in a run without attacks."""
    ctx = eng.ctx
    data, st = ctx.data, ctx.data.stats
    out = {
        "validator_offences": sum(len(r) for r in ctx.net.offenders.values()),
        "admission_rejections": sum(st.admission_rejected.values()),
        "failed_transactions": st.rejected_txs,
        "non_delivery": len(data.events_of("non_delivery")),
        "disputes_lost": sum(1 for e in data.events_of("dispute_decided")
                             if e["outcome"] == "rejected"),
        "unpaid": len(data.events_of("unpaid")),
    }
    for f in eng.features:
        out.update(f.detections())
    return out


def threat_rows_section(eng: Engine, attacks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every docs/threat-model.md row (1-14, Q, in that order) -> ``{title, scenarios, mitigated,
    loss, features, not_run}``: the scenarios of this run that measure it, whether all held
    (None: no scenario of this run exercises the row), their summed loss (micro), the demo
    features that are (part of) its defence, and the row's scenarios this run left out."""
    rows: dict[str, dict[str, Any]] = {}
    for r in ROWS:
        rows[r.row] = {"title": r.title, "scenarios": [], "mitigated": None, "loss": 0,
                       "features": sorted(f.name for f in eng.features if r.row in f.threat_rows),
                       "not_run": []}
    for a in eng.attacks:
        row = rows.setdefault(a.threat_row(), {"title": a.threat, "scenarios": [],
                                               "mitigated": None, "loss": 0, "features": [],
                                               "not_run": []})
        res = attacks[a.name]
        row["scenarios"].append(a.name)
        row["mitigated"] = bool(res["mitigated"]) and row["mitigated"] is not False
        if res.get("loss_unit", "micro") == "micro":
            row["loss"] += int(res["loss"])
    for r in ROWS:
        rows[r.row]["not_run"] = [n for n in r.scenarios if n not in rows[r.row]["scenarios"]]
    return rows


def summarize(eng: Engine, reports: list[VerifyReport]) -> dict[str, Any]:
    """The run's ``summary.json`` (``reports``: verify-chain of every store)."""
    ctx = eng.ctx
    sc, st = ctx.sc, ctx.data.stats
    failed = failures_by_cause(eng)
    attacks = {a.name: {**a.result(), "failed_txs": failed.get(a.name, 0)} for a in eng.attacks}
    run_s = ctx.timings.get("run_s", 0.0)
    timings: dict[str, Any] = {k: round(v, 3) for k, v in sorted(ctx.timings.items())}
    ledger_s = ctx.timings["ledger_s"]
    timings["tx_per_s"] = round(st.txs / ledger_s, 1) if ledger_s else 0.0
    timings["slots_per_s"] = round(sc.slots / run_s, 2) if run_s else 0.0
    for a in eng.attacks:
        timings.update(a.timings())
    summary: dict[str, Any] = {
        "scenario": {"network": ctx.model.name, "participants": len(ctx.members),
                     "outsiders": len(ctx.community.outsiders), "validators": sc.validators,
                     "slots": sc.slots, "seed": sc.seed, "attacks": [a.name for a in eng.attacks],
                     "start": ctx.label(ctx.first), "first_slot": ctx.first,
                     "mechanism": sc.mechanism,
                     "notes": [*sc.notes, *(f"{n} left out: {why}"
                                            for n, why in ctx.left_out.items())],
                     "params": dict(sc.params),
                     "currency_note": "CU = community currency unit; 1 CU = 1 000 000 micro",
                     "strategies": _count(m.strategy for m in ctx.members),
                     "equipment": _count(d for m in ctx.members for d in m.der)},
        "ledger": {**ledger_section(eng, reports), "failed_by_cause": failed},
        "market": market_section(ctx),
        "invariants": invariants_section(ctx),
        "detections": detections_section(eng),
        "attacks": attacks,
        "threat_rows": threat_rows_section(eng, attacks),
        "timings": timings,
    }
    for f in eng.features:
        for key, section in f.summary().items():
            if key in summary:
                raise ValueError(f"feature {f.name!r} adds summary section {key!r}, "
                                 "which another part of the summary already has")
            summary[key] = section
    return summary


def is_sanction(e: dict[str, Any]) -> bool:
    """A ``reputation`` event that is a penalty the ledger applied: the score fell, or it was
    already at the floor (``MIN_SCORE``) — a penalty there still restarts the clean-slot clock
    an appeal waits for. The attack rows count penalties by reason, so the members table must
    count floor-clamped ones too (it showed 14 for a member its attack row charged 18)."""
    delta, score = int(e["delta"]), int(e["score"])
    return delta < 0 or (delta == 0 and score == MIN_SCORE)


def series_of(eng: Engine) -> dict[str, Any]:
    """Per-slot and per-participant rows for the report's figures and tables."""
    ctx = eng.ctx
    owner = ctx.identities.owner
    totals: dict[str, list[int]] = {m.cp: [0, 0] for m in ctx.members}
    for by in ctx.data.bills.values():
        for a, b in by.items():
            m = owner(a)
            if m is not None:
                totals[m.cp][0] += b["total_micro"]
                totals[m.cp][1] += b["baseline_total_micro"]
    trades = {m.cp: 0 for m in ctx.members}
    for ts in ctx.data.trades.values():
        for t in ts:
            for side in ("buyer", "seller"):
                m = owner(t[side])
                if m is not None:
                    trades[m.cp] += 1
    sanctions: dict[str, dict[str, int]] = {m.cp: {} for m in ctx.members}
    for e in ctx.data.events_of("reputation"):
        m = owner(e["addr"])
        if m is not None and is_sanction(e):
            by_reason = sanctions[m.cp]
            by_reason[e["reason"]] = by_reason.get(e["reason"], 0) + 1
    return {
        "slots": [vars(ctx.data.slots[s]).copy() for s in sorted(ctx.data.slots)],
        "participants": [{"name": m.name, "cp": m.cp, "role": m.role, "der": list(m.der),
                          "strategy": m.strategy, "honest": m.honest, "attack": m.attack,
                          "total_micro": totals[m.cp][0],
                          "baseline_micro": totals[m.cp][1],
                          "trades": trades[m.cp],
                          "sanctions": dict(sorted(sanctions[m.cp].items())),
                          "reputation": ctx.reputation(m.address)} for m in ctx.members],
        "limits": {"v_min_pu": ctx.limits.vm_min_pu, "v_max_pu": ctx.limits.vm_max_pu,
                   "max_loading_pct": ctx.limits.max_loading_pct},
    }
