"""Shamir secret sharing: exact reconstruction, secrecy below threshold, wrong-share detection."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.crypto.shamir import (
    PRIME,
    InconsistentShares,
    Share,
    check_consistency,
    decode_shares,
    decode_signed,
    encode_signed,
    field_to_bytes,
    interpolate_at,
    lagrange_at_zero,
    reconstruct_secret,
    split_secret,
    unique_agreement,
)
from gridledger.errors import CryptoError
from gridledger.privacy.rng import DeterministicRandom

secrets = st.integers(min_value=0, max_value=PRIME - 1)


@settings(max_examples=40, deadline=None)
@given(secret=secrets, t=st.integers(1, 5), extra=st.integers(0, 3), seed=st.integers(0, 2**32))
def test_any_t_of_n_reconstruct(secret: int, t: int, extra: int, seed: int) -> None:
    n = t + extra
    shares = split_secret(secret, t, n, DeterministicRandom(seed))
    for subset in itertools.combinations(shares, t):
        assert reconstruct_secret(list(subset), t) == secret
    assert reconstruct_secret(shares, t) == secret  # all n, consistency-checked


@settings(max_examples=40, deadline=None)
@given(value=st.integers(-(PRIME // 2), PRIME // 2))
def test_signed_encoding_round_trips(value: int) -> None:
    assert decode_signed(encode_signed(value)) == value


@settings(max_examples=30, deadline=None)
@given(secret=secrets, other=secrets, seed=st.integers(0, 2**32))
def test_fewer_than_t_shares_fit_every_secret(secret: int, other: int, seed: int) -> None:
    # Perfect secrecy, structurally: any t-1 shares lie on a degree t-1 polynomial through
    # (0, s') for *every* candidate s', so they say nothing about which secret it was.
    t = 3
    shares = split_secret(secret, t, 5, DeterministicRandom(seed))[: t - 1]
    forged = [Share(0, other), *shares]
    for s in shares:
        assert interpolate_at(forged, s.x) == s.y


def test_single_share_is_uniform_whatever_the_secret() -> None:
    # Statistical check: the top 4 bits of one share are uniform for secret 0 and secret p-1.
    rng = DeterministicRandom(7)
    for secret in (0, PRIME - 1):
        counts = [0] * 16
        for _ in range(3200):
            y = split_secret(secret, 2, 2, rng)[0].y
            counts[y >> 123] += 1
        chi2 = sum((c - 200) ** 2 / 200 for c in counts)
        assert chi2 < 40  # 15 degrees of freedom: p ~ 5e-4


@settings(max_examples=25, deadline=None)
@given(secret=secrets, bad=st.integers(0, 4), delta=st.integers(1, PRIME - 1),
       seed=st.integers(0, 2**32))
def test_one_wrong_share_is_detected_and_located(secret: int, bad: int, delta: int,
                                                 seed: int) -> None:
    shares = split_secret(secret, 3, 5, DeterministicRandom(seed))
    shares[bad] = Share(shares[bad].x, (shares[bad].y + delta) % PRIME)
    assert not check_consistency(shares, 3)
    with pytest.raises(InconsistentShares):
        reconstruct_secret(shares, 3)
    decoded = decode_shares(shares, 3)
    assert decoded.secret == secret and decoded.bad_xs == (bad + 1,)


def test_beyond_unique_radius_refuses_to_guess() -> None:
    shares = split_secret(42, 3, 4, DeterministicRandom(1))
    shares[0] = Share(1, (shares[0].y + 1) % PRIME)
    with pytest.raises(InconsistentShares):
        decode_shares(shares, 3)  # n = t + 1: detectable, not locatable


def test_bad_parameters_rejected() -> None:
    with pytest.raises(CryptoError):
        split_secret(1, 4, 3)
    with pytest.raises(CryptoError):
        split_secret(PRIME, 2, 3)
    with pytest.raises(CryptoError):
        reconstruct_secret([Share(1, 1), Share(1, 2)], 2)


# ------------------------------------------------------------------ aliasing (issue 18 item 10)
def test_aliased_share_indices_are_refused_everywhere() -> None:
    # x and x + p are the same field point: an aliased "fourth" share is a duplicate of the
    # first, so reconstruction must not treat it as new information (it would return a
    # wrong secret, and decoding would blame an honest share).
    shares = split_secret(42, 3, 3, DeterministicRandom(3))
    with pytest.raises(CryptoError, match="canonical"):
        Share(shares[0].x + PRIME, shares[0].y)
    with pytest.raises(CryptoError, match="canonical"):
        Share(1, PRIME)  # y = p aliases y = 0
    with pytest.raises(CryptoError, match="canonical"):
        Share(-1, 5)
    with pytest.raises(CryptoError, match="distinct"):
        lagrange_at_zero((1, 2, 1 + PRIME))
    with pytest.raises(CryptoError, match="non-zero"):
        lagrange_at_zero((1, 2, PRIME))
    with pytest.raises(CryptoError):
        field_to_bytes(PRIME)
    with pytest.raises(CryptoError):
        field_to_bytes(-1)


def test_a_share_at_zero_is_not_a_share() -> None:
    with pytest.raises(CryptoError, match="x = 0"):
        reconstruct_secret([Share(0, 7), Share(1, 8)], 2)
    with pytest.raises(CryptoError, match="x = 0"):
        decode_shares([Share(0, 7), Share(1, 8), Share(2, 9)], 2)


@settings(max_examples=25, deadline=None)
@given(secret=secrets, seed=st.integers(0, 2**32), j=st.integers(0, 4))
def test_every_check_is_modulo_the_field(secret: int, seed: int, j: int) -> None:
    # Whatever a caller does with raw integers, no path accepts an alias as a new point.
    shares = split_secret(secret, 3, 5, DeterministicRandom(seed))
    assert decode_shares(shares, 3).secret == secret
    with pytest.raises(CryptoError):
        reconstruct_secret([*shares, Share((shares[j].x + PRIME) % (2 * PRIME), shares[j].y)], 3)


# ---------------------------------------------------------- colluders beyond the unique radius
def _colluding(secret: int, fake: int, seed: int) -> list[Share]:
    """5 shares, t = 3, where shares 4 and 5 are replaced by two colluders who pick the
    polynomial through honest shares 1, 2 and (0, fake): 4 of 5 shares then agree on it."""
    shares = split_secret(secret, 3, 5, DeterministicRandom(seed))
    base = [Share(0, fake), shares[0], shares[1]]
    return [shares[0], shares[1], shares[2],
            Share(4, interpolate_at(base, 4)), Share(5, interpolate_at(base, 5))]


def test_unique_decoding_is_fooled_by_two_colluders_but_min_agree_is_not() -> None:
    shares = _colluding(1000, 666, 9)
    fooled = decode_shares(shares, 3)  # radius 1: the colluders' codeword is within it
    assert fooled.secret == 666 and fooled.bad_xs == (3,)  # and an honest share is "bad"
    with pytest.raises(InconsistentShares):
        decode_shares(shares, 3, min_agree=5)  # 2t - 1: robust against t - 1 colluders


@settings(max_examples=25, deadline=None)
@given(secret=secrets, fake=secrets, seed=st.integers(0, 2**32), t=st.integers(2, 4),
       extra=st.integers(0, 4))
def test_min_agree_2t_minus_1_never_returns_a_colluders_secret(
        secret: int, fake: int, seed: int, t: int, extra: int) -> None:
    n = 2 * t - 1 + extra
    shares = split_secret(secret, t, n, DeterministicRandom(seed))
    # t - 1 colluders (the last ones) aim for ``fake`` through as many honest shares as
    # their degree of freedom allows
    base = [Share(0, fake), *shares[:t - 1]]
    forged = shares[:n - (t - 1)] + [Share(s.x, interpolate_at(base, s.x))
                                     for s in shares[n - (t - 1):]]
    need = max(2 * t - 1, unique_agreement(n, t))
    try:
        decoded = decode_shares(forged, t, min_agree=need)
    except InconsistentShares:
        return  # refusing is fine; a wrong secret is not
    assert decoded.secret == secret
    assert set(decoded.bad_xs) <= {s.x for s in shares[n - (t - 1):]}  # never an honest one


def test_min_agree_below_the_unique_bound_is_refused() -> None:
    shares = split_secret(5, 3, 5, DeterministicRandom(2))
    with pytest.raises(CryptoError, match="min_agree"):
        decode_shares(shares, 3, min_agree=3)
