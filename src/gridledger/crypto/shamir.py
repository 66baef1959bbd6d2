"""Shamir secret sharing over the prime field GF(2^127 - 1) (Shamir 1979).

A secret ``s`` is hidden as ``f(0)`` of a random polynomial ``f`` of degree ``t - 1``; share
``j`` is ``(x_j, f(x_j))``. Any ``t`` shares determine ``f`` (Lagrange interpolation); any
``t - 1`` are uniformly distributed whatever ``s`` is, so they reveal nothing (information
theoretic, no hardness assumption: quantum-safe by construction).

Why p = 2^127 - 1 (a Mersenne prime):

* Secrecy does not depend on p, but *range* and *soundness* do. Feeder sums of signed Wh
  readings (net export is negative, stored centred) fit with room to spare, and the
  Fiat-Shamir share-consistency check in ``privacy.aggregation`` is sound except with
  probability 1/p per attempt: 2^-127 makes grinding by a malicious meter pointless, where a
  61-bit prime would leave 2^61 work.
* Python integers make 127-bit products cheap (a few 30-bit digits); the cost of a sharing
  round is dominated by AES-GCM, not field arithmetic (measured in ``benchmarks/privacy.md``),
  so the numpy-friendly 31/61-bit primes buy nothing here.
* A share encodes in 16 bytes.

Shares are linear: the share-wise sum of sharings of ``a`` and ``b`` is a sharing of
``a + b``. That is what secure aggregation uses.

Shares of one polynomial form a Reed-Solomon codeword, so with ``n > t`` shares a wrong share
is *detected* (the points do not lie on one degree ``t - 1`` polynomial), and with
``n >= t + 2e`` up to ``e`` wrong shares are *located* (unique decoding radius of RS codes;
``decode_shares`` does it by subset search, fine for the small committees used here).
Beyond that radius colluding shares can pass for a different codeword; ``decode_shares``
takes a ``min_agree`` that keeps the answer honest against a stated number of colluders.

Field elements are always handled canonically (``0 <= v < p``): ``Share`` refuses anything
else and ``field_to_bytes`` will not encode it, because ``x`` and ``x + p`` are the same
point and a raw-integer comparison would let an aliased share through.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from gridledger.errors import CryptoError

PRIME: Final[int] = 2**127 - 1
"""The field modulus: the Mersenne prime 2^127 - 1."""
SHARE_BYTES: Final[int] = 16
"""Bytes of one encoded field element."""
MAX_SHARES: Final[int] = 32
"""Committees are small; subset decoding is exponential in ``n`` beyond that."""

RandomBytes = Callable[[int], bytes]
"""A source of uniformly random bytes (``os.urandom`` in production; injected in tests)."""


class InconsistentShares(CryptoError):
    """The shares do not lie on one polynomial of the expected degree."""


def is_field_element(value: int) -> bool:
    """Whether ``value`` is the canonical representative of a GF(p) element (0 <= v < p).

    Every check on field elements goes through canonical values: ``x`` and ``x + p`` are the
    same point, so comparing raw integers would let an aliased share pass a distinctness or
    equality test and corrupt reconstruction (or blame an honest share).
    """
    return type(value) is int and 0 <= value < PRIME  # bool (an int subclass) is refused


@dataclass(frozen=True)
class Share:
    """One Shamir share: the point ``(x, y)``, both canonical elements of GF(p).

    Raises ``CryptoError`` for a non-canonical coordinate (``x + p`` aliases ``x``); a share
    used for reconstruction must also have ``x != 0`` (checked where shares are combined).
    """

    x: int
    y: int

    def __post_init__(self) -> None:
        if not (is_field_element(self.x) and is_field_element(self.y)):
            raise CryptoError("share coordinates must be canonical field elements (0 <= v < p)")


@dataclass(frozen=True)
class Decoded:
    """The outcome of robust decoding: the secret and the x-coordinates of wrong shares."""

    secret: int
    bad_xs: tuple[int, ...]


def encode_signed(value: int) -> int:
    """Map a signed integer to GF(p) (negative values wrap to the top half)."""
    if not -(PRIME // 2) <= value <= PRIME // 2:
        raise CryptoError("value out of the field's signed range")
    return value % PRIME


def decode_signed(element: int) -> int:
    """Inverse of ``encode_signed``: the centred representative of a field element."""
    element %= PRIME
    return element - PRIME if element > PRIME // 2 else element


def random_field_element(random_bytes: RandomBytes = os.urandom) -> int:
    """A uniform element of GF(p) by rejection sampling 127-bit strings."""
    while True:
        v = int.from_bytes(random_bytes(SHARE_BYTES), "big") & PRIME
        if v != PRIME:  # 2^127 - 1 itself is the only rejected value (probability 2^-127)
            return v


def field_from_bytes(data: bytes) -> int:
    """Parse a 16-byte big-endian field element; reject non-canonical encodings."""
    v = int.from_bytes(data, "big")
    if len(data) != SHARE_BYTES or v >= PRIME:
        raise CryptoError("not a canonical field element")
    return v


def field_to_bytes(element: int) -> bytes:
    """Encode a canonical field element in 16 big-endian bytes; raises ``CryptoError`` for
    anything else (an encoder that accepted ``v + p`` would sign an alias of ``v``)."""
    if not is_field_element(element):
        raise CryptoError("not a canonical field element")
    return element.to_bytes(SHARE_BYTES, "big")


def _check_params(threshold: int, n_shares: int) -> None:
    if not 1 <= threshold <= n_shares <= MAX_SHARES:
        raise CryptoError(f"need 1 <= threshold <= n_shares <= {MAX_SHARES}")


def random_coefficients(threshold: int, random_bytes: RandomBytes = os.urandom) -> list[int]:
    """The ``threshold - 1`` uniformly random non-constant coefficients of a sharing."""
    return [random_field_element(random_bytes) for _ in range(threshold - 1)]


def evaluate_polynomial(constant: int, coefficients: Sequence[int], x: int) -> int:
    """``constant + c1 x + c2 x^2 + ...`` mod p (Horner's rule)."""
    acc = 0
    for c in reversed(coefficients):
        acc = (acc + c) * x
    return (acc + constant) % PRIME


def split_secret(secret: int, threshold: int, n_shares: int,
                 random_bytes: RandomBytes = os.urandom) -> list[Share]:
    """Split ``secret`` (a field element, or signed int via ``encode_signed``) into shares.

    Returns shares at x = 1..n_shares. Raises ``CryptoError`` on bad parameters.
    """
    _check_params(threshold, n_shares)
    if not 0 <= secret < PRIME:
        raise CryptoError("secret must be a field element; use encode_signed for ints")
    coefficients = random_coefficients(threshold, random_bytes)
    return [Share(x, evaluate_polynomial(secret, coefficients, x)) for x in range(1, n_shares + 1)]


@lru_cache(maxsize=4096)
def lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Lagrange basis coefficients ``l_j(0)`` for the points ``xs`` (cached: committees repeat)."""
    canonical = [x % PRIME for x in xs]  # x and x + p are one point: compare modulo p
    if len(set(canonical)) != len(xs) or 0 in canonical:
        raise CryptoError("share x-coordinates must be distinct and non-zero modulo p")
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * xm % PRIME
                den = den * (xm - xj) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(out)


@lru_cache(maxsize=4096)
def _weights_at(xs: tuple[int, ...], x: int) -> tuple[int, ...]:
    # Lagrange basis values l_j(x) for the points xs (cached: committees and checks repeat)
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * (x - xm) % PRIME
                den = den * (xj - xm) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(out)


def interpolate_at(shares: Sequence[Share], x: int) -> int:
    """Value at ``x`` of the unique polynomial of degree < len(shares) through ``shares``."""
    weights = _weights_at(tuple(s.x for s in shares), x % PRIME)
    return sum(w * s.y for w, s in zip(weights, shares, strict=True)) % PRIME


def _check_points(shares: Sequence[Share]) -> None:
    # Share coordinates are canonical (Share.__post_init__), so set equality is equality mod p.
    if len({s.x for s in shares}) != len(shares):
        raise CryptoError("duplicate share x-coordinates")
    if any(s.x == 0 for s in shares):
        raise CryptoError("a share at x = 0 would be the secret itself")


def _secret_of(shares: Sequence[Share]) -> int:
    coeffs = lagrange_at_zero(tuple(s.x for s in shares))
    return sum(c * s.y for c, s in zip(coeffs, shares, strict=True)) % PRIME


def check_consistency(shares: Sequence[Share], threshold: int) -> bool:
    """Whether all ``shares`` lie on one polynomial of degree ``threshold - 1``.

    With exactly ``threshold`` shares this is vacuously true: detection needs redundancy.
    """
    _check_points(shares)
    if len(shares) < threshold:
        raise CryptoError(f"need at least {threshold} shares, got {len(shares)}")
    base = list(shares[:threshold])
    return all(interpolate_at(base, s.x) == s.y for s in shares[threshold:])


def reconstruct_secret(shares: Sequence[Share], threshold: int) -> int:
    """The secret from ``threshold`` or more shares.

    With more than ``threshold`` shares the extra ones are checked and
    ``InconsistentShares`` is raised if any disagrees (use ``decode_shares`` to locate it).
    """
    if not check_consistency(shares, threshold):
        raise InconsistentShares("shares are not on one polynomial of degree threshold-1")
    return _secret_of(shares[:threshold])


def unique_agreement(n_shares: int, threshold: int) -> int:
    """The fewest shares a polynomial must agree with to be the unique answer among ``n``.

    Two distinct polynomials of degree ``t - 1`` share at most ``t - 1`` points, and two
    sets of ``a`` agreeing shares among ``n`` overlap in ``2a - n``; so ``a`` is unique once
    ``2a - n >= t``: ``a = ceil((n + t) / 2)``, i.e. up to ``(n - t) // 2`` wrong shares
    (Reed-Solomon unique decoding radius).
    """
    return -(-(n_shares + threshold) // 2)


def decode_shares(shares: Sequence[Share], threshold: int, *,
                  min_agree: int | None = None) -> Decoded:
    """Robustly decode: the secret and which shares are wrong.

    Returns the polynomial that agrees with at least ``min_agree`` shares (default
    ``unique_agreement(n, t)``: the Reed-Solomon unique-decoding radius). Raises
    ``InconsistentShares`` when no polynomial does: never a guess.

    Why a caller raises ``min_agree`` above the radius: up to ``(n - t) // 2`` *independent*
    wrong shares are located, but ``c`` colluding ones can sit on a polynomial of their
    choice that agrees with ``n - c`` shares once ``c`` honest shares are replaced, and
    plain unique decoding then returns their secret and names an honest share as wrong.
    Requiring ``min_agree >= threshold + c`` makes every accepted polynomial agree with at
    least ``threshold`` honest shares, hence be the honest one, for up to ``c`` colluders
    (``c = threshold - 1`` with ``min_agree = 2 * threshold - 1``).
    """
    n = len(shares)
    _check_points(shares)
    if n < threshold:
        raise CryptoError(f"need at least {threshold} shares, got {n}")
    _check_params(threshold, n)
    need = unique_agreement(n, threshold) if min_agree is None else min_agree
    if need < unique_agreement(n, threshold) or need > n:
        raise CryptoError(f"min_agree must lie in [{unique_agreement(n, threshold)}, {n}] "
                          f"for {n} shares and threshold {threshold}")
    if check_consistency(shares, threshold):
        return Decoded(_secret_of(shares[:threshold]), ())
    for subset in itertools.combinations(shares, threshold):
        agree = frozenset(s.x for s in shares if interpolate_at(subset, s.x) == s.y)
        if len(agree) >= need:
            # need >= the unique-decoding bound, so the first hit is the only answer.
            return Decoded(_secret_of(subset),
                           tuple(sorted(s.x for s in shares if s.x not in agree)))
    raise InconsistentShares(
        f"no polynomial of degree {threshold - 1} agrees with {need} of {n} shares")

