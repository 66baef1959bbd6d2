"""Secure aggregation: exact sums, dropouts, the round discipline that keeps one household's
reading secret, colluders beyond the decoding radius, tampering, malicious meters."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.crypto.shamir import (
    PRIME,
    SHARE_BYTES,
    Share,
    decode_signed,
    interpolate_at,
    reconstruct_secret,
)
from gridledger.privacy.aggregation import (
    CTX_CHECK,
    CTX_PARTIAL,
    AggregateResult,
    Aggregator,
    Committee,
    Inclusion,
    MeterSubmission,
    PartialSum,
    ShareCheck,
    accept_grants,
    check_shares,
    combine_partials,
    establish_session,
    partial_misconduct,
    resolve_share_dispute,
    reveal_epoch_key,
    seal_noise,
    seal_reading,
    select_included,
)
from gridledger.privacy.aggregation.meter import NONCE_BYTES, share_aad
from gridledger.privacy.dp import ClipBound, DpParams
from gridledger.privacy.errors import (
    AggregationFailed,
    AnonymitySetTooSmall,
    PrivacyError,
    RoundAlreadySigned,
)
from gridledger.privacy.rng import DeterministicRandom

from .conftest import Feeder, make_aggregators, make_feeder

CLIP = ClipBound(-20_000, 20_000)
PartialHook = Callable[[list[PartialSum]], list[PartialSum]]


def seal_all(f: Feeder, slot: int, readings: dict[str, int]) -> list[MeterSubmission]:
    rng = DeterministicRandom(slot)
    return [seal_reading(f.sessions[m], slot, r, CLIP, rng) for m, r in readings.items()]


def run_round(f: Feeder, slot: int, readings: dict[str, int],
              submissions: Sequence[MeterSubmission] | None = None,
              head: int | None = None, tolerance: int = 0,
              partial_hook: PartialHook | None = None
              ) -> tuple[AggregateResult, Inclusion, list[Aggregator]]:
    """Every aggregator checks, derives the inclusion from all signed checks and signs its
    partial (those that refuse are left out); anyone combines."""
    subs = list(submissions) if submissions is not None else seal_all(f, slot, readings)
    aggs = [Aggregator(s) for s in f.agg_sessions]
    checks = [a.check(slot, subs) for a in aggs]
    partials, inclusion = [], None
    for a in aggs:
        try:
            p, inclusion = a.partial(slot, checks)
        except AnonymitySetTooSmall:
            raise
        except PrivacyError:
            continue  # its own share of an included meter is unusable: it stays out
        partials.append(p)
    assert inclusion is not None
    if partial_hook:
        partials = partial_hook(partials)
    res = combine_partials(f.committee, inclusion, partials, head_meter_wh=head,
                           tolerance_wh=tolerance)
    return res, inclusion, aggs


def resign_partial(f: Feeder, p: PartialSum, **changes: int | bytes) -> PartialSum:
    q = replace(p, **changes, signature=b"")  # type: ignore[arg-type]
    return replace(q, signature=f.aggs[p.position].signing_key.sign(q.signed_message(),
                                                                     CTX_PARTIAL))


# ------------------------------------------------------------------------------ honest rounds
@settings(max_examples=6, deadline=None)
@given(st.lists(st.integers(-20_000, 20_000), min_size=12, max_size=12))
def test_sum_is_exact(feeder: Feeder, values: list[int]) -> None:
    readings = dict(zip(sorted(feeder.device_keys), values, strict=True))
    res, _, _ = run_round(feeder, 1, readings, head=sum(values))
    assert res.total_wh == sum(values)
    assert res.included_meters == tuple(sorted(readings))
    assert res.left_out == () and res.head_meter_ok and res.redundancy_checked


def test_readings_are_clipped_at_the_meter(feeder: Feeder) -> None:
    readings = dict.fromkeys(sorted(feeder.device_keys)[:5], 5)
    readings |= {"m000": 10**9, "m001": -10**9}
    res, _, _ = run_round(feeder, 2, readings)
    assert res.total_wh == CLIP.upper_wh + CLIP.lower_wh + 15


@settings(max_examples=6, deadline=None)
@given(st.sets(st.integers(0, 11), min_size=0, max_size=7))
def test_dropouts_down_to_the_minimum_do_not_stop_the_round(feeder: Feeder,
                                                            dropped: set[int]) -> None:
    ids = sorted(feeder.device_keys)
    readings = {m: 100 * i + 7 for i, m in enumerate(ids) if i not in dropped}
    res, _, _ = run_round(feeder, 3, readings)
    assert res.total_wh == sum(readings.values())
    assert res.included_meters == tuple(sorted(readings))


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


def test_committee_rules_are_checked() -> None:
    aggs = make_aggregators(7, "z")
    with pytest.raises(PrivacyError):
        Committee("f", 1, 1, tuple(a.info() for a in aggs))  # t = 1: everyone sees all
    with pytest.raises(PrivacyError, match="cannot reach"):
        Committee("f", 1, 3, tuple(a.info() for a in aggs[:4]))  # 2t - 1 = 5 > 4
    with pytest.raises(PrivacyError, match="min_contributors"):
        Committee("f", 1, 3, tuple(a.info() for a in aggs), min_contributors=1)
    c = Committee("f", 1, 3, tuple(a.info() for a in aggs))
    assert (c.faults, c.min_agree(7), c.min_agree(5)) == (2, 5, 5)


# ------------------------------------------------------- one household's reading stays secret
def test_an_aggregator_never_signs_a_total_over_fewer_than_the_minimum(feeder: Feeder) -> None:
    # Honest dropouts down to one meter: nobody publishes that meter's reading.
    subs = seal_all(feeder, 20, {"m003": 4321})
    aggs = [Aggregator(s) for s in feeder.agg_sessions]
    checks = [a.check(20, subs) for a in aggs]
    for a in aggs:
        with pytest.raises(AnonymitySetTooSmall):
            a.partial(20, checks)
    # four meters: still below the minimum of five
    subs = seal_all(feeder, 21, dict.fromkeys(sorted(feeder.device_keys)[:4], 10))
    aggs = [Aggregator(s) for s in feeder.agg_sessions]
    checks = [a.check(21, subs) for a in aggs]
    with pytest.raises(AnonymitySetTooSmall, match="4 meters"):
        aggs[0].partial(21, checks)


def test_colluders_cannot_steer_an_honest_aggregator_to_one_meter(feeder: Feeder) -> None:
    # t - 1 = 2 colluding aggregators (positions 5, 6) want meter m003's reading. They
    # cannot hand the honest aggregators an inclusion: each derives it from the signed
    # checks. Marking every other meter unusable in their own checks does not drop them
    # (two erasures of seven), and withholding the honest checks leaves too few to agree.
    readings = {m: 100 + i for i, m in enumerate(sorted(feeder.device_keys))}
    subs = seal_all(feeder, 22, readings)
    aggs = [Aggregator(s) for s in feeder.agg_sessions]
    checks = [a.check(22, subs) for a in aggs]
    for j in (5, 6):
        ch = checks[j]
        forged = replace(ch, values=tuple((c, v if c == "m003" else None) for c, v in ch.values),
                         signature=b"")
        checks[j] = replace(forged, signature=feeder.aggs[j].signing_key.sign(
            forged.signed_message(), CTX_CHECK))
    p, inclusion = aggs[0].partial(22, checks)
    assert inclusion.included_meters == tuple(sorted(readings))
    assert p.meters == 12
    withheld = [checks[1], checks[2], checks[5], checks[6]]  # own, one honest, colluders
    with pytest.raises(AggregationFailed):
        aggs[1].partial(22, withheld)


def test_one_check_and_one_partial_per_round(feeder: Feeder) -> None:
    readings = dict.fromkeys(feeder.device_keys, 50)
    subs = seal_all(feeder, 23, readings)
    aggs = [Aggregator(s) for s in feeder.agg_sessions]
    checks = [a.check(23, subs) for a in aggs]
    assert aggs[0].check(23, subs) == checks[0]  # asking again: the same signed check
    with pytest.raises(RoundAlreadySigned):
        aggs[0].check(23, subs[:5])  # another submission set for the same round
    first, _ = aggs[0].partial(23, checks)
    again, _ = aggs[0].partial(23, checks)
    assert again == first
    # a second inclusion for the same round (other checks make other meters drop out)
    others = list(checks)
    for j in (4, 5, 6):
        ch = checks[j]
        forged = replace(ch, values=tuple((c, None if c == "m000" else v)
                                          for c, v in ch.values), signature=b"")
        others[j] = replace(forged, signature=feeder.aggs[j].signing_key.sign(
            forged.signed_message(), CTX_CHECK))
    with pytest.raises(RoundAlreadySigned):
        aggs[0].partial(23, others)


def test_without_the_round_discipline_t_partials_reveal_one_reading(feeder: Feeder) -> None:
    # Defence removed: aggregators that sum over whatever set they are asked about. Asked
    # about {m003} alone, any t of them give m003's exact reading.
    readings = {m: 100 + i for i, m in enumerate(sorted(feeder.device_keys))}
    subs = seal_all(feeder, 24, readings)
    rounds = [check_shares(s, 24, subs)[1] for s in feeder.agg_sessions[:3]]
    leaked = reconstruct_secret([Share(r.session.position + 1, r.x_shares["m003"])
                                 for r in rounds], 3)
    assert decode_signed(leaked) == readings["m003"]


# ----------------------------------------------------------------- partial sums and colluders
def test_fewer_than_min_agree_partials_give_no_total(feeder: Feeder) -> None:
    readings = {m: 1000 + i for i, m in enumerate(sorted(feeder.device_keys))}
    captured: list[PartialSum] = []

    def keep(ps: list[PartialSum]) -> list[PartialSum]:
        captured.extend(ps)
        return ps

    _, inc, _ = run_round(feeder, 4, readings, partial_hook=keep)
    for subset in itertools.combinations(captured, 5):
        assert combine_partials(feeder.committee, inc, list(subset)).total_wh == sum(
            readings.values())
    with pytest.raises(AggregationFailed):  # t = 3 would reconstruct, but unchecked
        combine_partials(feeder.committee, inc, captured[:4])


def test_a_lying_aggregator_is_left_out_not_blamed(feeder: Feeder) -> None:
    readings = dict.fromkeys(feeder.device_keys, 500)

    def corrupt(ps: list[PartialSum]) -> list[PartialSum]:
        ps[2] = resign_partial(feeder, ps[2], value=(ps[2].value + 12_345) % PRIME)
        return ps

    res, _, _ = run_round(feeder, 6, readings, partial_hook=corrupt, head=6000, tolerance=100)
    assert res.total_wh == 6000 and res.head_meter_ok
    assert res.left_out == (("a2", "off-polynomial"),) and "a2" not in res.used_aggregators


def _colluding_partials(f: Feeder, ps: list[PartialSum], colluders: Sequence[int],
                        fake_total: int) -> list[PartialSum]:
    """The colluders replace their partials by points of the polynomial through (0, fake)
    and as many honest partials as the degree allows, so a plain decoder within the
    unique radius takes their codeword and calls an honest aggregator the liar."""
    t = f.committee.threshold
    honest = [p for p in ps if p.position not in colluders][:t - 1]
    base = [Share(0, fake_total % PRIME), *(Share(p.position + 1, p.value) for p in honest)]
    return [resign_partial(f, p, value=interpolate_at(base, p.position + 1))
            if p.position in colluders else p for p in ps]


def test_colluders_beyond_the_radius_get_no_total_and_frame_nobody() -> None:
    f5 = make_feeder(m=5, t=3, meters=6)  # radius 1; two colluders are beyond it
    readings = dict.fromkeys(f5.device_keys, 300)
    res = None
    with pytest.raises(AggregationFailed):
        res, _, _ = run_round(f5, 8, readings,
                              partial_hook=lambda ps: _colluding_partials(f5, ps, (3, 4), 99))
    assert res is None


def test_without_min_agree_colluders_choose_the_total_and_frame_an_honest_aggregator() -> None:
    # Defence removed: fault_bound 1 on m = 5 (plain unique decoding, radius 1).
    f5 = make_feeder(m=5, t=3, meters=6, fault_bound=1)
    readings = dict.fromkeys(f5.device_keys, 300)
    res, _, _ = run_round(f5, 8, readings,
                          partial_hook=lambda ps: _colluding_partials(f5, ps, (3, 4), 99))
    assert res.total_wh == 99
    assert res.left_out == (("a2", "off-polynomial"),)  # an honest aggregator


def test_seven_aggregators_locate_two_liars() -> None:
    f = make_feeder(m=7, t=3, meters=6)
    readings = dict.fromkeys(f.device_keys, 300)
    res, _, _ = run_round(f, 9, readings,
                          partial_hook=lambda ps: _colluding_partials(f, ps, (5, 6), 99))
    assert res.total_wh == 1800
    assert {a for a, _ in res.left_out} == {"a5", "a6"}


def test_forged_or_misbound_partials_are_ignored_not_attributed(feeder: Feeder) -> None:
    readings = dict.fromkeys(feeder.device_keys, 10)

    def forge(ps: list[PartialSum]) -> list[PartialSum]:
        ps[1] = replace(ps[1], value=(ps[1].value + 1) % PRIME)  # signature no longer fits
        ps[3] = resign_partial(feeder, ps[3], inclusion_digest=b"\0" * 32)
        return ps

    res, _, _ = run_round(feeder, 10, readings, partial_hook=forge)
    assert res.total_wh == 120 and res.ignored_partials == 1
    assert res.left_out == (("a3", "other-inclusion"),)


# ------------------------------------------------------------------- evidence against a liar
def test_evidence_is_the_aggregators_own_inconsistent_signatures(feeder: Feeder) -> None:
    readings = dict.fromkeys(feeder.device_keys, 10)
    subs = seal_all(feeder, 25, readings)
    a0 = Aggregator(feeder.agg_sessions[0])
    checks = [a0.check(25, subs)] + [Aggregator(s).check(25, subs)
                                     for s in feeder.agg_sessions[1:]]
    p, _ = a0.partial(25, checks)
    key = feeder.aggs[0].signing_key.public_key
    assert partial_misconduct(key, 5, p) is None
    assert partial_misconduct(key, 5, p, replace(p, signature=p.signature)) is None
    other = resign_partial(feeder, p, value=(p.value + 1) % PRIME)
    assert partial_misconduct(key, 5, p, other) == "equivocation"
    small = resign_partial(feeder, p, meters=1, inclusion_digest=b"\1" * 32)
    assert partial_misconduct(key, 5, small) == "below-minimum"
    # unsigned or another aggregator's key proves nothing
    assert partial_misconduct(key, 5, p, replace(other, signature=p.signature)) is None
    assert partial_misconduct(feeder.aggs[1].signing_key.public_key, 5, p, other) is None


# ------------------------------------------------------------------ meters and share checks
def test_a_tampered_share_is_an_erasure_not_an_exclusion(feeder: Feeder) -> None:
    subs = seal_all(feeder, 11, dict.fromkeys(sorted(feeder.device_keys), 100))
    blob = bytearray(subs[0].sealed_shares[1])
    blob[-1] ^= 1
    subs[0] = replace(subs[0], sealed_shares=(subs[0].sealed_shares[0], bytes(blob),
                                              *subs[0].sealed_shares[2:]))
    res, inc, _ = run_round(feeder, 11, {}, submissions=subs)
    assert ("m000", (1,)) in inc.suspects and "m000" in inc.included
    assert res.total_wh == 1200 and "a1" not in res.used_aggregators  # a1 stayed out


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
    rest = seal_all(feeder, 14, dict.fromkeys(sorted(feeder.device_keys)[1:6], 3))
    res, inc, _ = run_round(feeder, 14, {}, submissions=[a, b, *rest])
    assert res.total_wh == 15 and ("m000", "duplicate-submission") in inc.excluded


def test_inconsistent_meter_shares_are_caught_and_blamed_on_the_meter(feeder: Feeder) -> None:
    # A malicious meter seals shares for aggregators 4, 5, 6 from another polynomial.
    # Without the masked share check this would make their partials look wrong (framing).
    m = "m005"
    s1 = seal_reading(feeder.sessions[m], 15, 100, CLIP, DeterministicRandom(21))
    s2 = seal_reading(feeder.sessions[m], 15, 900, CLIP, DeterministicRandom(22))
    evil = replace(s1, sealed_shares=(*s1.sealed_shares[:4], *s2.sealed_shares[4:]))
    honest = [seal_reading(feeder.sessions[x], 15, 10, CLIP, DeterministicRandom(23))
              for x in sorted(feeder.device_keys) if x != m]
    subs = [evil, *honest]
    outs = [check_shares(s, 15, subs) for s in feeder.agg_sessions]
    inc = select_included(feeder.committee, 15, subs, [o[0] for o in outs])
    assert (m, "shares-inconsistent") in inc.excluded
    res, _, _ = run_round(feeder, 15, {}, submissions=subs)
    assert res.total_wh == 110 and res.left_out == ()
    grant = next(g for g in feeder.grants if g.contributor_id == m)
    key = reveal_epoch_key(feeder.agg_sessions[4], m)
    assert resolve_share_dispute(feeder.committee, grant, evil, outs[4][0], key) == "meter"
    assert resolve_share_dispute(feeder.committee, grant, evil, outs[4][0],
                                 b"\0" * 32) == "aggregator"


def test_an_aliased_share_is_the_meters_fault(feeder: Feeder) -> None:
    # A meter seals x + p instead of x for aggregator 2 (issue 18 item 10, in privacy/):
    # the aggregator reports it unusable and the dispute must blame the meter, not it.
    m = "m006"
    session = feeder.sessions[m]
    honest = seal_reading(session, 16, 100, CLIP, DeterministicRandom(51))
    key2 = session.keys[2]
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = honest.sealed_shares[2]
    aad = share_aad("feeder-1", 3, 16, m, 2)
    plain = AESGCM(key2).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    xs = int.from_bytes(plain[:SHARE_BYTES], "big")
    if xs + PRIME >= 2 ** (8 * SHARE_BYTES):
        pytest.skip("this share has no 16-byte alias")
    aliased = (xs + PRIME).to_bytes(SHARE_BYTES, "big") + plain[SHARE_BYTES:]
    nonce = b"\7" * NONCE_BYTES
    evil = replace(honest, sealed_shares=(*honest.sealed_shares[:2],
                                          nonce + AESGCM(key2).encrypt(nonce, aliased, aad),
                                          *honest.sealed_shares[3:]))
    check, _ = check_shares(feeder.agg_sessions[2], 16, [evil])
    assert dict(check.values)[m] is None
    grant = next(g for g in feeder.grants if g.contributor_id == m)
    assert resolve_share_dispute(feeder.committee, grant, evil, check, key2) == "meter"


def test_aggregator_lying_in_its_check_is_blamed(feeder: Feeder) -> None:
    subs = [seal_reading(feeder.sessions[x], 17, 10, CLIP, DeterministicRandom(31))
            for x in sorted(feeder.device_keys)]
    outs = [check_shares(s, 17, subs) for s in feeder.agg_sessions]
    check = outs[1][0]
    values = tuple((c, (v + 1) % PRIME if c == "m000" and v is not None else v)
                   for c, v in check.values)
    lie = replace(check, values=values, signature=b"")
    lie = replace(lie, signature=feeder.aggs[1].signing_key.sign(lie.signed_message(),
                                                                 CTX_CHECK))
    checks: list[ShareCheck] = [o[0] for o in outs]
    checks[1] = lie
    inc = select_included(feeder.committee, 17, subs, checks)
    assert ("m000", (1,)) in inc.suspects and "m000" in inc.included
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
    f = make_feeder(meters=5, noise=True)
    params = DpParams(epsilon_micro=1_000_000, sensitivity_wh=1000)
    rng = DeterministicRandom(41)
    subs = [seal_reading(f.sessions[m], 1, 250, CLIP, rng) for m in sorted(f.device_keys)]
    subs += [seal_noise(f.sessions[f"noise/{a.aggregator_id}"], 1, params, rng) for a in f.aggs]
    res, _, _ = run_round(f, 1, {}, submissions=subs)
    assert res.included_meters == tuple(sorted(f.device_keys))
    assert len(res.noise_dealers) == 7
    assert res.total_wh != 1250  # noise present (a zero total noise has probability < 1e-3)
    assert abs(res.total_wh - 1250) <= params.noise_bound_wh(1e-9, draws=7)
    with pytest.raises(PrivacyError):
        seal_reading(f.sessions["noise/a0"], 1, 5, CLIP)
    # noise dealers do not count towards the anonymity set: 4 meters + 7 dealers is too few
    subs = [seal_reading(f.sessions[m], 2, 250, CLIP, rng) for m in sorted(f.device_keys)[:4]]
    subs += [seal_noise(f.sessions[f"noise/{a.aggregator_id}"], 2, params, rng) for a in f.aggs]
    with pytest.raises(AnonymitySetTooSmall, match="4 meters"):
        run_round(f, 2, {}, submissions=subs)
