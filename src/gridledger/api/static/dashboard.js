// GridLedger live dashboard: renders each `dashboard` server-sent event (a snapshot of the
// node's certified state). Text goes in through textContent only; no markup from data.
"use strict";

const MICRO = 1e6;
const state = { snapshots: 0, last: null, receivedAt: 0, ended: false, source: null };
window.gridledgerDashboard = state;  // for the browser test and the curious operator

const $ = (id) => document.getElementById(id);
const fmt = (x, d = 0) => (x === null || x === undefined) ? "–"
  : Number(x).toLocaleString("en-GB", { maximumFractionDigits: d, minimumFractionDigits: d });
const cu = (micro) => (micro === null || micro === undefined) ? "–" : fmt(micro / MICRO, 3);
const short = (h) => (h ? String(h).slice(0, 12) + "…" : "–");
const clockOf = (t) => new Date(t * 1000).toISOString().slice(5, 16).replace("T", " ");

function setText(id, text) { const el = $(id); if (el) el.textContent = text; }

function rows(tbody, data, cells, cls) {
  const el = $(tbody);
  el.replaceChildren(...data.map((d) => {
    const tr = document.createElement("tr");
    if (cls && cls(d)) tr.className = cls(d);
    for (const [text, kind] of cells(d)) {
      const td = document.createElement("td");
      if (kind) td.className = kind;
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }));
}

const LAYOUT = { margin: { l: 56, r: 50, t: 26, b: 44 }, font: { size: 11 }, showlegend: true,
  legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" };
const CONFIG = { displayModeBar: false, responsive: true };

function plot(id, traces, layout) {
  if (window.Plotly) window.Plotly.react($(id), traces, Object.assign({}, LAYOUT, layout), CONFIG);
}

// an attack scenario's loss: CU for money (micro-units), else the number and its unit
function lossText(r) {
  if (r.loss === null || r.loss === undefined) return "–";
  if ((r.loss_unit || "micro") === "micro") return `${fmt(r.loss / MICRO, 6).replace(/\.?0+$/, "")} CU`;
  return `${fmt(r.loss)} ${r.loss_unit}`;
}

// the run driver's panel (gridledger demo --serve): the attack lab's table as it fills
function renderLab(lab) {
  const panel = $("lab-panel");
  panel.hidden = !lab;
  if (!lab) return;
  const measured = lab.attacks.filter((r) => r.state === "live" || r.state === "final");
  const ok = measured.filter((r) => r.mitigated === true).length;
  const word = { running: "so far", verifying: "so far · verify-chain running", ended: "final" }[lab.run];
  setText("lab-state", `${lab.attacks.length} scenarios · ${ok} / ${measured.length} mitigated ${word}`);
  setText("lab-note", lab.note || "");
  rows("lab", lab.attacks, (r) => {
    const open = r.state === "at the end";
    return [[r.attack], [r.row], [open ? "–" : fmt(r.injected), "num"],
      [open ? "–" : (r.passive ? "passive" : fmt(r.detected)), "num"],
      [open ? "–" : (r.mitigated ? "yes" : "no")], [open ? "–" : lossText(r), "num"],
      [r.state === "error" ? r.error : (open ? "measured on the finished chain" : r.state)]];
  }, (r) => (r.state === "at the end" ? "wait" : (r.mitigated === false || r.state === "error" ? "bad" : "")));
  const pill = $("conn");
  if (lab.run === "ended") {
    state.ended = true;
    if (state.source) state.source.close();  // nothing more will come: the run is over
    pill.textContent = "run ended"; pill.className = "pill ended";
  } else if (lab.run === "verifying") {
    pill.textContent = "run finishing"; pill.className = "pill wait";
  }
}

// the network on its single-line view: lines coloured by loading (share of the limit),
// buses by voltage (between the limits); hover names the bus, its cps, the line's loading
function renderSingleLine(g) {
  const lim = g.limits || {}, max = lim.loading_max_pct || 100;
  const at = new Map(g.buses.map((b) => [b.bus, b]));
  const drawn = g.lines.filter((l) => at.has(l.from_bus) && at.has(l.to_bus));
  const bins = [[0, 0.5, "#98a2b3", "< 50 %"], [0.5, 0.8, "#f79009", "50–80 %"],
    [0.8, 1, "#dc6803", "80–100 %"], [1, Infinity, "#b42318", "over the limit"]];
  const traces = [];
  for (const [lo, hi, color, label] of bins) {
    const x = [], y = [];
    for (const l of drawn) {
      const share = (l.loading_pct || 0) / max;
      if (share < lo || share >= hi) continue;
      const a = at.get(l.from_bus), b = at.get(l.to_bus);
      x.push(a.x, b.x, null); y.push(a.y, b.y, null);
    }
    if (x.length) traces.push({ name: `loading ${label}`, x, y, mode: "lines", line: { color, width: 3 }, hoverinfo: "skip" });
  }
  traces.push({ name: "lines", showlegend: false, mode: "markers", marker: { size: 8, opacity: 0 }, hoverinfo: "text",
    x: drawn.map((l) => (at.get(l.from_bus).x + at.get(l.to_bus).x) / 2),
    y: drawn.map((l) => (at.get(l.from_bus).y + at.get(l.to_bus).y) / 2),
    text: drawn.map((l) => `${l.line} (bus ${l.from_bus}–${l.to_bus}): ${l.loading_pct === null ? "no rating" : fmt(l.loading_pct, 1) + " %"}`) });
  traces.push({ name: "bus voltage", showlegend: false, mode: "markers", hoverinfo: "text",
    x: g.buses.map((b) => b.x), y: g.buses.map((b) => b.y),
    text: g.buses.map((b) => `bus ${b.bus}: ${fmt(b.vm_pu, 3)} p.u.${b.cps.length ? " · " + b.cps.join(", ") : ""}`),
    marker: { size: 9, color: g.buses.map((b) => b.vm_pu), cmin: lim.vm_min_pu || 0.9, cmax: lim.vm_max_pu || 1.1,
      colorscale: [[0, "#1f5fbf"], [0.5, "#f5f6f8"], [1, "#b54708"]], line: { width: 1, color: "#1d2430" },
      colorbar: { title: { text: "p.u." }, thickness: 10, len: 0.9 } } });
  plot("grid", traces, { xaxis: { visible: false }, yaxis: { visible: false, autorange: "reversed" },
    hovermode: "closest", margin: { l: 10, r: 10, t: 26, b: 10 } });
  const vms = g.buses.map((b) => b.vm_pu), worst = Math.max(0, ...drawn.map((l) => l.loading_pct || 0));
  setText("grid-source", `slot ${g.slot} · ${fmt(Math.min(...vms), 3)}–${fmt(Math.max(...vms), 3)} p.u. · worst loading ${fmt(worst, 1)} % · ${g.source || ""}`);
}

function renderCountdown() {
  const s = state.last;
  if (!s) return;
  const left = Math.max(0, s.clock.countdown_s - (Date.now() - state.receivedAt) / 1000);
  const m = Math.floor(left / 60), sec = Math.floor(left % 60);
  setText("countdown", `${m}:${String(sec).padStart(2, "0")}`);
}

function render(s) {
  state.last = s; state.snapshots += 1; state.receivedAt = Date.now();
  setText("chain", s.chain_id);
  setText("height", fmt(s.height));
  setText("root", `state root ${short(s.state_root)}`);
  setText("ledger-time", clockOf(s.slot_time));
  setText("slot-now", `slot ${Math.floor(s.slot_time / s.clock.slot_seconds)}`);
  setText("open-slot", String(s.clock.open_slot));
  renderCountdown();
  const b = s.book;
  setText("book-count", `${b.orders} orders · ${b.sealed_unrevealed} sealed`);
  setText("tariffs", `retail ${cu(s.tariffs.retail_micro_per_kwh)} · feed-in ${cu(s.tariffs.feed_in_micro_per_kwh)} CU/kWh`);
  const priced = s.prices.filter((p) => p.price_micro_per_kwh !== null && p.price_micro_per_kwh !== undefined);
  setText("last-price", priced.length ? `${cu(priced[priced.length - 1].price_micro_per_kwh)} CU/kWh` : "–");
  const vol = s.prices.reduce((a, p) => a + (p.volume_wh || 0), 0);
  setText("volume", `${fmt(vol / 1000, 1)} kWh`);
  setText("trades", `${fmt(s.prices.reduce((a, p) => a + (p.trades || 0), 0))} trades in ${s.prices.length} slots`);
  const v = s.validators;
  const named = v.members.filter((m) => m.offences.length).length;
  setText("health", v.halted ? "halted" : `${v.members.length} · ${named} named`);
  setText("mempool", `quorum ${v.quorum ?? "–"} · mempool ${fmt(v.mempool)}`);

  setText("depth-slot", `slot ${b.slot}${b.status ? " · " + b.status + " (as offered)" : " · open"}`);
  plot("depth", [
    { name: "bids", x: b.bids.map((l) => l[1] / 1000), y: b.bids.map((l) => l[0] / MICRO), mode: "lines",
      line: { shape: "vh", color: "#1a7f37" } },
    { name: "asks", x: b.asks.map((l) => l[1] / 1000), y: b.asks.map((l) => l[0] / MICRO), mode: "lines",
      line: { shape: "vh", color: "#b42318" } },
  ], { xaxis: { title: { text: "cumulative kWh" } }, yaxis: { title: { text: "CU/kWh" } },
       annotations: b.bids.length || b.asks.length ? [] : [{ text: `no orders for slot ${b.slot} yet`,
         showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] });

  const slots = s.prices.map((p) => p.slot);
  plot("prices", [
    { name: "traded kWh", type: "bar", x: slots, y: s.prices.map((p) => (p.volume_wh || 0) / 1000),
      yaxis: "y2", marker: { color: "rgba(31,95,191,0.25)" } },
    { name: "clearing", x: slots, y: s.prices.map((p) => (p.price_micro_per_kwh ?? null) === null ? null : p.price_micro_per_kwh / MICRO),
      mode: "lines+markers", line: { color: "#1f5fbf" } },
    { name: "retail", x: slots, y: slots.map(() => s.tariffs.retail_micro_per_kwh / MICRO), mode: "lines",
      line: { dash: "dash", color: "#b54708" } },
    { name: "feed-in", x: slots, y: slots.map(() => s.tariffs.feed_in_micro_per_kwh / MICRO), mode: "lines",
      line: { dash: "dot", color: "#1a7f37" } },
  ], { xaxis: { title: { text: "slot" }, tickformat: "d" }, yaxis: { title: { text: "CU/kWh" }, rangemode: "tozero" },
       yaxis2: { title: { text: "kWh" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } });

  const g = s.grid;
  const seriesBox = $("grid-series");
  if (g && g.buses && g.buses.length && g.buses[0].x !== undefined) {
    renderSingleLine(g);
  } else if (g && g.buses) {  // a grid source without a drawing: voltages and loadings as charts
    setText("grid-source", `${g.source || ""} · slot ${g.slot}`);
    const lim = g.limits || {};
    const buses = g.buses.map((x) => String(x.bus));
    plot("grid", [
      { name: "voltage (p.u.)", x: buses, y: g.buses.map((x) => x.vm_pu), mode: "markers", marker: { color: "#1f5fbf" } },
      { name: "line loading (%)", type: "bar", x: g.lines.map((x) => String(x.line)), y: g.lines.map((x) => x.loading_pct),
        xaxis: "x2", yaxis: "y2", marker: { color: g.lines.map((x) => x.loading_pct > (lim.loading_max_pct || 100) ? "#b42318" : "#98a2b3") } },
    ], { grid: { rows: 1, columns: 2, pattern: "independent" },
         yaxis: { title: { text: "p.u." }, range: [Math.min(0.9, lim.vm_min_pu || 0.9), Math.max(1.1, lim.vm_max_pu || 1.1)] },
         xaxis: { title: { text: "bus" }, type: "category" }, xaxis2: { title: { text: "line" }, type: "category" },
         yaxis2: { title: { text: "%" }, rangemode: "tozero" },
         shapes: [lim.vm_min_pu, lim.vm_max_pu].filter((y) => y).map((y) => ({ type: "line", xref: "x domain", x0: 0, x1: 1, y0: y, y1: y, line: { dash: "dash", color: "#b54708" } })) });
  } else if (!(g && g.series)) {
    setText("grid-source", "no network model on this node (gridledger node start --network): metered energy below is the ledger's view");
    plot("grid", [], { annotations: [{ text: "this validator holds no network model", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }],
                       xaxis: { visible: false }, yaxis: { visible: false } });
  }
  seriesBox.hidden = !(g && g.series);
  if (g && g.series) {  // a run's power flows, slot by slot: extremes against the limits
    const lim = g.limits || {}, x = g.series.labels || g.series.slots;
    if (!g.buses) setText("grid-source", `${g.source || ""} · last slot ${g.slot}`);
    plot(g.buses ? "grid-series" : "grid", [
      { name: "max voltage (p.u.)", x, y: g.series.max_vm_pu, mode: "lines", line: { color: "#b54708" } },
      { name: "min voltage (p.u.)", x, y: g.series.min_vm_pu, mode: "lines", line: { color: "#1f5fbf" } },
      { name: "max loading (%)", x, y: g.series.max_loading_pct, mode: "lines", yaxis: "y2",
        line: { color: "#667085", dash: "dot" } },
    ], { xaxis: { type: "category", nticks: 8 },
         yaxis: { title: { text: "p.u." }, range: [Math.min(0.88, lim.vm_min_pu || 0.9), Math.max(1.12, lim.vm_max_pu || 1.1)] },
         yaxis2: { title: { text: "% loading" }, overlaying: "y", side: "right", range: [0, Math.max(100, ...g.series.max_loading_pct)], showgrid: false },
         shapes: [lim.vm_min_pu, lim.vm_max_pu].filter((y) => y).map((y) => ({ type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { dash: "dash", color: "#b42318", width: 1 } })) });
  }

  const r = s.readings;
  setText("read-slot", r.slot === null ? "no readings yet" : `slot ${r.slot}${r.cps.some((c) => c.flagged) ? " · flagged cps in red" : ""}`);
  const cps = r.cps.map((c) => c.cp);
  plot("readings", [
    { name: "import Wh", type: "bar", x: cps, y: r.cps.map((c) => c.import_wh),
      marker: { color: r.cps.map((c) => c.flagged ? "#b42318" : "#1f5fbf") } },
    { name: "export Wh", type: "bar", x: cps, y: r.cps.map((c) => -c.export_wh),
      marker: { color: r.cps.map((c) => c.flagged ? "#f97066" : "#1a7f37") } },
  ], { barmode: "relative", xaxis: { type: "category", tickangle: -60, automargin: true }, yaxis: { title: { text: "Wh (export < 0)" } } });

  const counts = s.alerts.counts;
  const box = $("alert-counts");
  const kinds = ["false-data flag", "quarantine", "sanction", "rejected_txs", "missing votes"];
  for (const k of Object.keys(counts)) if (!kinds.includes(k)) kinds.push(k);
  box.replaceChildren(...kinds.map((k) => {
    const d = document.createElement("div");
    d.className = "count" + ((counts[k] || 0) > 0 ? " hot" : "");
    const n = document.createElement("b"); n.textContent = fmt(counts[k] || 0);
    d.append(n, document.createTextNode(k.replace("_", " ")));
    return d;
  }));
  renderLab(s.attack_lab);
  rows("rejected", Object.entries(s.alerts.rejected_by_rule), ([rule, n]) => [[rule], [fmt(n), "num"]]);
  rows("recent", s.alerts.recent.slice(0, 14), (a) => [[fmt(a.height)], [a.kind], [short(a.subject)], [a.detail || ""]]);
  rows("validators", v.members, (m) => [[String(m.index)], [m.name || short(m.address)],
    [fmt(m.last_vote_height), "num"], [fmt(m.missing_votes), "num"], [m.offences.join("; ") || "–"]],
    (m) => (m.offences.length ? "bad" : ""));
  rows("certs", v.certificates.slice(0, 8), (c) => [[fmt(c.height)], [`${c.votes}/${c.of}`, "num"],
    [c.missing.length ? c.missing.join(", ") : "–"], [short(c.hash), "hash"]],
    (c) => (c.missing.length ? "bad" : ""));
}

function connect() {
  const es = new EventSource("/v1/dashboard/events");
  state.source = es;
  es.addEventListener("dashboard", (e) => {
    const pill = $("conn"); pill.textContent = "live"; pill.className = "pill live";
    render(JSON.parse(e.data));
  });
  es.addEventListener("busy", () => { setText("conn", "node busy: too many dashboards"); });
  es.onerror = () => {
    if (state.ended) return;  // the run is over and its final table is shown
    const pill = $("conn"); pill.textContent = "reconnecting…"; pill.className = "pill down";
  };
}

setInterval(renderCountdown, 1000);
connect();
