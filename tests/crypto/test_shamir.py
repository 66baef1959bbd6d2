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
    interpolate_at,
    reconstruct_secret,
    split_secret,
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
