"""The simulator's own work done beside the run (issue 17, fifteenth session): what a
feature starts in a worker process gives what it would have computed in the run's process,
and is used only if its inputs are still the ones the run would use.

* Secure aggregation: a slot's round (the meters' sealing, the aggregators' checks and
  signed partials) starts in the committee's worker as soon as the slot is delivered; block
  C of the next step takes it if the readings are the same, else runs the round here.
* Flexibility: the DSO's forecast power flow of the next step's target slot (``predict``)
  starts in a worker holding the model a step ahead; the next request uses it if the
  forecast is the same.
* Delivery: each slot's power flow starts in a worker on the plan as block A leaves it
  (forecast, battery plans, flexibility ordered); delivery takes it if the plan after the
  features' and attacks' adjustments and the envelope report are still those.
* Small client batches (aggregators' partials, certificates' claims and sub-meter reports,
  firmware approvals and patches) are signed on the signing pool, each by its own key, with
  the nonces and order of signing them one by one.
"""

from __future__ import annotations

import dataclasses
import types
from contextlib import contextmanager
from typing import Any

import pytest

from gridledger.crypto.shamir import Share, decode_signed, reconstruct_secret
from gridledger.flex.planner import Prediction, predict
from gridledger.grid import GridLimits, compute_envelope_report, deliver_schedule, load_grid
from gridledger.ledger.tx import TX_CONTEXT, decode_tx, sign_tx
from gridledger.node.sigpool import SigPool
from gridledger.privacy.aggregation.rounds import CTX_PARTIAL
from gridledger.sim import beside, context
from gridledger.sim import community as comm
from gridledger.sim.beside import Ahead
from gridledger.sim.clock import Step
from gridledger.sim.community import Member, PrivacyKeys
from gridledger.sim.context import PendingTxs
from gridledger.sim.features import delivery, flexibility
from gridledger.sim.features.aggregation import SecureAggregation
from gridledger.sim.features.certificates import Certificates
from gridledger.sim.keys import sim_key
from gridledger.sim.scenario import DEFAULT_NETWORK
from tests.sim.conftest import DemoRun


def _members(n: int) -> list[Member]:
    return [Member(i, f"m{i}", f"cp-{i:02d}", sim_key(3, "beside-member", i, alg="ml-dsa-44"),
                   sim_key(3, "beside-meter", i, alg="ml-dsa-44"), "consumer", (), None)
            for i in range(n)]


def _ctx(members: list[Member], keys: PrivacyKeys) -> Any:
    ctx = types.SimpleNamespace(
        community=types.SimpleNamespace(privacy_keys=keys), members=members,
        data=types.SimpleNamespace(delivered={}, rounds={}), attacks=[], timings={})

    @contextmanager
    def timed(key: str) -> Any:
        yield

    ctx.timed = timed
    ctx.txs_ahead = lambda items: list(items)   # (aggregator key, kind, body), unsigned here
    return ctx


def _deliver(ctx: Any, slot: int, export_wh: dict[str, int]) -> None:
    meas = types.SimpleNamespace(reported_wh_by_cp=export_wh)
    ctx.data.delivered[slot] = types.SimpleNamespace(slot=slot, measurements=meas)


def _total(rnd: Any, keys: PrivacyKeys) -> int:
    """The feeder total the signed partials decode to (each partial's signature checked)."""
    for p in rnd.partials:
        agg = keys.aggregator_keys[p.position]
        assert agg.signing_key.public_key.verify(p.signed_message(), p.signature, CTX_PARTIAL)
        assert p.inclusion_digest == rnd.inclusion
    shares = [Share(p.position + 1, p.value) for p in rnd.partials]
    return decode_signed(reconstruct_secret(shares, comm.AGGREGATOR_THRESHOLD))


@pytest.fixture(scope="module")
def keys() -> PrivacyKeys:
    return PrivacyKeys.make(3, "beside")


