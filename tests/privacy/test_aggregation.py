"""Secure aggregation: exact sums, dropouts, tampering, bad aggregators, malicious meters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.crypto.shamir import PRIME
from gridledger.privacy.aggregation import (
    CTX_CHECK,
    CTX_PARTIAL,
    AggregateResult,
    AggregatorRound,
    Committee,
    Inclusion,
    MeterSubmission,
    PartialSum,
    ShareCheck,
    accept_grants,
    check_shares,
    combine_partials,
    establish_session,
    resolve_share_dispute,
    reveal_epoch_key,
    seal_noise,
    seal_reading,
    select_included,
    sum_shares,
)
from gridledger.privacy.dp import ClipBound, DpParams
from gridledger.privacy.errors import AggregationFailed, PrivacyError
from gridledger.privacy.rng import DeterministicRandom

from .conftest import Feeder, make_aggregators, make_feeder

CLIP = ClipBound(-20_000, 20_000)


def run_round(f: Feeder, slot: int, readings: dict[str, int],
              submissions: Sequence[MeterSubmission] | None = None,
              head: int | None = None, tolerance: int = 0,
              partial_hook=None) -> tuple[AggregateResult, Inclusion, list[AggregatorRound]]:
    rng = DeterministicRandom(slot)
    subs = list(submissions) if submissions is not None else [
        seal_reading(f.sessions[m], slot, r, CLIP, rng) for m, r in readings.items()]
    outs = [check_shares(s, slot, subs) for s in f.agg_sessions]
    inc = select_included(f.committee, slot, subs, [o[0] for o in outs])
    partials = [sum_shares(o[1], inc) for o in outs]
    if partial_hook:
        partials = partial_hook(partials)
    res = combine_partials(f.committee, inc, partials, head_meter_wh=head, tolerance_wh=tolerance)
    return res, inc, [o[1] for o in outs]


def resign_partial(f: Feeder, p: PartialSum, value: int) -> PartialSum:
    q = replace(p, value=value % PRIME, signature=b"")
    return replace(q, signature=f.aggs[p.position].signing_key.sign(q.signed_message(),
                                                                     CTX_PARTIAL))


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(-20_000, 20_000), min_size=12, max_size=12))
def test_sum_is_exact(feeder: Feeder, values: list[int]) -> None:
    readings = dict(zip(sorted(feeder.device_keys), values, strict=True))
    res, _, _ = run_round(feeder, 1, readings, head=sum(values))
    assert res.total_wh == sum(values)
    assert res.included_meters == tuple(sorted(readings))
    assert res.rejected_aggregators == () and res.head_meter_ok and res.redundancy_checked


def test_readings_are_clipped_at_the_meter(feeder: Feeder) -> None:
    res, _, _ = run_round(feeder, 2, {"m000": 10**9, "m001": -10**9, "m002": 5})
    assert res.total_wh == CLIP.upper_wh + CLIP.lower_wh + 5


@settings(max_examples=6, deadline=None)
@given(st.sets(st.integers(0, 11), min_size=1, max_size=11))
def test_dropouts_do_not_stop_the_round(feeder: Feeder, dropped: set[int]) -> None:
    ids = sorted(feeder.device_keys)
    readings = {m: 100 * i + 7 for i, m in enumerate(ids) if i not in dropped}
    res, _, _ = run_round(feeder, 3, readings)
    assert res.total_wh == sum(readings.values())
    assert res.included_meters == tuple(sorted(readings))


def test_any_t_partials_reconstruct_and_fewer_fail(feeder: Feeder) -> None:
    import itertools

    readings = {m: 1000 + i for i, m in enumerate(sorted(feeder.device_keys))}
    rng = DeterministicRandom(4)
    subs = [seal_reading(feeder.sessions[m], 4, r, CLIP, rng) for m, r in readings.items()]
    outs = [check_shares(s, 4, subs) for s in feeder.agg_sessions]
    inc = select_included(feeder.committee, 4, subs, [o[0] for o in outs])
    partials = [sum_shares(o[1], inc) for o in outs]
    for subset in itertools.combinations(partials, 3):
        res = combine_partials(feeder.committee, inc, list(subset))
        assert res.total_wh == sum(readings.values())
        assert not res.redundancy_checked
    with pytest.raises(AggregationFailed):
        combine_partials(feeder.committee, inc, partials[:2])


def test_single_aggregator_sees_only_uniform_shares(feeder: Feeder) -> None:
    # What one aggregator decrypts for a meter is not the reading, and for two different
    # readings under the same meter randomness it moves by a uniform-looking field element.
    subs_a = [seal_reading(feeder.sessions["m000"], 5, 1234, CLIP, DeterministicRandom(9))]
    subs_b = [seal_reading(feeder.sessions["m000"], 5, 4321, CLIP, DeterministicRandom(10))]
    _, ra = check_shares(feeder.agg_sessions[0], 5, subs_a)
    _, rb = check_shares(feeder.agg_sessions[0], 5, subs_b)
    xa, xb = ra.x_shares["m000"], rb.x_shares["m000"]
    assert xa not in (1234, 4321) and xb not in (1234, 4321)
    assert xa.bit_length() > 100 and xb.bit_length() > 100


def test_threshold_one_is_refused() -> None:
    aggs = make_aggregators(3, "z")
    with pytest.raises(PrivacyError):
        Committee("f", 1, 1, tuple(a.info() for a in aggs))


def test_bad_aggregator_is_rejected_and_named(feeder: Feeder) -> None:
    readings = {m: 500 for m in feeder.device_keys}

    def corrupt(ps: list[PartialSum]) -> list[PartialSum]:
        ps[2] = resign_partial(feeder, ps[2], ps[2].value + 12_345)
        return ps

    res, _, _ = run_round(feeder, 6, readings, partial_hook=corrupt,
                          head=6000, tolerance=100)
    assert res.total_wh == 6000
    assert res.rejected_aggregators == (("a2", "bad-aggregator"),)
    assert "a2" not in res.used_aggregators


def test_bad_aggregator_detection_needs_the_cross_check(feeder: Feeder) -> None:
    # Defence switched off: trusting any single t-subset that contains the bad aggregator
    # gives a wrong total. The cross-check over all subsets is what catches it.
    readings = {m: 500 for m in feeder.device_keys}
    captured: list[PartialSum] = []

    def corrupt(ps: list[PartialSum]) -> list[PartialSum]:
        ps[2] = resign_partial(feeder, ps[2], ps[2].value + 12_345)
        captured.extend(ps)
        return ps

    _, inc, _ = run_round(feeder, 7, readings, partial_hook=corrupt)
    naive = combine_partials(feeder.committee, inc, captured[:3])  # a0, a1, a2: no redundancy
    assert naive.total_wh != 6000 and not naive.redundancy_checked


def test_head_meter_arbitrates_when_only_t_plus_one(feeder: Feeder) -> None:
    f4 = make_feeder(m=4, t=3, meters=5)
    readings = {m: 300 for m in f4.device_keys}

    def corrupt(ps: list[PartialSum], delta: int = 40_000) -> list[PartialSum]:
        ps[0] = resign_partial(f4, ps[0], ps[0].value + delta)
        return ps

    res, _, _ = run_round(f4, 8, readings, partial_hook=corrupt, head=1480, tolerance=50)
    assert res.total_wh == 1500
    assert res.rejected_aggregators == (("a0", "bad-aggregator"),)
    with pytest.raises(AggregationFailed):
        run_round(f4, 8, readings, partial_hook=corrupt)  # no head meter: cannot tell
    with pytest.raises(AggregationFailed):
        # A tiny lie leaves several candidates within tolerance: refuse, never guess.
        run_round(f4, 8, readings, partial_hook=lambda ps: corrupt(ps, 1), head=1480,
                  tolerance=50)


def test_forged_or_misbound_partials_are_rejected(feeder: Feeder) -> None:
    readings = {m: 10 for m in feeder.device_keys}

    def forge(ps: list[PartialSum]) -> list[PartialSum]:
        ps[1] = replace(ps[1], value=(ps[1].value + 1) % PRIME)  # signature no longer fits
        ps[3] = replace(ps[3], inclusion_digest=b"\0" * 32)
        return ps

    res, _, _ = run_round(feeder, 9, readings, partial_hook=forge)
    assert res.total_wh == 120
    assert dict(res.rejected_aggregators) == {"a1": "bad-signature", "a3": "bad-signature"}


def test_tampered_sealed_share_excludes_the_meter(feeder: Feeder) -> None:
    rng = DeterministicRandom(11)
    subs = [seal_reading(feeder.sessions[m], 11, 100, CLIP, rng) for m in sorted(
        feeder.device_keys)]
    blob = bytearray(subs[0].sealed_shares[1])
    blob[-1] ^= 1
    subs[0] = replace(subs[0], sealed_shares=(subs[0].sealed_shares[0], bytes(blob),
                                              *subs[0].sealed_shares[2:]))
    res, inc, _ = run_round(feeder, 11, {}, submissions=subs)
    assert ("m000", "share-undecryptable") in inc.excluded
    assert res.total_wh == 1100 and "m000" not in res.included_meters


def test_replayed_submission_from_another_slot_is_excluded(feeder: Feeder) -> None:
    old = seal_reading(feeder.sessions["m000"], 12, 999, CLIP, DeterministicRandom(12))
    replayed = replace(old, slot=13)  # AAD binds the slot: shares no longer authenticate
    others = [seal_reading(feeder.sessions[m], 13, 1, CLIP, DeterministicRandom(13))
              for m in sorted(feeder.device_keys)[1:]]
    res, inc, _ = run_round(feeder, 13, {}, submissions=[replayed, *others])
    assert res.total_wh == 11 and ("m000", "share-undecryptable") in inc.excluded


def test_duplicate_submissions_are_excluded(feeder: Feeder) -> None:
    a = seal_reading(feeder.sessions["m000"], 14, 1, CLIP, DeterministicRandom(1))
    b = seal_reading(feeder.sessions["m000"], 14, 2, CLIP, DeterministicRandom(2))
    c = seal_reading(feeder.sessions["m001"], 14, 3, CLIP, DeterministicRandom(3))
    res, inc, _ = run_round(feeder, 14, {}, submissions=[a, b, c])
    assert res.total_wh == 3 and ("m000", "duplicate-submission") in inc.excluded


def test_inconsistent_meter_shares_are_caught_and_blamed_on_the_meter(feeder: Feeder) -> None:
    # A malicious meter seals a share for aggregator 4 from another polynomial. Without the
    # masked share check this would make aggregator a4's partial look wrong (framing it).
    m = "m005"
    s1 = seal_reading(feeder.sessions[m], 15, 100, CLIP, DeterministicRandom(21))
    s2 = seal_reading(feeder.sessions[m], 15, 900, CLIP, DeterministicRandom(22))
    evil = replace(s1, sealed_shares=(*s1.sealed_shares[:4], s2.sealed_shares[4]))
    honest = [seal_reading(feeder.sessions[x], 15, 10, CLIP, DeterministicRandom(23))
              for x in sorted(feeder.device_keys) if x != m]
    subs = [evil, *honest]
    outs = [check_shares(s, 15, subs) for s in feeder.agg_sessions]
    inc = select_included(feeder.committee, 15, subs, [o[0] for o in outs])
    assert (m, "shares-inconsistent") in inc.excluded and (m, (4,)) in inc.suspects
    res = combine_partials(feeder.committee, inc, [sum_shares(o[1], inc) for o in outs])
    assert res.total_wh == 110 and res.rejected_aggregators == ()
    grant = next(g for g in feeder.grants if g.contributor_id == m)
    key = reveal_epoch_key(feeder.agg_sessions[4], m)
    assert resolve_share_dispute(feeder.committee, grant, evil, outs[4][0], key) == "meter"
    assert resolve_share_dispute(feeder.committee, grant, evil, outs[4][0],
                                 b"\0" * 32) == "aggregator"


def test_aggregator_lying_in_its_check_is_blamed(feeder: Feeder) -> None:
    subs = [seal_reading(feeder.sessions[x], 16, 10, CLIP, DeterministicRandom(31))
            for x in sorted(feeder.device_keys)]
    outs = [check_shares(s, 16, subs) for s in feeder.agg_sessions]
    check = outs[1][0]
    values = tuple((c, (v + 1) % PRIME if c == "m000" and v is not None else v)
                   for c, v in check.values)
    lie = replace(check, values=values, signature=b"")
    lie = replace(lie, signature=feeder.aggs[1].signing_key.sign(lie.signed_message(),
                                                                 CTX_CHECK))
    checks: list[ShareCheck] = [o[0] for o in outs]
    checks[1] = lie
    inc = select_included(feeder.committee, 16, subs, checks)
    assert ("m000", (1,)) in inc.suspects
    grant = next(g for g in feeder.grants if g.contributor_id == "m000")
    key = reveal_epoch_key(feeder.agg_sessions[1], "m000")
    assert resolve_share_dispute(feeder.committee, grant, subs[0], lie, key) == "aggregator"


def test_unsigned_grant_is_rejected(feeder: Feeder) -> None:
    _, grant = establish_session("m000", feeder.committee, None)
    session = accept_grants(feeder.aggs[0], feeder.committee, [grant], feeder.registry)
    assert session.rejected == (("m000", "bad-grant-signature"),)
    _, stranger = establish_session("intruder", feeder.committee,
                                    feeder.device_keys["m001"])
    session = accept_grants(feeder.aggs[0], feeder.committee, [stranger], feeder.registry)
    assert session.rejected == (("intruder", "bad-grant-signature"),)
    # Nobody but aggregator a0 can open a noise session in its name.
    _, fake_noise = establish_session("noise/a0", feeder.committee, feeder.device_keys["m001"])
    session = accept_grants(feeder.aggs[1], feeder.committee, [fake_noise], feeder.registry)
    assert session.rejected == (("noise/a0", "bad-grant-signature"),)


def test_distributed_dp_noise_is_added_before_anyone_sees_the_total() -> None:
    f = make_feeder(meters=4, noise=True)
    params = DpParams(epsilon_micro=1_000_000, sensitivity_wh=1000)
    rng = DeterministicRandom(41)
    subs = [seal_reading(f.sessions[m], 1, 250, CLIP, rng) for m in sorted(f.device_keys)]
    subs += [seal_noise(f.sessions[f"noise/{a.aggregator_id}"], 1, params, rng) for a in f.aggs]
    outs = [check_shares(s, 1, subs) for s in f.agg_sessions]
    inc = select_included(f.committee, 1, subs, [o[0] for o in outs])
    res = combine_partials(f.committee, inc, [sum_shares(o[1], inc) for o in outs])
    assert res.included_meters == tuple(sorted(f.device_keys))
    assert len(res.noise_dealers) == 5
    assert res.total_wh != 1000  # noise present (a zero total noise has probability < 1e-3)
    assert abs(res.total_wh - 1000) <= params.noise_bound_wh(1e-9, draws=5)
    with pytest.raises(PrivacyError):
        seal_reading(f.sessions["noise/a0"], 1, 5, CLIP)
