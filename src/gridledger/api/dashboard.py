"""The operator's live dashboard (issue 20.1): a page at ``/`` fed by a server-sent stream.

``GET /`` serves ``static/dashboard.html``; its script (``/dashboard/app.js``), style sheet
and plotly.js (``/dashboard/plotly.min.js``, the copy shipped inside the installed ``plotly``
Python package — no CDN) come from this node, under a strict Content-Security-Policy: no
inline script, nothing from another origin, no frames, no forms.

``GET /v1/dashboard`` is one snapshot (JSON); ``GET /v1/dashboard/events`` streams
``event: dashboard`` with a fresh snapshot at connect and after every finalized block. A
snapshot is read from the certified state at one height (``NodeService.query``): the slot and
ledger-time countdown to its gate closure, the open slot's order book as cumulative depth,
clearing prices and traded volume of recent slots against the retail and feed-in tariffs, the
metered import/export per connection point of the last read slot (flags marked), and — when
the node is given a grid source (a DSO's or the demo's power flow) — bus voltages (p.u.) and
line loadings (%). Alerts and validator health are counted by ``DashboardFeed`` from the
certified blocks it has seen since start: false-data flags, meter quarantines, sanctions
(reputation losses), rejected transactions by rule, votes missing from certificates, and the
node's named offenders.

A run driver (``gridledger demo --serve``) adds its own panel through a ``RunPanel``: the
attack lab's table as it fills (each scenario's injected / detected / mitigated / loss so
far, then its final result) and the run's state. Once the run stops executing blocks the
feed keeps its last certified snapshot (the stores close), and after the driver publishes
``ended`` every stream sends that final snapshot and closes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import plotly
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response, StreamingResponse

from gridledger.api.service import NodeService

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
"""Scripts only from this node (none inline), fetches and the event stream only to it. Styles
allow inline because plotly.js writes its own style rules and per-element styles at run
time (plotly.js issue 2355); no markup is ever built from data (text nodes only)."""
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
PRICE_SLOTS = 24     # slots of clearing history on the price chart
RECENT_ALERTS = 40
BACKFILL_BLOCKS = 200  # a dashboard opened on a running node counts this far back
CERT_HISTORY = 12
MAX_READ_TRIES = 5
MAX_SNAPSHOTS = 100_000
GridSource = Callable[[int | None, list[dict[str, Any]]], dict[str, Any] | None]
"""Latest network state, given the last slot with certified readings and those readings (a
validator's power flow of them: ``grid.single_line.ledger_grid_source``; the demo's own
power flows ignore them): ``{source, slot, buses: [{bus, x, y, vm_pu, cps}], lines: [{line,
kind, from_bus, to_bus, loading_pct}], limits: {vm_min_pu, vm_max_pu, loading_max_pct}}``
(``x``/``y``: the single-line drawing, ``grid.single_line``), optionally ``series`` (per
slot: max/min voltage, worst loading), or None before the first."""
RunState = Literal["running", "verifying", "ended"]
"""``running``: blocks are being executed; ``verifying``: the run executes no more blocks
(verify-chain and the results are under way; the page keeps the last certified snapshot);
``ended``: the final results are on the page."""


class RunPanel:
    """What a run driver shows beside the node's certified state: ``{run, attacks, note}``,
    ``attacks`` = the attack lab's rows ``{attack, row, state, injected, detected, mitigated,
    loss, loss_unit, passive}`` (``state``: ``live`` — figures so far, ``at the end`` — a
    scenario measured only when the run is over, ``final``, or ``error`` with ``error``).
    The driver ``publish``es; every dashboard stream gets a snapshot with it at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"run": "running", "attacks": [], "note": ""}
        self._listeners: list[Callable[[], None]] = []
        self._viewers = 0

    def publish(self, run: RunState, attacks: list[dict[str, Any]], note: str = "") -> None:
        """Set the run's state and the lab's rows (called by the driver's thread)."""
        with self._lock:
            self._state = {"run": run, "attacks": [dict(r) for r in attacks], "note": note}
            listeners = list(self._listeners)
        for fn in listeners:
            fn()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {**self._state, "attacks": list(self._state["attacks"])}

    def listen(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` after each ``publish``; returns the cancel function."""
        with self._lock:
            self._listeners.append(fn)

        def cancel() -> None:
            with self._lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)

        return cancel

    def viewing(self, delta: int) -> None:
        """A dashboard stream opened (+1) or closed (-1)."""
        with self._lock:
            self._viewers += delta

    @property
    def viewers(self) -> int:
        """Dashboard streams open now (after ``ended`` each closes once it sent the final
        snapshot)."""
        with self._lock:
            return self._viewers


def _static(name: str) -> bytes:
    return resources.files("gridledger.api").joinpath("static", name).read_bytes()


def _plotly_js() -> bytes:
    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()


def _hex(v: Any) -> Any:
    return v.hex() if isinstance(v, bytes) else v


ALERT_EVENTS = frozenset({"reading_flagged", "meter_quarantined"})
"""Transaction events an operator is alerted to (false-data flags, quarantines; also every
reputation loss, a sanction); the block stream carries them beside the block's own events."""


def is_alert(e: dict[str, Any]) -> bool:
    return e.get("type") in ALERT_EVENTS or (e.get("type") == "reputation"
                                             and int(e.get("delta", 0)) < 0)


def _alert(ev: dict[str, Any], height: int) -> dict[str, Any] | None:
    """An operator alert from a certified event (None: not an alert)."""
    kind = ev.get("type")
    if kind == "reading_flagged":
        return {"kind": "false-data flag", "height": height, "slot": ev.get("slot"),
                "subject": ev.get("cp"), "detail": "reading replaced by the DSO's estimate"}
    if kind == "meter_quarantined":
        return {"kind": "quarantine", "height": height, "slot": ev.get("slot"),
                "subject": ev.get("cp"), "detail": str(ev.get("reason", ""))}
    if kind == "reputation" and int(ev.get("delta", 0)) < 0:
        return {"kind": "sanction", "height": height, "slot": ev.get("slot"),
                "subject": _hex(ev.get("addr")), "detail": f"{ev.get('reason')} "
                                                           f"{ev.get('delta')} → {ev.get('score')}"}
    if kind in ("non_delivery", "slot_failed", "aggregate_mismatch", "aggregator_rejected",
                "escrow_bogus", "certificates_withheld"):
        return {"kind": kind.replace("_", " "), "height": height, "slot": ev.get("slot"),
                "subject": _hex(ev.get("seller") or ev.get("addr") or ev.get("cp") or ""),
                "detail": ""}
    return None


class DashboardFeed:
    """Counts alerts and certificate votes from every finalized block the node publishes,
    and builds snapshots of the certified state for the page."""

    def __init__(self, node: NodeService, grid: GridSource | None = None,
                 run: RunPanel | None = None) -> None:
        self.node = node
        self.grid = grid
        self.run = run
        self._frozen: dict[str, Any] | None = None  # the last certified snapshot, once the
        # driver stopped executing blocks (its stores close: nothing more to read)
        self._lock = threading.Lock()
        self.rejected: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)
        self.missing: Counter[int] = Counter()
        self.last_vote: dict[int, int] = {}
        self.certs: deque[dict[str, Any]] = deque(maxlen=CERT_HISTORY)
        self._pending: list[int] = []
        self._first: int | None = None  # first height published to this feed
        self._backfilled = False
        self._version = 0  # blocks seen; a snapshot is reused until the next one
        self._cached: tuple[int, dict[str, Any]] | None = None
        self._build = threading.Lock()
        self._cancel = node.subscribe(self.on_block)
        self._cancel_run = run.listen(self.on_run) if run is not None else (lambda: None)

    def close(self) -> None:
        self._cancel()
        self._cancel_run()

    def on_run(self) -> None:
        """The driver published (its thread): once the run executes no more blocks, keep the
        last certified snapshot — read now, before its stores close."""
        assert self.run is not None
        if self.run.state()["run"] != "running":
            with self._build:
                if self._frozen is None:
                    self._frozen = self._read_snapshot()
        with self._lock:
            self._version += 1

    def on_block(self, ev: dict[str, Any]) -> None:
        """A finalized block's event (node thread: only counts, no reads)."""
        with self._lock:
            self._ingest(int(ev["height"]), ev.get("rejected", {}),
                         ev.get("alerts", []) + ev.get("events", []))
            self._version += 1

    def _ingest(self, h: int, rejected: dict[str, int], events: list[dict[str, Any]]) -> None:
        for rule, n in rejected.items():
            self.rejected[rule] += int(n)
            self.counts["rejected_txs"] += int(n)
        for e in events:
            a = _alert(e, h)
            if a is not None:
                self.counts[a["kind"]] += 1
                self.recent.appendleft(a)
        self._pending.append(h)
        self._first = min(self._first or h, h)

    def _backfill(self, height: int) -> None:
        """Once: the blocks the node finalized before this feed started (up to
        ``BACKFILL_BLOCKS``), from its store."""
        with self._lock:
            if self._backfilled:
                return
            self._backfilled = True
            upto = self._first or height + 1
        older = []
        for h in range(max(1, upto - BACKFILL_BLOCKS), upto):
            got = self.node.block(h)
            if got is None:
                continue
            receipts = got[2]
            rejected: Counter[str] = Counter(r["rule"] for r in receipts["txs"] if not r["ok"])
            events = [_plain(e) for r in receipts["txs"] for e in r["events"] if is_alert(e)]
            older.append((h, dict(rejected), events + [_plain(e) for e in receipts["block"]]))
        with self._lock:
            newer, self._pending = self._pending, []
            for h, rejected_h, events in older:
                self._ingest(h, rejected_h, events)
            self._pending += newer

    def cached_snapshot(self) -> dict[str, Any]:
        """``snapshot()``, built once per finalized block however many streams read it."""
        with self._build:
            with self._lock:
                version = self._version
            if self._cached is None or self._cached[0] != version:
                self._cached = (version, self.snapshot())
            return self._cached[1]

    def _read_certificates(self, n_validators: int) -> None:
        with self._lock:
            heights, self._pending = self._pending[-CERT_HISTORY:], []
        for h in heights:
            got = self.node.block(h)
            if got is None:
                continue
            voted = sorted(i for i, _ in got[3].votes)
            gone = [i for i in range(n_validators) if i not in voted]
            with self._lock:
                for i in voted:
                    self.last_vote[i] = max(self.last_vote.get(i, 0), h)
                for i in gone:
                    self.missing[i] += 1
                    self.counts["missing votes"] += 1
                self.certs.appendleft({"height": h, "votes": len(voted), "of": n_validators,
                                       "missing": gone, "hash": got[3].header_hash.hex()})

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows: the node's certified state (the last one read, once
        the run executes no more blocks) and the run driver's panel (``attack_lab``; None
        on a node without one)."""
        base = self._frozen if self._frozen is not None else self._read_snapshot()
        return {**base, "attack_lab": self.run.state() if self.run is not None else None}

    def _read_snapshot(self) -> dict[str, Any]:
        """The node's part, read at one certified height (the reads are retried if a block
        was certified between them)."""
        for _ in range(MAX_READ_TRIES):
            st = self.node.status()
            height, (params, vals) = self.node.query(["governance/params", "validators"])
            slot_s, gate_s = int(params["slot_seconds"]), int(params["gate_closure_s"])
            t = int(st["slot_time"])
            open_slot = (t + gate_s) // slot_s + 1  # the next slot whose gate has not closed
            history = list(range(max(0, open_slot - PRICE_SLOTS), open_slot))
            paths = [f"market/book/{open_slot}", f"market/book/{open_slot - 1}"]
            paths += [f"market/slot/{s}" for s in history]
            paths += [f"metering/readings/{s}"
                      for s in range(open_slot - 2, max(-1, open_slot - 8), -1)]
            try:
                again, got = self.node.query(paths)
            except KeyError:  # a chain without the market or metering module
                again, got = height, [{}, {}] + [None] * len(history) + [[]] * (len(paths) - 2 - len(history))
            if int(st["height"]) == height == again:
                break
        self._backfill(height)
        self._read_certificates(len(vals.get("validators", [])) or int(st["validators"]))
        # the open slot's book; before its first order, the book that just closed
        book_slot, book = ((open_slot, got[0]) if got[0].get("orders") or not got[1].get("orders")
                           else (open_slot - 1, got[1]))
        slots, readings = got[2:2 + len(history)], got[2 + len(history):]
        read_slot, read = next(((open_slot - 2 - i, r) for i, r in enumerate(readings) if r),
                               (None, []))
        with self._lock:
            alerts = {"counts": dict(sorted(self.counts.items())),
                      "rejected_by_rule": dict(self.rejected.most_common()),
                      "recent": list(self.recent)}
            missing, last_vote, certs = dict(self.missing), dict(self.last_vote), list(self.certs)
        offenders = st.get("offenders", {})
        members = vals.get("validators", [])
        return {
            "chain_id": st["chain_id"], "height": height, "state_root": st["state_root"],
            "block_hash": st["block_hash"], "slot_time": t,
            "clock": {"slot_seconds": slot_s, "gate_closure_s": gate_s, "open_slot": open_slot,
                      "gate_closes_at": open_slot * slot_s - gate_s,
                      "countdown_s": open_slot * slot_s - gate_s - t},
            "tariffs": {"retail_micro_per_kwh": params["retail_import_micro_per_kwh"],
                        "feed_in_micro_per_kwh": params["feed_in_micro_per_kwh"]},
            "book": _depth(book_slot, book),
            "prices": [{"slot": s, **{k: rec.get(k) for k in ("status", "price_micro_per_kwh",
                                                              "volume_wh", "trades")}}
                       for s, rec in zip(history, slots, strict=True) if rec],
            "readings": {"slot": read_slot, "cps": [_plain(r) for r in read]},
            "grid": self.grid(read_slot, [_plain(r) for r in read]) if self.grid is not None else None,
            "alerts": alerts,
            "validators": {
                "quorum": vals.get("quorum"), "mempool": st.get("mempool", 0),
                "halted": bool(st.get("halted", False)),
                "members": [{"index": m["index"], "name": m.get("name", ""),
                             "address": _hex(m.get("address")),
                             "last_vote_height": last_vote.get(m["index"]),
                             "missing_votes": missing.get(m["index"], 0),
                             "offences": offenders.get(str(m["index"]), [])} for m in members],
                "certificates": certs},
        }


def _plain(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: _hex(v) for k, v in obj.items()}


def _depth(slot: int, book: dict[str, Any]) -> dict[str, Any]:
    """Cumulative depth: bids from the highest price down, asks from the lowest up (Wh open
    at each price or better; for a cleared book, what was offered)."""
    sides: dict[str, Counter[int]] = {"buy": Counter(), "sell": Counter()}
    closed = book.get("status") is not None  # a cleared book shows what was offered
    for o in book.get("orders", []):
        left = int(o["energy_wh"]) - (0 if closed else int(o.get("filled_wh") or 0))
        if left > 0 and o["side"] in sides:
            sides[o["side"]][int(o["price_micro_per_kwh"])] += left

    def cumulate(levels: Counter[int], descending: bool) -> list[list[int]]:
        out: list[list[int]] = []
        total = 0
        for price in sorted(levels, reverse=descending):
            total += levels[price]
            out.append([price, total])
        return out

    return {"slot": slot, "bids": cumulate(sides["buy"], True), "asks": cumulate(sides["sell"], False),
            "orders": len(book.get("orders", [])), "sealed_unrevealed": book.get("sealed_unrevealed", 0),
            "status": book.get("status")}


def add_dashboard(api: FastAPI, node: NodeService, grid: GridSource | None = None,
                  max_streams: int = 16,
                  rejections: dict[int | str, dict[str, Any]] | None = None,
                  run: RunPanel | None = None) -> DashboardFeed:
    """Register ``/``, its assets and ``/v1/dashboard[/events]`` on ``api``;
    ``rejections``: the OpenAPI entries of the error statuses (the API's rejection body);
    ``run``: a run driver's panel (the attack lab's table)."""
    feed = DashboardFeed(node, grid, run)
    assets = {"app.js": ("text/javascript", _static("dashboard.js")),
              "app.css": ("text/css", _static("dashboard.css"))}
    page = _static("dashboard.html")
    plotly_js: list[bytes] = []
    streams = [0]
    counted = threading.Lock()

    @api.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    @api.get("/dashboard/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name == "plotly.min.js":
            if not plotly_js:
                plotly_js.append(_plotly_js())
            return Response(plotly_js[0], media_type="text/javascript",
                            headers={**HEADERS, "Cache-Control": "max-age=86400"})
        if name not in assets:
            return Response(b'{"rule": "not-found", "detail": "no such dashboard asset"}',
                            status_code=404, media_type="application/json")
        ctype, body = assets[name]
        return Response(body, media_type=ctype, headers=HEADERS)

    @api.get("/v1/dashboard", responses=rejections or {},
             summary="The dashboard's snapshot of the certified state (slot clock, book "
                     "depth, prices, readings, alerts, validators)")
    async def dashboard() -> dict[str, Any]:
        return await asyncio.to_thread(feed.cached_snapshot)

    @api.get("/v1/dashboard/events", response_class=StreamingResponse,
             responses={200: {"description": "Server-sent events: `event: dashboard`, "
                                             "`data: {snapshot json}` at connect, after "
                                             "every finalized block and every change of a "
                                             "run's panel; after a run ended, its final "
                                             "snapshot, then the stream closes",
                              "content": {"text/event-stream": {}}},
                        **(rejections or {})},
             summary="Server-sent dashboard snapshots")
    async def dashboard_events(request: Request, limit: Annotated[int, Query(
            ge=0, le=MAX_SNAPSHOTS, description="Stop after this many snapshots (0: until the client "
                                          "disconnects)")] = 0) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        fresh = asyncio.Event()

        def push(_ev: dict[str, Any]) -> None:  # node thread
            loop.call_soon_threadsafe(fresh.set)

        async def gen() -> AsyncIterator[str]:
            # subscribe and count inside the generator: its ``finally`` runs however the
            # stream ends (client gone, server shutting down)
            with counted:
                if streams[0] >= max_streams:
                    yield "event: busy\ndata: {}\n\n"
                    return
                streams[0] += 1
            cancel = node.subscribe(push)
            cancel_run = run.listen(lambda: push({})) if run is not None else (lambda: None)
            if run is not None:
                run.viewing(+1)
            try:
                fresh.set()  # a snapshot at connect
                sent = 0
                while (limit <= 0 or sent < limit) and not await request.is_disconnected():
                    try:
                        await asyncio.wait_for(fresh.wait(), timeout=15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    fresh.clear()  # blocks finalized meanwhile are in this one snapshot
                    snap = await asyncio.to_thread(feed.cached_snapshot)
                    yield f"event: dashboard\ndata: {json.dumps(snap)}\n\n"
                    sent += 1
                    lab = snap.get("attack_lab")
                    if lab is not None and lab["run"] == "ended":
                        break  # the final table is out: nothing more will change
            finally:
                cancel()
                cancel_run()
                if run is not None:
                    run.viewing(-1)
                with counted:
                    streams[0] -= 1

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return feed
