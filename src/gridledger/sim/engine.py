"""The scenario engine: a community trading on the embedded ledger over a real grid.

One *step* per simulated 15-minute slot L (= the ledger's slot number, counted from the start
of SimBench's profile year), three blocks each:

====================  =========================================================================
block time            what happens
====================  =========================================================================
``A = 900 L - 450``   orders for slot L (agents), the DSO's operating envelopes for L, the
                      DSO's FDI flags for slots L-2 (and L-3 when its two-slot test fires),
                      attack transactions, disputes
``B = 900 L - 150``   the reveal deadline passes: slot L clears at the end of this block;
                      agents learn the price. Then slot L is *delivered*: each cp's net
                      injection (forecast + battery, inside its envelope), a pandapower check
                      of voltages and loading, seeded meter and DSO-sensor readings
``C = 900 L + 10``    meters' signed readings for slot L-1; slot L-3 settles (settle window
                      two slots). Afterwards the DSO runs state estimation and bad-data
                      detection on slot L-1
====================  =========================================================================

After the last slot, four more steps without orders read, check, settle and dispute the
tail. Everything is derived from ``Scenario.seed``: keys, member choice, strategies, meter
noise, attack targets. The ledger side is exact integers; the grid side (power flow,
estimation) is floats and deterministic on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridledger.errors import RejectedTx
from gridledger.grid import (
    SLOTS_PER_DAY,
    DetectionResult,
    GridModel,
    SlotMeasurements,
    compute_envelopes,
    curtail_schedule,
    detect_bad_meters,
    measure_slot,
    verify_schedule,
)
from gridledger.grid.powerflow import GridLimits
from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.sig import SigningKey
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.governance.types import Params, parse_params
from gridledger.ledger.modules.reputation.keeper import reputation_of
from gridledger.ledger.tx import Tx, decode_tx, sign_tx
from gridledger.node.admission import QuotaPolicy
from gridledger.node.embedded import EmbeddedNetwork, FinalizedBlock
from gridledger.sim.agents import Agent, MarketView, make_agent
from gridledger.sim.community import Community, Member, build_community
from gridledger.sim.scenario import Scenario

S = 900
T_ORDERS = -450
T_CLEAR = -150
T_READ = 10
TAIL_STEPS = 4
MEMBER_QUOTA = 10  # transactions per sender per slot (token bucket refill and burst)
FIRMWARE = tagged_hash("gl/sim-firmware", b"meter-fw-2.4.1")  # what honest meters attest

Progress = Callable[[int, int, str], None]


@dataclass
class SlotRecord:
    slot: int
    label: str
    price_micro_per_kwh: int | None = None
    volume_wh: int = 0
    trades: int = 0
    orders: int = 0
    clipped_wh: int = 0
    retail_micro_per_kwh: int = 0
    feed_in_micro_per_kwh: int = 0
    grid_fee_micro_per_kwh: int = 0
    max_vm_pu: float = 1.0
    min_vm_pu: float = 1.0
    max_loading_pct: float = 0.0
    violations: int = 0
    curtailed_wh: int = 0
    flags: int = 0
    community_net_wh: int = 0


@dataclass
class Delivered:
    """What physically happened in one slot (ground truth, known to the simulator only)."""

    slot: int
    measurements: SlotMeasurements          # what devices report (after any attack)


@dataclass
class Stats:
    blocks: int = 0
    txs: int = 0
    rejected_txs: int = 0
    admitted: int = 0
    admission_rejected: dict[str, int] = field(default_factory=dict)
    rejected_receipts: dict[str, int] = field(default_factory=dict)


class Engine:
    def __init__(self, sc: Scenario, model: GridModel, out: Path, *,
                 progress: Progress | None = None, attack_overrides: dict[str, Any] | None = None) -> None:
        from gridledger.sim.attacks import make_attacks

        self.sc = sc
        self.model = model
        self.out = out
        self.progress = progress
        self.community: Community = build_community(model, sc)
        self.members: list[Member] = self.community.members
        self.by_addr = self.community.by_address()
        self.by_cp = self.community.by_cp()
        self.params: Params = parse_params(self.community.genesis.params)
        self.agents: dict[str, Agent] = {
            m.cp: make_agent(m.name, m.strategy, sc.seed, m.battery) for m in self.members}
        self.nonces: dict[bytes, int] = {}
        self.tx_info: dict[bytes, tuple[bytes, str, dict[str, Any]]] = {}  # tx id -> sender, kind, body
        self.truth: dict[int, dict[str, int]] = {}
        self.placed: dict[bytes, int] = {}              # order id -> order_placed events
        self.stats = Stats()
        self.slots: dict[int, SlotRecord] = {}
        self.delivered: dict[int, Delivered] = {}
        self.detections: dict[int, DetectionResult] = {}
        self.flagged: dict[int, set[str]] = {}          # slot -> cps flagged on the ledger
        self.pending_flags: list[bytes] = []
        self.events: list[dict[str, Any]] = []           # every block + receipt event
        self.bills: dict[int, dict[bytes, dict[str, Any]]] = {}
        self.trades: dict[int, list[dict[str, Any]]] = {}
        self.last_envelopes: dict[str, tuple[int, int]] = {}
        self.envelopes_by_slot: dict[int, dict[str, tuple[int, int]]] = {}
        self.battery_plan: dict[tuple[str, int], int] = {}
        self.order_raws: dict[int, list[bytes]] = {}     # slot -> honest order txs (public)
        self.fills: dict[int, dict[bytes, dict[str, int]]] = {}
        self.views: dict[int, MarketView] = {}
        self.timings: dict[str, float] = {"grid_s": 0.0, "ledger_s": 0.0, "agents_s": 0.0}
        self.step_latency_s: list[tuple[int, float]] = []
        self.limits = GridLimits()
        self.final_roots: list[str] = []
        self._in_attack = False
        self._attack_admit_s = 0.0
        ledger_dir = out / "ledger"
        # quotas in ledger time: a member needs ~2 transactions a slot; the DSO posts an
        # envelope and up to two flags per member, so its identity gets a larger share
        self._quota = QuotaPolicy(rate_per_s=MEMBER_QUOTA / S, burst=float(MEMBER_QUOTA))
        dso_scale = 500 * (-(-(2 * len(self.members) + 16) // MEMBER_QUOTA))  # + roaming charges
        dso_addr = self.community.dso.address
        self.net = EmbeddedNetwork(self.community.genesis, self.community.validators, ledger_dir,
                                   quota=self._quota, max_block_txs=2000,
                                   mempool_capacity=20_000, snapshot_every=96)
        self._quota.reputation_of = lambda a: (dso_scale if a == dso_addr else
                                               reputation_of(self.net.entry.app.state, a))
        self.supply0 = self.net.entry.app.state.get_int(bank.SUPPLY)
        self.money0 = self._money()
        self.final: dict[str, Any] = {}
        from gridledger.sim.secagg import FeederAggregation

        assert self.community.privacy_keys is not None
        self.secagg = FeederAggregation(self.community.privacy_keys, self.members)
        self.rounds: dict[int, Any] = {}  # slot -> secagg.Round
        self.attacks = make_attacks(sc.attacks, self, attack_overrides or {})

    # -- time ---------------------------------------------------------------------------
    @property
    def first(self) -> int:
        return self.sc.first_slot

    def label(self, slot: int) -> str:
        day, sod = divmod(slot, SLOTS_PER_DAY)
        date = np.datetime64("2016-01-01") + np.timedelta64(day, "D")
        return f"{str(date)[5:]} {sod // 4:02d}:{sod % 4 * 15:02d}"

    def in_window(self, slot: int, start: float, end: float) -> bool:
        """``slot`` lies in [start, end) of its day, as fractions of the day; runs shorter than
        a day scale the window to the run instead."""
        k = slot - self.first
        if not 0 <= k < self.sc.slots:
            return False
        day_len = min(self.sc.slots, SLOTS_PER_DAY)
        pos = k % day_len
        return int(start * day_len) <= pos < max(int(end * day_len), int(start * day_len) + 1)

    # -- transactions ---------------------------------------------------------------------
    def tx(self, key: SigningKey, kind: str, body: dict[str, Any]) -> bytes:
        n = self.nonces.get(key.address, 0)
        self.nonces[key.address] = n + 1
        raw = sign_tx(key, self.sc.chain_id, n, kind, body)
        self.tx_info[decode_tx(raw).id] = (key.address, kind, body)
        return raw

    def resync_nonce(self, addr: bytes) -> None:
        """After an admission rejection: the next nonce is what the mempool expects."""
        self.nonces[addr] = self.net.mempool.expected_nonce(addr)

    def submit(self, raws: Sequence[bytes], now_s: int) -> list[Tx | RejectedTx]:
        if not raws:
            return []
        t0 = time.perf_counter()
        results = self.net.submit_many(list(raws), float(now_s))
        if self._in_attack:
            self._attack_admit_s += time.perf_counter() - t0
        resync: set[bytes] = set()
        for raw, r in zip(raws, results):
            if isinstance(r, RejectedTx):
                self.stats.admission_rejected[r.rule] = self.stats.admission_rejected.get(r.rule, 0) + 1
                try:
                    resync.add(decode_tx(raw).sender)
                except RejectedTx:
                    pass
            else:
                self.stats.admitted += 1
        for addr in sorted(resync):
            if addr in self.nonces:
                self.resync_nonce(addr)
        return results

    def tick(self, time_s: int) -> list[FinalizedBlock]:
        t0 = time.perf_counter()
        for a in self.attacks:
            a.before_tick(time_s)
        out = self.net.tick(time_s)
        self.timings["ledger_s"] += time.perf_counter() - t0
        for fb in out:
            self._absorb(fb)
        return out

    def _absorb(self, fb: FinalizedBlock) -> None:
        self.stats.blocks += 1
        self.stats.txs += len(fb.result.receipts)
        evs: list[dict[str, Any]] = list(fb.result.block_events)
        for r in fb.result.receipts:
            if not r.ok:
                self.stats.rejected_txs += 1
                self.stats.rejected_receipts[r.rule] = self.stats.rejected_receipts.get(r.rule, 0) + 1
            evs += list(r.events)
        for ev in evs:
            t = ev.get("type")
            if t == "trade":
                self.trades.setdefault(ev["slot"], []).append(ev)
                f = self.fills.setdefault(ev["slot"], {})
                f.setdefault(ev["buyer"], {}).setdefault("buy", 0)
                f[ev["buyer"]]["buy"] += ev["energy_wh"]
                f.setdefault(ev["seller"], {}).setdefault("sell", 0)
                f[ev["seller"]]["sell"] += ev["energy_wh"]
            elif t == "slot_cleared":
                rec = self.slots.get(ev["slot"])
                if rec is not None:
                    rec.price_micro_per_kwh = ev["price_micro_per_kwh"] if ev["trades"] else None
                    rec.volume_wh = ev["volume_wh"]
                    rec.trades = ev["trades"]
                    rec.orders = ev["orders"]
                    rec.clipped_wh = ev["clipped_wh"]
            elif t == "order_placed":
                self.placed[ev["order_id"]] = self.placed.get(ev["order_id"], 0) + 1
            elif t == "bill":
                self.bills.setdefault(ev["slot"], {})[ev["addr"]] = ev
            elif t == "reading_flagged":
                self.flagged.setdefault(ev["slot"], set()).add(ev["cp"])
                if ev["slot"] in self.slots:
                    self.slots[ev["slot"]].flags += 1
        self.events += evs
        for a in self.attacks:
            a.on_block(fb, evs)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> None:
        total = self.sc.slots + TAIL_STEPS
        started = time.perf_counter()
        try:
            for k in range(total):
                self.step(self.first + k, trading=k < self.sc.slots)
                if self.progress is not None:
                    self.progress(k + 1, total, self.label(self.first + min(k, self.sc.slots - 1)))
        finally:
            self.timings["run_s"] = time.perf_counter() - started
            self.final_roots = [r.hex() for r in self.net.state_roots()]
            st = self.net.entry.app.state
            self.final = {"supply": st.get_int(bank.SUPPLY), "money": self._money(),
                          "reputation": {m.address: self.reputation(m.address) for m in self.members},
                          "height": self.net.height}
            self.net.close()

    def step(self, L: int, trading: bool = True) -> None:
        # ---- block A: orders and envelopes for L, flags, attacks -------------------------
        t_a = S * L + T_ORDERS
        self._attack_admit_s = 0.0
        extra: list[bytes] = []
        self._in_attack = True
        for a in self.attacks:  # first: an attack may submit (flood) before anyone else
            extra += a.txs_block_a(L, trading)
        self._in_attack = False
        raws: list[bytes] = []
        if trading:
            raws += self._dso_envelopes(L)
            raws += self._agent_orders(L)
        flags, self.pending_flags = self.pending_flags, []
        t0 = time.perf_counter()
        # the DSO's flags were signed last step: they go first, so its later transactions
        # this step (envelopes, an attack's roaming charge) follow them in nonce order
        self.submit(flags + extra + raws, t_a)
        for a in self.attacks:
            a.after_submit(L, raws)
        self.tick(t_a)
        # honest transactions wait behind whatever an attacker pushed into admission first
        self.step_latency_s.append((L, time.perf_counter() - t0 + self._attack_admit_s))
        # ---- block B: clearing -------------------------------------------------------------
        self.tick(S * L + T_CLEAR)
        if trading:
            self._observe(L)
            self._deliver(L)
        # ---- block C: readings of L-1, settlement of L-3 -----------------------------------
        t_c = S * L + T_READ
        self.submit(self._readings(L - 1) + self._partials(L - 1), t_c)
        self.tick(t_c)
        self._detect(L - 1)

    # -- the DSO --------------------------------------------------------------------------
    def _dso_envelopes(self, L: int) -> list[bytes]:
        t0 = time.perf_counter()
        env = compute_envelopes(self.model, L)
        self.timings["grid_s"] += time.perf_counter() - t0
        self.last_envelopes = {cp: e.as_tuple() for cp, e in env.items()}
        self.envelopes_by_slot[L] = self.last_envelopes
        entries = [[m.cp, *self.last_envelopes[m.cp]] for m in sorted(self.members, key=lambda m: m.cp)]
        return [self.tx(self.community.dso, "market/envelope", {"slot": L, "envelopes": entries})]

    def _detect(self, slot: int) -> None:
        d = self.delivered.get(slot)
        if d is None:
            return
        t0 = time.perf_counter()
        prev = self.detections.get(slot - 1)
        res = detect_bad_meters(self.model, slot, d.measurements, previous=prev)
        self.timings["grid_s"] += time.perf_counter() - t0
        self.detections[slot] = res
        members = {m.cp for m in self.members}
        flags: list[tuple[int, str, int]] = []
        for cp in sorted(res.flagged & members):
            flags.append((slot, cp, res.corrected_wh_by_cp[cp]))
            # the two-slot test fires on persistent lying: the earlier slot, whose own score
            # already leaned the same way, is corrected too (settlement waits two slots)
            if prev is not None and cp not in prev.flagged and prev.cp_scores.get(cp, 0.0) * \
                    res.cp_scores.get(cp, 0.0) > 0 and abs(prev.cp_scores.get(cp, 0.0)) > 3.0 \
                    and cp not in self.flagged.get(slot - 1, set()):
                flags.append((slot - 1, cp, int(prev.estimated_wh_by_cp[cp])))
        evidence = tagged_hash("gl/fdi-report", repr((res.slot, sorted(res.flagged),
                                                      round(res.chi2, 6))).encode())
        for s, cp, est in flags:
            self.pending_flags.append(self.tx(self.community.dso, "metering/flag", {
                "slot": s, "cp": cp, "import_wh": max(0, -est), "export_wh": max(0, est),
                "evidence": evidence}))

    # -- agents ---------------------------------------------------------------------------
    def view(self, L: int) -> MarketView:
        p = self.params
        sod = L % SLOTS_PER_DAY
        tou = p.grid_fee_tou_micro_per_kwh[sod] if p.grid_fee_tou_micro_per_kwh else 0
        fc = self.model.forecast_wh_by_cp(L)
        net = sum(fc[m.cp] for m in self.members)
        return MarketView(L, sod, p.retail_import_micro_per_kwh, p.feed_in_micro_per_kwh,
                          p.grid_fee_flat_micro_per_kwh + tou, net)

    def household_net(self, m: Member, L: int) -> int:
        """Forecast net injection without the battery (PV - load; SimBench's storage profile
        is replaced by the agent's own battery)."""
        i = self.model.cp_index(m.cp)
        return int(self.model.pv_wh[i, L]) - int(self.model.load_wh[i, L])

    def _agent_orders(self, L: int) -> list[bytes]:
        t0 = time.perf_counter()
        v = self.view(L)
        self.views[L] = v
        self.slots[L] = SlotRecord(L, self.label(L), retail_micro_per_kwh=v.retail,
                                   feed_in_micro_per_kwh=v.feed_in, grid_fee_micro_per_kwh=v.fee,
                                   community_net_wh=v.community_net_wh)
        raws: list[bytes] = []
        for m in self.members:
            intents, b = self.agents[m.cp].decide(v, self.household_net(m, L),
                                                  self.last_envelopes.get(m.cp, (0, 0)))
            self.battery_plan[(m.cp, L)] = b
            for a in self.attacks:
                intents = a.orders(m, L, intents)
            for it in intents:
                raws.append(self.tx(m.key, "market/order", {
                    "slot": L, "side": it.side, "energy_wh": it.energy_wh,
                    "price_micro_per_kwh": it.price}))
        self.order_raws[L] = raws
        self.timings["agents_s"] += time.perf_counter() - t0
        return raws

    def _observe(self, L: int) -> None:
        rec = self.slots[L]
        fills = self.fills.get(L, {})
        for m in self.members:
            self.agents[m.cp].observe(self.views[L], rec.price_micro_per_kwh, fills.get(m.address, {}))

    # -- physics --------------------------------------------------------------------------
    def _deliver(self, L: int) -> None:
        t0 = time.perf_counter()
        fc = self.model.forecast_wh_by_cp(L)
        env = self.envelopes_by_slot.get(L, {})
        planned: dict[str, int] = {}
        for cp in self.model.cp_ids:
            m = self.by_cp.get(cp)
            if m is None:
                planned[cp] = int(fc[cp])                # outsiders follow their profile
            else:
                planned[cp] = self.household_net(m, L) + self.battery_plan.get((cp, L), 0)
        for a in self.attacks:
            a.physical(L, planned)
        actual: dict[str, int] = {}
        curtailed = 0
        for cp, x in planned.items():
            imp, exp = env.get(cp, (1 << 62, 1 << 62))
            y = min(max(x, -imp), exp)                   # inverters and chargers follow the envelope
            curtailed += abs(x - y)
            actual[cp] = y
        report = verify_schedule(self.model, L, actual, limits=self.limits)
        if report.violations:                            # the envelopes failed: fixed-rule curtailment
            fix = curtail_schedule(self.model, L, actual, limits=self.limits)
            curtailed += sum(abs(v) for v in fix.curtailed_wh_by_cp.values())
            actual = dict(fix.schedule_wh_by_cp)
            report = fix.report
        rec = self.slots[L]
        rec.max_vm_pu = round(float(report.max_vm_pu), 5)
        rec.min_vm_pu = round(float(report.min_vm_pu), 5)
        rec.max_loading_pct = round(float(report.max_loading_pct), 3)
        rec.violations = len(report.violations)
        rec.curtailed_wh = curtailed
        self.truth[L] = actual
        rng = np.random.default_rng([self.sc.seed, L])
        honest = measure_slot(self.model, L, actual, rng=rng)
        meas = honest
        for a in self.attacks:
            meas = a.measurements(L, meas, honest)
        self.delivered[L] = Delivered(L, meas)
        self.timings["grid_s"] += time.perf_counter() - t0

    def _readings(self, slot: int) -> list[bytes]:
        d = self.delivered.get(slot)
        if d is None:
            return []
        raws = []
        for m in self.members:
            x = int(d.measurements.reported_wh_by_cp[m.cp])
            raws.append(self.tx(m.meter, "metering/reading", {
                "slot": slot, "import_wh": max(0, -x), "export_wh": max(0, x),
                "firmware": FIRMWARE}))
        return raws

    def _partials(self, slot: int) -> list[bytes]:
        """Secure aggregation of the meters' readings: each aggregator posts its partial sum."""
        d = self.delivered.get(slot)
        if d is None:
            return []
        t0 = time.perf_counter()
        rnd = self.secagg.run_round(slot, {m.cp: -int(d.measurements.reported_wh_by_cp[m.cp])
                                           for m in self.members})
        if rnd is None:
            return []
        self.rounds[slot] = rnd
        values = [p.value for p in rnd.partials]
        for a in self.attacks:
            values = a.partials(slot, values)
        self.timings["privacy_s"] = self.timings.get("privacy_s", 0.0) + time.perf_counter() - t0
        return [self.tx(key, "privacy/partial", body)
                for key, body in self.secagg.partial_txs(rnd, values)]

    # -- queries --------------------------------------------------------------------------
    def _money(self) -> dict[bytes, int]:
        """Balance + locked escrow of every account (sorted by address)."""
        st = self.net.entry.app.state
        out: dict[bytes, int] = {}
        for prefix in (bank.BAL, bank.LOCK):
            for k, v in st.items_with_prefix(prefix):
                a = k[len(prefix):]
                out[a] = out.get(a, 0) + int(v)
        return dict(sorted(out.items()))

    def reputation(self, addr: bytes) -> int:
        if self.final and addr in self.final["reputation"]:
            return int(self.final["reputation"][addr])
        return reputation_of(self.net.entry.app.state, addr)

    def delivered_truth(self, slot: int, cp: str) -> int:
        return self.truth[slot][cp]

    def attacker_cps(self) -> set[str]:
        return {m.cp for m in self.members if not m.honest}

    def honest_excess(self, slots: Sequence[int], addrs: set[bytes] | None = None) -> int:
        """Micro-units honest members paid beyond their no-market bill in ``slots``."""
        honest = {m.address for m in self.members if m.honest}
        if addrs is not None:
            honest &= addrs
        return sum(max(0, b["total_micro"] - b["baseline_total_micro"])
                   for s in set(slots) for a, b in self.bills.get(s, {}).items() if a in honest)

    def placed_ok(self, order_id: bytes) -> bool:
        return self.placed.get(order_id, 0) > 0

    def duplicate_orders(self, ids: set[bytes]) -> int:
        return sum(max(0, self.placed.get(i, 0) - 1) for i in ids)

    @property
    def validators_agree(self) -> bool:
        return len({r for r in self.final_roots}) == 1

    def trading_slots(self) -> range:
        return range(self.first, self.first + self.sc.slots)
