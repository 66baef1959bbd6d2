"""Who sent a bad share: the meter or the aggregator (pure; anyone can run it).

An aggregator that reports a meter's share as unusable, or whose check value is off the
meter's polynomial, reveals the epoch key it shares with that meter; the key is checked
against the commitment in the meter's signed epoch grant, so neither side can frame the
other. Revealing it exposes only this aggregator's shares of that meter: fewer than ``t``,
so nothing about the readings (Shamir 1979).
"""

from __future__ import annotations

from gridledger.crypto.shamir import PRIME
from gridledger.privacy.aggregation.committee import (
    AggregatorSession,
    Committee,
    EpochGrant,
    commit_key,
)
from gridledger.privacy.aggregation.meter import MeterSubmission, open_share
from gridledger.privacy.aggregation.rounds import ShareCheck, challenge
from gridledger.privacy.errors import PrivacyError


def reveal_epoch_key(session: AggregatorSession, contributor_id: str) -> bytes:
    """The AES key an aggregator shares with one contributor, revealed in a dispute."""
    try:
        return session.contributor_keys[contributor_id]
    except KeyError as exc:
        raise PrivacyError(f"no key for {contributor_id!r}") from exc


def resolve_share_dispute(committee: Committee, grant: EpochGrant, submission: MeterSubmission,
                          check: ShareCheck, revealed_key: bytes) -> str:
    """Say who is at fault for a suspect share: ``"meter"`` or ``"aggregator"``.

    Anyone can run it with the submission (whose digest the meter signed), the aggregator's
    signed check and the key it revealed. An honest aggregator reports None exactly when
    its share does not open or is not two canonical field elements, and otherwise the
    value ``x + r w``; any other report is the aggregator's fault, and a share that does
    not open, or opens to the published value, is the meter's. A revealed key that does
    not match the commitment in the meter's signed grant is the aggregator's fault (it
    would otherwise frame the meter).
    """
    j = check.position
    if grant.contributor_id != submission.contributor_id:
        raise PrivacyError("grant and submission are from different contributors")
    if not 0 <= j < len(grant.key_commitments) or j >= len(submission.sealed_shares):
        raise PrivacyError("the check's position is not in this committee")
    if commit_key(revealed_key) != grant.key_commitments[j]:
        return "aggregator"
    if (submission.feeder_id, submission.epoch, submission.slot) != (check.feeder_id,
                                                                     check.epoch, check.slot):
        raise PrivacyError("submission and check are from different rounds")
    if (committee.feeder_id, committee.epoch) != (check.feeder_id, check.epoch):
        raise PrivacyError("the check is for another committee")
    published = dict(check.values).get(submission.contributor_id)
    opened = open_share(revealed_key, submission, j)
    if opened is None:
        return "meter" if published is None else "aggregator"
    if published is None:
        return "aggregator"  # the share is fine, yet the aggregator reported it unusable
    xs, ws = opened
    v = (xs + challenge(check.transcript, submission.contributor_id) * ws) % PRIME
    return "meter" if v == published else "aggregator"