def test_a_slots_round_runs_in_the_committees_worker_from_its_delivery(keys) -> None:
    members = _members(6)
    ctx = _ctx(members, keys)
    feat = SecureAggregation(ctx)
    try:
        readings = {m.cp: 100 * (i + 1) for i, m in enumerate(members)}
        _deliver(ctx, 40, readings)
        feat.after_delivery(Step(40, True), ctx.data.delivered[40])
        assert feat.ahead.started(40)
        posts = feat.txs_c(Step(41, True))
        assert "privacy_beside_s" in ctx.timings        # the worker's round was used
        rnd = ctx.data.rounds[40]
        assert rnd.slot == 40 and rnd.included == tuple(sorted(readings))
        assert rnd.true_total_wh == -sum(readings.values())
        assert _total(rnd, keys) == rnd.true_total_wh
        assert len(posts) == len(rnd.partials) == comm.AGGREGATORS
        assert all(kind == "privacy/partial" and body["slot"] == 40 for _k, kind, body in posts)
        # the next slot's round: the worker's aggregators signed slot 40 already and sign 41
        _deliver(ctx, 41, {**readings, members[0].cp: -7})
        feat.after_delivery(Step(41, True), ctx.data.delivered[41])
        feat.txs_c(Step(42, True))
        assert _total(ctx.data.rounds[41], keys) == ctx.data.rounds[41].true_total_wh
    finally:
        feat.ahead.close()


def test_readings_changed_after_the_delivery_are_shared_as_block_c_reads_them(keys) -> None:
    """The round started at delivery is used only for the readings block C would share: if
    they changed in between, the round runs here on the new ones."""
    members = _members(6)
    ctx = _ctx(members, keys)
    feat = SecureAggregation(ctx)
    try:
        _deliver(ctx, 50, {m.cp: 10 for m in members})
        feat.after_delivery(Step(50, True), ctx.data.delivered[50])
        _deliver(ctx, 50, {m.cp: 20 for m in members})     # e.g. a view replaced
        feat.txs_c(Step(51, True))
        assert "privacy_beside_s" not in ctx.timings
        assert ctx.data.rounds[50].true_total_wh == -20 * len(members)
        assert _total(ctx.data.rounds[50], keys) == -20 * len(members)
    finally:
        feat.ahead.close()


