"""The contributor's round: clip, Shamir-share, seal one share per aggregator.

The meter shares its reading ``x`` with a fresh degree ``t - 1`` polynomial and an
independent uniform *mask* ``w`` the same way; share ``j`` of both goes to aggregator ``j``
under AES-256-GCM with a random nonce and the round (feeder, epoch, slot, meter, j) as
associated data, so a share cannot be replayed into another round or redirected. The ``m``
ciphertexts travel in one submission, so every aggregator sees the same set of meters.

Randomness (coefficients, mask, nonces) is the meter's secret: ``os.urandom`` unless a test
injects a ``RandomBytes``. It never needs to be reproducible, because nothing derived from
it stays in ledger state (``docs/architecture.md``, "Secrets and reproducibility").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.shamir import (
    SHARE_BYTES,
    RandomBytes,
    encode_signed,
    evaluate_polynomial,
    field_to_bytes,
    is_field_element,
    random_field_element,
)
from gridledger.privacy.aggregation.committee import NOISE_PREFIX, ContributorSession
from gridledger.privacy.dp import ClipBound, DpParams, clip_reading, sample_noise
from gridledger.privacy.errors import PrivacyError

NONCE_BYTES = 12


@dataclass(frozen=True)
class MeterSubmission:
    """One contributor's sealed shares for one slot: ciphertext ``j`` is for aggregator ``j``."""

    contributor_id: str
    feeder_id: str
    epoch: int
    slot: int
    sealed_shares: tuple[bytes, ...]

    @cached_property
    def _digest(self) -> bytes:
        return tagged_hash("gl/secagg/submission", self.contributor_id.encode(),
                           self.feeder_id.encode(), self.epoch.to_bytes(8, "big"),
                           self.slot.to_bytes(8, "big"), *self.sealed_shares)

    def digest(self) -> bytes:
        """Hash of the whole submission (computed once: every aggregator hashes the round)."""
        return self._digest


def share_aad(feeder_id: str, epoch: int, slot: int, contributor_id: str,
              position: int) -> bytes:
    """AES-GCM associated data: binds a sealed share to its round and recipient."""
    return f"gl/secagg/share/v1|{feeder_id}|{epoch}|{slot}|{contributor_id}|{position}".encode()


def open_share(key: bytes, submission: MeterSubmission, position: int) -> tuple[int, int] | None:
    """Decrypt share ``position`` of ``submission`` under ``key``: ``(x_j, w_j)``.

    None if it fails authentication or is not two *canonical* field elements (a share
    ``x + p`` would alias ``x``; an honest meter never sends one, so it is the meter's fault).
    """
    blob = submission.sealed_shares[position]
    try:
        plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                    share_aad(submission.feeder_id, submission.epoch,
                                              submission.slot, submission.contributor_id,
                                              position))
    except (InvalidTag, ValueError):  # forged, misdirected, or a truncated nonce
        return None
    if len(plain) != 2 * SHARE_BYTES:
        return None
    xs, ws = int.from_bytes(plain[:SHARE_BYTES], "big"), int.from_bytes(plain[SHARE_BYTES:], "big")
    if not (is_field_element(xs) and is_field_element(ws)):
        return None
    return xs, ws


def _seal_value(session: ContributorSession, slot: int, value: int,
                random_bytes: RandomBytes) -> MeterSubmission:
    c = session.committee
    t = c.threshold
    x_coeffs = [random_field_element(random_bytes) for _ in range(t - 1)]
    w_coeffs = [random_field_element(random_bytes) for _ in range(t - 1)]
    # The mask's constant term is uniform too, so x + r*w is a one-time pad on x.
    w_secret = random_field_element(random_bytes)
    secret = encode_signed(value)
    sealed = []
    for j in range(c.size):
        x = j + 1
        plain = (field_to_bytes(evaluate_polynomial(secret, x_coeffs, x))
                 + field_to_bytes(evaluate_polynomial(w_secret, w_coeffs, x)))
        nonce = random_bytes(NONCE_BYTES)
        aad = share_aad(c.feeder_id, c.epoch, slot, session.contributor_id, j)
        sealed.append(nonce + AESGCM(session.keys[j]).encrypt(nonce, plain, aad))
    return MeterSubmission(session.contributor_id, c.feeder_id, c.epoch, slot, tuple(sealed))


def seal_reading(session: ContributorSession, slot: int, reading_wh: int, clip: ClipBound,
                 random_bytes: RandomBytes = os.urandom) -> MeterSubmission:
    """The meter's round work: clip, share, seal one share per aggregator.

    ``random_bytes`` is the meter's secret RNG (``os.urandom``; tests inject one).
    """
    if session.contributor_id.startswith(NOISE_PREFIX):
        raise PrivacyError("noise sessions seal noise, not readings")
    return _seal_value(session, slot, clip_reading(reading_wh, clip), random_bytes)


def seal_noise(session: ContributorSession, slot: int, params: DpParams,
               random_bytes: RandomBytes = os.urandom) -> MeterSubmission:
    """An aggregator's secret discrete-Laplace draw, shared like a reading.

    Every aggregator that deals one adds full-scale noise, so the total stays epsilon-DP
    even if all other noise dealers collude and subtract theirs (variance grows with the
    number of dealers; see docs/privacy.md). A dealer could bias the total with a huge
    "draw"; the head-meter check with tolerance ``DpParams.noise_bound_wh`` bounds that.
    """
    if not session.contributor_id.startswith(NOISE_PREFIX):
        raise PrivacyError("noise is dealt from a noise/<aggregator id> session")
    return _seal_value(session, slot, sample_noise(params, random_bytes), random_bytes)
