"""Self-contained HTML report of a simulated community run (`gridledger demo`).

One page, no network access of any kind: plotly.js is embedded inline once, the CSS
is inline, fonts are the system's, and a Content-Security-Policy forbids every fetch,
so the file opens the same on an air-gapped laptop as anywhere else.

Inputs are the engine's ``summary`` (the JSON written next to the report) and
``series`` (per-slot and per-participant rows); every key is read with a default so
the engine may add keys, or leave optional ones out, without breaking the page.
Amounts arrive in micro currency units ("micro") and energies in Wh; the page shows
currency units and kWh.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from gridledger.sim.feature import ReportSection
from gridledger.sim.report_fmt import MICRO
from gridledger.sim.report_fmt import as_list as _l
from gridledger.sim.report_fmt import as_map as _d
from gridledger.sim.report_fmt import check as _check
from gridledger.sim.report_fmt import currency_of as _currency
from gridledger.sim.report_fmt import esc as _e
from gridledger.sim.report_fmt import fmt as _fmt
from gridledger.sim.report_fmt import fmt_money as _money
from gridledger.sim.report_fmt import label as _label
from gridledger.sim.report_fmt import micro as _micro
from gridledger.sim.report_fmt import num as _num
from gridledger.sim.report_fmt import plain as _plain
from gridledger.sim.report_fmt import series as _series

__all__ = ["render_report", "write_report"]

# colours (Okabe–Ito-ish, readable for colour-blind readers)
C_PRICE = "#0072B2"
C_RETAIL = "#D55E00"
C_FEED_IN = "#009E73"
C_NET = "#CC79A7"
C_BASE = "#9aa5b1"
C_HONEST = "#0072B2"
C_ATTACK = "#D55E00"
C_LIMIT = "#c0392b"

_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; "
        "base-uri 'none'")

_CSS = """
:root { --fg:#1f2933; --muted:#616e7c; --line:#d9e2ec; --bg:#f5f7fa; --card:#fff;
        --ok:#1e7b4b; --bad:#b42318; --accent:#0072B2; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
header { background:#102a43; color:#f0f4f8; padding:22px 0 18px; }
.wrap { max-width:1200px; margin:0 auto; padding:0 24px; }
h1 { margin:0 0 6px; font-size:24px; font-weight:650; }
h2 { margin:0 0 12px; font-size:19px; font-weight:650; }
.meta { display:flex; flex-wrap:wrap; gap:6px 18px; margin:0; padding:0; list-style:none;
        color:#bcccdc; font-size:14px; }
.meta b { color:#f0f4f8; font-weight:600; }
.badge { display:inline-block; padding:2px 10px; border-radius:999px; font-size:13px;
         font-weight:600; margin-left:10px; vertical-align:middle; }
.badge.ok { background:#d3f9e2; color:var(--ok); } .badge.bad { background:#fde2e1; color:var(--bad); }
.kpis { display:grid; grid-template-columns:repeat(auto-fill,minmax(150px,1fr)); gap:12px;
        margin:20px 0; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px;
       min-width:0; }
.kpi .v { display:flex; flex-wrap:wrap; align-items:baseline; column-gap:5px;
          font-size:21px; font-weight:650; }
.kpi .v .n { white-space:nowrap; }
.kpi .v .u { font-size:13px; font-weight:500; color:var(--muted); white-space:nowrap; }
.kpi .l { color:var(--muted); font-size:13px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:18px 20px; margin:0 0 20px; }
section p.note { color:var(--muted); margin:4px 0 10px; font-size:14px; }
.scroll { overflow-x:auto; }
.fig { width:100%; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; background:#f8fafc; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.group td { background:#eef2f7; border-top:2px solid var(--line); }
.ok { color:var(--ok); font-weight:600; } .bad { color:var(--bad); font-weight:600; }
.muted { color:var(--muted); } .small { font-size:13px; }
code { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; }
.cols { display:grid; grid-template-columns:repeat(auto-fit,minmax(320px,1fr)); gap:20px; }
footer { color:var(--muted); font-size:13px; padding:0 0 30px; }
"""

# keys of an attack record the threat table shows in their own columns
_STANDARD = frozenset({"injected", "detected", "mitigated", "loss", "loss_unit", "threat",
                       "defence", "note", "passive", "allowed"})


# --------------------------------------------------------------------------- figures

def _layout(height: int, yaxis_title: str | Sequence[str], xaxis_title: str = "",
            **extra: Any) -> dict[str, Any]:
    """Shared figure layout; a sequence as y title gives one (escaped) line per item."""
    ytitle = (_e(yaxis_title) if isinstance(yaxis_title, str)
              else "<br>".join(_e(t) for t in yaxis_title))
    axis = {"gridcolor": "#e4e7eb", "zerolinecolor": "#9aa5b1", "linecolor": "#9aa5b1",
            "automargin": True}
    layout: dict[str, Any] = {
        "template": "none",
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 10, "b": 40},
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif",
                 "size": 13, "color": "#1f2933"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hovermode": "x unified",
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "xaxis": {**axis, "title": {"text": _e(xaxis_title)}},
        "yaxis": {**axis, "title": {"text": ytitle}},
    }
    layout.update(extra)
    return layout


_NICE_STEPS = (1, 2, 4, 8, 12, 16, 24, 48, 96, 192, 288, 384, 672)


def _slot_axis(labels: Sequence[str]) -> dict[str, Any]:
    """Categorical x axis of slot labels with at most about a dozen ticks.

    Labels like "05-16 14:00" are shown as the time, with the date underneath where
    it changes (the labels are already HTML-escaped)."""
    want = max(1, math.ceil(len(labels) / 12))
    step = next((s for s in _NICE_STEPS if s >= want), want)
    vals = list(labels[::step])
    text, day = [], None
    for v in vals:
        d, sep, t = v.partition(" ")
        if sep and t:
            text.append(t if d == day else f"{t}<br>{d}")
            day = d
        else:
            text.append(v)
    return {"type": "category", "tickmode": "array", "tickvals": vals, "ticktext": text,
            "tickangle": 0}


def _fig_html(fig: go.Figure, div_id: str, height: int) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                           default_width="100%", default_height=f"{height}px",
                           config={"displaylogo": False, "responsive": True}))


def _labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    # escaped: plotly.js renders a subset of HTML in labels and decodes entities
    return [_e(r.get("label", r.get("slot", i))) for i, r in enumerate(rows)]


def _prices_fig(rows: Sequence[Mapping[str, Any]], unit: str) -> go.Figure:
    x = _labels(rows)
    retail = _series(rows, "retail_micro_per_kwh", MICRO)
    fee = _series(rows, "grid_fee_micro_per_kwh", MICRO)
    net = [None if r is None else r - (f or 0.0) for r, f in zip(retail, fee, strict=True)]
    hover = "%{y:.4f} " + unit
    fig = go.Figure(layout=_layout(380, f"price ({unit})", "slot start"))
    fig.add_scatter(x=x, y=_series(rows, "price_micro_per_kwh", MICRO), name="clearing price",
                    mode="lines+markers", marker={"size": 4}, line={"color": C_PRICE, "width": 2.5},
                    connectgaps=False, hovertemplate=hover)
    fig.add_scatter(x=x, y=retail, name="retail tariff", mode="lines",
                    line={"color": C_RETAIL, "width": 1.5, "shape": "hv"}, hovertemplate=hover)
    fig.add_scatter(x=x, y=net, name="retail − grid fee", mode="lines",
                    line={"color": C_NET, "width": 1.5, "dash": "dash", "shape": "hv"},
                    hovertemplate=hover)
    fig.add_scatter(x=x, y=_series(rows, "feed_in_micro_per_kwh", MICRO), name="feed-in tariff",
                    mode="lines", line={"color": C_FEED_IN, "width": 1.5, "shape": "hv"},
                    hovertemplate=hover)
    fig.update_xaxes(**_slot_axis(x))
    return fig


def _volume_fig(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    x = _labels(rows)
    fig = go.Figure(layout=_layout(320, "energy per slot (kWh)", "slot start", barmode="group"))
    fig.add_bar(x=x, y=_series(rows, "volume_wh", 1000), name="traded",
                marker={"color": C_PRICE}, hovertemplate="%{y:.2f} kWh")
    curtailed = _series(rows, "curtailed_wh", 1000)
    if any(c for c in curtailed):
        fig.add_bar(x=x, y=curtailed, name="curtailed", marker={"color": C_RETAIL},
                    hovertemplate="%{y:.2f} kWh")
    fig.update_xaxes(**_slot_axis(x))
    return fig


def _bills_fig(parts: Sequence[Mapping[str, Any]], currency: str) -> go.Figure:
    """Each member's total without and with the market; honest members and attackers in
    separate traces (each with its own legend entry) sharing one bar position."""
    names, attacker = [], []
    for i, p in enumerate(parts):
        honest = p.get("honest", True) is not False
        name = str(p.get("name", f"p{i}"))
        names.append(_e(name if honest else f"{name} (attacker)"))
        attacker.append(not honest)
    unit = currency or "currency units"
    hover = "%{y:,.2f} " + _e(unit)
    fig = go.Figure(layout=_layout(
        max(360, 300 + 4 * len(parts)),
        (f"total over run ({unit})", "negative = net income"), "",
        barmode="group", bargap=0.25, hovermode="x unified"))
    fig.add_bar(x=names, y=_series(parts, "baseline_micro", MICRO), name="no-market baseline",
                marker={"color": C_BASE}, hovertemplate=hover, offsetgroup="baseline")
    market = _series(parts, "total_micro", MICRO)
    for is_attacker, name, style in ((False, "with market", {"color": C_HONEST}),
                                     (True, "with market (attacker)",
                                      {"color": C_ATTACK, "pattern": {"shape": "x"}})):
        idx = [i for i, a in enumerate(attacker) if a == is_attacker]
        if idx:
            fig.add_bar(x=[names[i] for i in idx], y=[market[i] for i in idx], name=name,
                        marker=style, hovertemplate=hover, offsetgroup="market")
    fig.update_xaxes(type="category", tickangle=-45, categoryorder="array", categoryarray=names)
    return fig


def _limit_line(x: list[str], value: float | None, name: str) -> go.Scatter | None:
    if value is None or not x:
        return None
    return go.Scatter(x=x, y=[value] * len(x), name=name, mode="lines", hoverinfo="skip",
                      line={"color": C_LIMIT, "width": 1.2, "dash": "dot"})


def _voltage_fig(rows: Sequence[Mapping[str, Any]], limits: Mapping[str, Any]) -> go.Figure:
    x = _labels(rows)
    fig = go.Figure(layout=_layout(320, "voltage (p.u.)", "slot start"))
    fig.add_scatter(x=x, y=_series(rows, "max_vm_pu"), name="max voltage", mode="lines",
                    line={"color": C_RETAIL, "width": 2}, hovertemplate="%{y:.4f} p.u.")
    fig.add_scatter(x=x, y=_series(rows, "min_vm_pu"), name="min voltage", mode="lines",
                    line={"color": C_PRICE, "width": 2}, hovertemplate="%{y:.4f} p.u.")
    for key, name in (("v_max_pu", "upper limit"), ("v_min_pu", "lower limit")):
        tr = _limit_line(x, _num(limits.get(key)), name)
        if tr is not None:
            fig.add_trace(tr)
    fig.update_xaxes(**_slot_axis(x))
    return fig


def _loading_fig(rows: Sequence[Mapping[str, Any]], limits: Mapping[str, Any]) -> go.Figure:
    x = _labels(rows)
    fig = go.Figure(layout=_layout(300, "max line loading (%)", "slot start"))
    fig.add_scatter(x=x, y=_series(rows, "max_loading_pct"), name="max line loading",
                    mode="lines", fill="tozeroy", line={"color": C_FEED_IN, "width": 2},
                    hovertemplate="%{y:.1f} %")
    tr = _limit_line(x, _num(limits.get("max_loading_pct")), "loading limit")
    if tr is not None:
        fig.add_trace(tr)
    fig.update_xaxes(**_slot_axis(x))
    return fig


# --------------------------------------------------------------------------- sections

def _header(summary: Mapping[str, Any]) -> str:
    sc = _d(summary.get("scenario"))
    attacks = [str(a) for a in _l(sc.get("attacks"))]
    inv = _d(summary.get("invariants"))
    if inv:
        good = all(v is True for v in inv.values())
        badge = (f'<span class="badge {"ok" if good else "bad"}">'
                 f'{"all invariants hold" if good else "invariant violated"}</span>')
    else:
        badge = ""
    # a defence that failed shows on the header, like a violated invariant (issue 19)
    failed = [str(n) for n, a in _d(summary.get("attacks")).items()
              if _d(a).get("mitigated") is False]
    if failed:
        badge += (f'<span class="badge bad" title="{_e(", ".join(failed))}">'
                  f'{len(failed)} defence{"s" if len(failed) > 1 else ""} failed: '
                  f'{_e(", ".join(failed))}</span>')
    elif _d(summary.get("attacks")):
        badge += '<span class="badge ok">every defence held</span>'
    stopped = _d(summary.get("interrupted"))
    if stopped:  # Ctrl-C ended the run early: everything below covers only what ran
        badge += (f'<span class="badge bad">partial run: stopped after step '
                  f'{_e(stopped.get("steps_done"))} of {_e(stopped.get("steps"))} (last slot '
                  f'{_e(stopped.get("last_slot"))})</span>')
    priv = _d(summary.get("privacy"))
    privacy = str(priv.get("mode", "–"))
    pooled = _d(_d(priv.get("clear_by_pool")).get("pooled"))
    leaks = sum(int(v) for v in pooled.values() if isinstance(v, int))
    if leaks:  # a household that held pseudonyms shows on a store: the defence failed
        badge += (f'<span class="badge bad">{leaks} item{"s" if leaks > 1 else ""} name a '
                  f'pseudonymous household on a validator store</span>')
    kept = _d(priv.get("out_of_pool"))
    if kept.get("member_epochs"):
        privacy += (f" ({len(_d(kept.get('members')))} sanctioned member(s) kept out of the "
                    f"pool trade under their own name in {kept['member_epochs']} member-epochs)")
    items = [("network", sc.get("network", "–")), ("participants", sc.get("participants", "–")),
             ("validators", sc.get("validators", "–")), ("slots", sc.get("slots", "–")),
             ("seed", sc.get("seed", "–")), ("start", sc.get("start", "–")),
             ("mechanism", _d(summary.get("market")).get("mechanism", "–")),
             ("privacy mode", privacy),
             ("attacks", ", ".join(attacks) if attacks else "none")]
    meta = "".join(f"<li>{_e(k)}: <b>{_e(v)}</b></li>" for k, v in items)
    return (f'<header><div class="wrap"><h1>gridledger community run{badge}</h1>'
            f'<ul class="meta">{meta}</ul></div></header>')


def _kpi(value: str, unit: str, caption: str) -> str:
    """A headline card: the number never breaks, its unit wraps under it when narrow."""
    u = f'<span class="u">{_e(unit)}</span>' if unit and value != "–" else ""
    return (f'<div class="kpi"><div class="v"><span class="n">{_e(value)}</span>{u}</div>'
            f'<div class="l">{_e(caption)}</div></div>')


def _kpis(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], currency: str) -> str:
    market, grid = _d(summary.get("market")), _d(summary.get("grid"))
    ledger, timings = _d(summary.get("ledger")), _d(summary.get("timings"))
    attacks = _d(summary.get("attacks"))
    wh = _num(market.get("energy_traded_wh"))
    if wh is None and rows:
        wh = sum(v or 0.0 for v in _series(rows, "volume_wh"))
    savings = _num(market.get("savings_pct"))
    curtailed = _num(grid.get("curtailed_wh"))
    cards = [
        _kpi(_fmt(market.get("trades")), "", "trades"),
        _kpi(_fmt(None if wh is None else wh / 1000, 1), "kWh", "energy traded"),
        _kpi(_fmt(market.get("mean_price"), 3), f"{currency}/kWh" if currency else "/kWh",
             "mean clearing price"),
        _kpi("–" if savings is None else f"{savings:+.1f}", "%",
             "honest members' saving vs tariffs"),
        _kpi(_fmt(None if curtailed is None else curtailed / 1000, 1), "kWh", "curtailed"),
        _kpi(_fmt(grid.get("violations")), "", "grid limit violations"),
        _kpi(_fmt(grid.get("max_line_loading_pct"), 1), "%", "max line loading"),
        _kpi(_fmt(ledger.get("blocks")), "", "blocks"),
        _kpi(_fmt(timings.get("tx_per_s"), 0), "tx/s", "ledger throughput (wall clock)"),
    ]
    if attacks:
        # scenarios, not summed transactions: a flood's thousands would drown the rest
        ok = sum(1 for a in attacks.values() if _d(a).get("mitigated") is True)
        cards.append(_kpi(f"{ok} / {len(attacks)}", "", "attack scenarios mitigated"))
    return f'<div class="kpis">{"".join(cards)}</div>'


def _section(sid: str, title: str, body: str, note: str = "") -> str:
    n = f'<p class="note">{_e(note)}</p>' if note else ""
    return f'<section id="{_e(sid)}"><h2>{_e(title)}</h2>{n}{body}</section>'


def _fmt_loss(a: Mapping[str, Any], currency: str) -> str:
    loss = _num(a.get("loss"))
    if loss is None:
        return "–"
    unit = str(a.get("loss_unit", "micro"))
    return _money(loss, currency) if unit == "micro" else f"{loss:,.0f} {unit}"


def _figure(key: str, value: object, currency: str) -> tuple[str, str]:
    """(label, text) of one figure; ``*_micro`` amounts in currency units, ``*_wh`` in kWh."""
    v = _num(value)
    if key.endswith("_micro") and v is not None:
        return _label(key.removesuffix("_micro")), _money(v, currency)
    if key.endswith("_wh") and v is not None:
        return _label(key.removesuffix("_wh")), _fmt(v / 1000, 3, " kWh")
    return _label(key), _plain(value)


def _figures(name: str, a: Mapping[str, Any], timings: Mapping[str, Any], currency: str) -> str:
    """The record's own figures (every key a note may name) and its wall-clock ones."""
    items = [_figure(k, v, currency) for k, v in a.items()
             if k not in _STANDARD and not (k == "failed_txs" and v == 0)]
    for k, v in _d(timings.get(name.replace("-", "_"))).items():
        items.append((_label(k) + " (wall clock)", _plain(v)))
    if not items:
        return ""
    return ('<div class="small muted">'
            + "; ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in items) + "</div>")


def _detected(a: Mapping[str, Any]) -> str:
    if a.get("passive"):
        return "passive"
    cell = _e(_fmt(a.get("detected")))
    allowed = _num(a.get("allowed"))
    if allowed:
        cell += f'<br><span class="small muted">+ {allowed:,.0f} within quota, admitted</span>'
    return cell


def _attack_row(name: str, a: Mapping[str, Any], timings: Mapping[str, Any],
                currency: str) -> str:
    mit = a.get("mitigated")
    mit_s = _check(mit) if isinstance(mit, bool) or mit is None else _e(_fmt(mit))
    extra = []
    if a.get("defence"):
        extra.append(f'{_e(a["defence"])}')
    if a.get("note"):
        extra.append(f'<span class="muted">{_e(a["note"])}</span>')
    extra.append(_figures(name, a, timings, currency))
    return (
        f"<tr><td></td><td><b>{_e(name)}</b></td><td class=\"num\">{_e(_fmt(a.get('injected')))}</td>"
        f"<td class=\"num\">{_detected(a)}</td>"
        f"<td class=\"num\">{mit_s}</td>"
        f"<td class=\"num\">{_e(_fmt_loss(a, currency))}</td>"
        f"<td>{'<br>'.join(x for x in extra if x)}</td></tr>")


def _threats(summary: Mapping[str, Any], currency: str) -> str:
    """The attack table grouped by docs/threat-model.md row (1-14, Q): each row's title, its scenarios
    of this run with their figures, and what the row still lacks in this run."""
    attacks = _d(summary.get("attacks"))
    rows = _d(summary.get("threat_rows"))
    if not attacks and not rows:
        return '<p class="muted">No attacks were injected in this run.</p>'
    timings = _d(summary.get("timings"))
    out = []
    shown: set[str] = set()
    for row_id, raw in rows.items():
        r = _d(raw)
        names = [str(n) for n in r.get("scenarios") or []]
        status = ('<span class="muted">no scenario in this run</span>' if not names
                  else _check(r.get("mitigated")))
        left = [str(n) for n in r.get("not_run") or []]
        feats = [str(n) for n in r.get("features") or []]
        notes = []
        if feats:
            notes.append("defence in the demo: " + ", ".join(feats))
        if left:
            notes.append("not in this run: " + ", ".join(left))
        out.append(f'<tr class="group"><td><b>{_e(row_id)}</b></td>'
                   f'<td colspan="3"><b>{_e(r.get("title", ""))}</b></td>'
                   f'<td class="num">{status}</td><td></td>'
                   f'<td class="muted">{_e("; ".join(notes))}</td></tr>')
        for n in names:
            if n in attacks:
                out.append(_attack_row(n, _d(attacks[n]), timings, currency))
                shown.add(n)
    for n, raw in attacks.items():  # a scenario outside the threat model's rows
        if n not in shown:
            out.append(_attack_row(n, _d(raw), timings, currency))
    return ('<div class="scroll"><table><thead><tr><th>row</th><th>threat / attack</th>'
            '<th class="num">injected</th><th class="num">detected</th>'
            '<th class="num">mitigated</th><th class="num">loss</th>'
            '<th>defence / note / figures</th></tr></thead><tbody>' + "".join(out)
            + "</tbody></table></div>")


def _members(parts: Sequence[Mapping[str, Any]], currency: str) -> str:
    """Per-member table: baseline, with market, saving, trades, sanctions."""
    unit = currency or "units"
    rows = []
    for p in parts:
        base, total = _micro(p.get("baseline_micro")), _micro(p.get("total_micro"))
        saving = None if base is None or total is None else base - total
        pct = None if saving is None or not base else 100.0 * saving / abs(base)
        sanctions = _d(p.get("sanctions"))
        n_sanctions = sum(int(_num(v) or 0) for v in sanctions.values())
        why = ", ".join(f"{_label(str(k))} {_plain(v)}" for k, v in sanctions.items())
        name = str(p.get("name", "–")) + ("" if p.get("honest", True) is not False else " (attacker)")
        cls = "" if saving is None or saving >= -0.005 else ' class="bad"'
        rows.append(
            f"<tr><td><b>{_e(name)}</b><br><span class=\"small muted\">"
            f"{_e(', '.join(str(d) for d in _l(p.get('der'))) or str(p.get('role', '')))}"
            f"</span></td><td>{_e(p.get('strategy', '–'))}</td>"
            f"<td class=\"num\">{_e(_fmt(base, 2))}</td><td class=\"num\">{_e(_fmt(total, 2))}</td>"
            f"<td class=\"num\"><span{cls}>{_e(_fmt(saving, 2))}</span></td>"
            f"<td class=\"num\">{_e('–' if pct is None else f'{pct:+.1f} %')}</td>"
            f"<td class=\"num\">{_e(_fmt(p.get('trades')))}</td>"
            f"<td class=\"num\" title=\"{_e(why)}\">{_e(_fmt(n_sanctions))}"
            + (f'<br><span class="small muted">{_e(why)}</span>' if why else "")
            + f"</td><td class=\"num\">{_e(_fmt(p.get('reputation')))}</td></tr>")
    return ('<div class="scroll"><table><thead><tr><th>member</th><th>strategy</th>'
            f'<th class="num">baseline ({_e(unit)})</th><th class="num">with market ({_e(unit)})</th>'
            f'<th class="num">saving ({_e(unit)})</th><th class="num">saving</th>'
            '<th class="num">trades</th><th class="num">sanctions</th><th class="num">reputation</th>'
            '</tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>")


def _kv_table(rows: Sequence[tuple[str, str]], head: str) -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td class=\"num\">{v}</td></tr>" for k, v in rows)
    return f'<table><thead><tr><th colspan="2">{_e(head)}</th></tr></thead><tbody>{body}</tbody></table>'


def _ledger(summary: Mapping[str, Any]) -> str:
    ledger, timings = _d(summary.get("ledger")), _d(summary.get("timings"))
    inv = _d(summary.get("invariants"))
    rows: list[tuple[str, str]] = [
        (_label(key), _e(_fmt(ledger[key])))
        for key in ("blocks", "txs", "rejected_txs", "certificate_checks", "validators")
        if key in ledger]
    causes = _d(ledger.get("failed_by_cause"))
    if causes:
        rows.append(("failed transactions by cause", _e(_plain(causes))))
    rows += [(_label(key), _check(ledger[key]))
             for key in ("certificates_ok", "validators_agree") if key in ledger]
    root = ledger.get("state_root")
    if root:
        r = str(root)
        short = r if len(r) <= 20 else f"{r[:12]}…{r[-6:]}"
        rows.append(("state root", f'<code title="{_e(r)}">{_e(short)}</code>'))
    if "tx_per_s" in timings:
        rows.append(("ledger throughput (wall clock)", _e(_fmt(timings["tx_per_s"], 0, " tx/s"))))
    if "run_s" in timings:
        rows.append(("simulation time (wall clock)", _e(_fmt(timings["run_s"], 2, " s"))))
    if "verify_chain_s" in timings:
        followed = " after the run (it replayed the stores during it)" \
            if timings.get("verify_chain_followed") else ""
        rows.append((f"verify-chain time (wall clock){followed}",
                     _e(_fmt(timings["verify_chain_s"], 2, " s"))))
    parts = [_kv_table(rows, "ledger") if rows else '<p class="muted">No ledger statistics.</p>']
    if inv:
        parts.append(_kv_table([(_label(str(k)), _check(v)) for k, v in inv.items()], "invariants"))
    return f'<div class="cols">{"".join(f"<div>{p}</div>" for p in parts)}</div>'


# --------------------------------------------------------------------------- page

def render_report(summary: dict[str, Any], series: dict[str, Any],
                  extra: Sequence[ReportSection] = ()) -> str:
    """The report page as HTML text (self-contained, plotly.js inline once); ``extra``: the
    features' own sections (``Feature.report_sections``), placed before the threats."""
    summary = dict(_d(summary))
    series = dict(_d(series))
    rows = [_d(r) for r in _l(series.get("slots"))]
    parts = [_d(p) for p in _l(series.get("participants"))]
    limits = _d(series.get("limits"))
    currency = _currency(summary)
    unit_axis = f"{currency}/kWh" if currency else "currency units/kWh"
    sc = _d(summary.get("scenario"))
    no_slots = '<p class="muted">No slots were simulated.</p>'

    sections = []
    if rows:
        sections.append(_section(
            "prices", "Prices",
            _fig_html(_prices_fig(rows, unit_axis), "fig-prices", 380),
            "Uniform clearing price per slot against the utility tariffs; gaps are slots "
            "without trades."))
        sections.append(_section("volume", "Traded volume",
                                 _fig_html(_volume_fig(rows), "fig-volume", 320)))
    else:
        sections.append(_section("prices", "Prices", no_slots))
        sections.append(_section("volume", "Traded volume", no_slots))
    if parts:
        sections.append(_section(
            "bills", "Bills vs no-market baseline",
            _fig_html(_bills_fig(parts, currency), "fig-bills", max(360, 300 + 4 * len(parts))),
            "Each participant's total over the run without a market (grid tariffs only) and "
            "with it; negative totals are net income. Attackers are marked in orange with "
            "“(attacker)”. The table below has every member's figures."))
        sections.append(_section(
            "members", "Members", _members(parts, currency),
            "Saving = baseline − with market (positive: the market paid off). Sanctions are "
            "the ledger's reputation penalties, by reason."))
    else:
        sections.append(_section("bills", "Bills vs no-market baseline",
                                 '<p class="muted">No participants.</p>'))
    if rows:
        sections.append(_section(
            "grid", "Grid",
            _fig_html(_voltage_fig(rows, limits), "fig-voltage", 320)
            + _fig_html(_loading_fig(rows, limits), "fig-loading", 300),
            "Feeder voltage band and the most loaded line per slot, with the operating limits: the "
            "simulator's power flow of every connection point's true injection (the DSO's "
            "operator view, not a publication: docs/privacy.md)."))
    else:
        sections.append(_section("grid", "Grid", no_slots))
    sections += [_section(x.section_id, x.title, x.body_html, x.note) for x in extra]
    sections.append(_section("threats", "Threats", _threats(summary, currency)))
    sections.append(_section("ledger", "Ledger", _ledger(summary)))

    title = f"gridledger report — {sc.get('network', 'community')}"
    plotly_js = ""
    if rows or parts or extra:
        plotly_js = ("<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
                     f"<script>{get_plotlyjs()}</script>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style>{plotly_js}</head><body>"
        + _header(summary)
        + f'<main class="wrap">{_kpis(summary, rows, currency)}{"".join(sections)}</main>'
        + '<footer class="wrap">Generated by <code>gridledger demo</code>; self-contained '
          "page, no network access.</footer></body></html>\n")


def write_report(summary: dict[str, Any], series: dict[str, Any], path: pathlib.Path,
                 extra: Sequence[ReportSection] = ()) -> None:
    """Render the report and write it to ``path`` (UTF-8), creating parent folders."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(summary, series, extra), encoding="utf-8")
