"""Dropout-tolerant, post-quantum secure aggregation of feeder readings.

Goal (docs/threat-model.md rows 3, 7, 8): the feeder total of households' slot readings is computed
so that no single node (validator, DSO, aggregator) learns any household's reading, no
single aggregator is needed, no coalition below the threshold can extract one household's
reading by choosing what it asks, and no coalition up to the fault bound can make a wrong
total pass or have an honest aggregator blamed.

Construction (Shamir 1979 secret sharing + per-epoch ML-KEM key establishment; dropouts
follow the "only survivors are summed" rule of Bonawitz et al. CCS 2017, with threshold
*shares* instead of pairwise masks, so a dropped meter needs no recovery round; the share
check is in the spirit of Prio, Corrigan-Gibbs & Boneh NSDI 2017). By role:

* ``committee``: the committee and its rules, epoch key establishment (ML-KEM-768);
* ``meter``: the contributor's round (clip, share, seal);
* ``rounds``: the aggregator's round (check shares, derive the inclusion from signed
  inputs, one partial per round, minimum anonymity set) and the evidence against it;
* ``combine``: the total from partial sums, trusted only with ``min_agree`` agreeing;
* ``disputes``: who sent a bad share, meter or aggregator.

Not covered: a meter can still lie about its own reading (false data injection, THREATS
row 1, caught by the head-meter balance and state estimation), and range proofs on shares
(Prio's SNIPs) are not implemented: honest meters clip, which is what DP for honest
households needs. Sybil meters: the minimum anonymity set counts registered meters; a
coalition that also controls ``min_contributors - 1`` meters and can drop every other
meter from a round learns the remaining one (docs/privacy.md).
"""

from gridledger.privacy.aggregation.combine import AggregateResult, combine_partials
from gridledger.privacy.aggregation.committee import (
    CTX_GRANT,
    NOISE_PREFIX,
    AggregatorInfo,
    AggregatorKeys,
    AggregatorSession,
    Committee,
    ContributorSession,
    EpochGrant,
    accept_grants,
    commit_key,
    establish_session,
    verify_grant,
)
from gridledger.privacy.aggregation.disputes import (
    resolve_share_dispute,
    reveal_epoch_key,
)
from gridledger.privacy.aggregation.meter import (
    MeterSubmission,
    seal_noise,
    seal_reading,
)
from gridledger.privacy.aggregation.rounds import (
    CTX_CHECK,
    CTX_PARTIAL,
    Aggregator,
    AggregatorRound,
    Inclusion,
    PartialSum,
    ShareCheck,
    check_shares,
    inclusion_digest,
    partial_message,
    partial_misconduct,
    round_transcript,
    select_included,
    sum_shares,
)

__all__ = [
    "CTX_CHECK", "CTX_GRANT", "CTX_PARTIAL", "NOISE_PREFIX", "AggregateResult", "Aggregator",
    "AggregatorInfo", "AggregatorKeys", "AggregatorRound", "AggregatorSession", "Committee",
    "ContributorSession", "EpochGrant", "Inclusion", "MeterSubmission", "PartialSum",
    "ShareCheck", "accept_grants", "check_shares", "combine_partials", "commit_key",
    "establish_session", "inclusion_digest", "partial_message", "partial_misconduct",
    "resolve_share_dispute", "reveal_epoch_key", "round_transcript", "seal_noise",
    "seal_reading", "select_included", "sum_shares", "verify_grant",
]