def test_on_one_core_the_round_runs_in_block_c(keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(beside.os, "cpu_count", lambda: 1)
    members = _members(5)
    ctx = _ctx(members, keys)
    feat = SecureAggregation(ctx)
    _deliver(ctx, 60, {m.cp: 5 for m in members})
    feat.after_delivery(Step(60, True), ctx.data.delivered[60])
    assert not feat.ahead.started(60)
    feat.txs_c(Step(61, True))
    assert _total(ctx.data.rounds[60], keys) == -5 * len(members)


# -- the DSO's forecast power flow, a step ahead (flexibility) --------------------------------
def test_the_forecast_power_flow_in_the_worker_equals_the_one_here() -> None:
    """``predict`` in the flexibility feature's worker (a fork holding the model) gives the
    prediction the run's process gives — violation, cps, energy, report, bit for bit (the
    request's evidence hashes the loading) — with and without a violation."""
    model = load_grid(DEFAULT_NETWORK)
    slot = model.window.start + 76    # evening
    calm = {cp: int(wh) for cp, wh in model.forecast_wh_by_cp(slot).items()}
    peak = {cp: wh * 8 for cp, wh in calm.items()}     # every load x8: line 33 overloads
    limits = GridLimits()
    ahead: Ahead[Prediction | None] = Ahead(flexibility._hold_model, (model,), {}, "s")
    try:
        ahead.start(slot, peak, flexibility._predict_beside, slot, peak, limits)
        ahead.start(slot + 1, calm, flexibility._predict_beside, slot, calm, limits)
        done, there = ahead.take(slot, peak)
        assert done and there is not None
        here = predict(model, slot, peak, limits)
        assert there == here and repr(there.report) == repr(here.report)
        done, nothing = ahead.take(slot + 1, calm)
        assert done and nothing is None is predict(model, slot, calm, limits)
    finally:
        ahead.close()


def test_a_result_started_on_other_inputs_is_not_taken() -> None:
    timings: dict[str, float] = {}
    ahead: Ahead[int] = Ahead(lambda: None, (), timings, "beside_s")
    try:
        ahead.start(3, {"a": 1}, abs, -5)
        ahead.start(4, {"a": 1}, abs, -6)
        ahead.start(5, {"a": 1}, abs, -7)
        assert ahead.take(4, {"a": 2}) == (False, None)   # the run's inputs changed
        assert not ahead.started(3)                       # older ones are dropped with it
        assert ahead.take(5, {"a": 1}) == (True, 7)
        assert timings["beside_s"] > 0
        assert ahead.take(5, {"a": 1}) == (False, None)   # taken once
    finally:
        ahead.close()


def test_the_default_day_takes_its_rounds_and_forecast_flows_from_the_workers(
        default_day: DemoRun) -> None:
    """The shared default day (two cores): the secure-aggregation rounds and the DSO's
    forecast power flows were computed beside the run and used (their worker seconds are
    counted only for results taken)."""
    t = default_day.summary["timings"]
    assert t["privacy_beside_s"] > 0 and t["flex_beside_s"] > 0
    assert t["delivery_beside_s"] > 0


# -- each slot's delivery power flow, from block A's plan -------------------------------------
def test_the_delivery_power_flow_in_the_worker_equals_the_one_here() -> None:
    """``deliver_schedule`` in the delivery worker on the plan and envelope report of block
    A gives the delivery the run's process gives (schedule, curtailment, causes, report);
    it is taken only for the same plan and the very same report object — an attack that
    swaps the report (``fake-flexibility`` ignores its envelope) gets its own power flow."""
    model = load_grid(DEFAULT_NETWORK)
    slot = model.window.start + 50    # midday: PV export
    forecast = {cp: int(wh) for cp, wh in model.forecast_wh_by_cp(slot).items()}
    report = compute_envelope_report(model, slot, forecast_wh_by_cp=forecast)
    planned = {cp: wh * 3 for cp, wh in forecast.items()}    # beyond some envelopes
    here = deliver_schedule(model, slot, planned, envelopes=report, limits=GridLimits())
    assert here.causes                                        # something was clipped
    ahead: Ahead[Any] = Ahead(delivery._hold_model, (model,), {}, "s")
    try:
        for k in (1, 2, 3):
            ahead.start(slot + k, (planned, report), delivery._deliver_beside, slot, planned,
                        report, GridLimits())
        done, there = ahead.take(slot + 1, (planned, report), delivery._same_plan)
        assert done and there == here and repr(there.report) == repr(here.report)
        swapped = dataclasses.replace(report)                 # equal, not the same object
        assert ahead.take(slot + 2, (planned, swapped), delivery._same_plan) == (False, None)
        other = {**planned, model.cp_ids[0]: planned[model.cp_ids[0]] + 1}
        assert ahead.take(slot + 3, (other, report), delivery._same_plan) == (False, None)
    finally:
        ahead.close()


# -- small client batches on the signing pool -------------------------------------------------
def test_the_runs_pool_signs_a_batch_of_one_on_its_processes() -> None:
    """``SimContext``'s pool signs every client batch on its processes
    (``SIG_POOL_MIN_SIGN_BATCH`` = 1): a phase's batch is read after the later features ran,
    so even one signature overlaps the main core's work; the transaction is the one
    ``sign_tx`` makes with that nonce."""
    assert context.SIG_POOL_MIN_SIGN_BATCH == 1
    pool = SigPool(workers=2, min_batch=context.SIG_POOL_MIN_BATCH,
                   min_sign_batch=context.SIG_POOL_MIN_SIGN_BATCH)
    try:
        key = sim_key(3, "beside-member", 0, alg="ml-dsa-44")
        nonces = {key.address: 4}
        pending = PendingTxs(pool, "c", nonces, [(key, "firmware/patch", {"slot": 1})])
        assert pool._pool is not None                     # on the pool, not inline
        tx = decode_tx(pending[0])
        ref = decode_tx(sign_tx(key, "c", 4, "firmware/patch", {"slot": 1}))
        assert (tx.sender, tx.nonce, tx.kind, tx.body) == (ref.sender, 4, ref.kind, ref.body)
        assert key.public_key.verify(tx.signing_bytes, tx.sig, TX_CONTEXT)
        assert nonces == {key.address: 5} and pending.ids == [tx.id]
    finally:
        pool.close()


def test_sub_meter_reports_are_one_batch_in_member_order() -> None:
    """Certificates' storage readings of a slot go to ``txs_ahead`` as one batch, each signed
    by its member's meter, in member order (as they were signed one by one)."""
    members = _members(4)
    batches: list[list[Any]] = []
    ctx = types.SimpleNamespace(
        members=members, data=types.SimpleNamespace(delivered={}),
        identities=types.SimpleNamespace(ledger_cp=lambda m, s: m.cp,
                                         meter_key=lambda m, s: m.meter),
        txs_ahead=lambda items: batches.append(list(items)) or ["signed"])
    feat = Certificates(ctx)
    feat.battery[9] = {members[2].cp: -200, members[0].cp: 300}
    assert feat.txs_c(Step(10, True)) == ["signed"]
    assert batches == [[
        (members[0].meter, "certificates/storage_reading",
         {"slot": 9, "charged_wh": 0, "discharged_wh": 300}),
        (members[2].meter, "certificates/storage_reading",
         {"slot": 9, "charged_wh": 200, "discharged_wh": 0})]]
