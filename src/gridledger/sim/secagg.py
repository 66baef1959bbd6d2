"""Secure aggregation in the simulated community: every slot, the members' meters Shamir-share
their net readings to the five aggregators (``privacy.aggregation``), the aggregators check
the shares, agree on the included set and each post a ``privacy/partial``; the validators
decode the feeder total at the settlement deadline, name a lying aggregator and compare the
total with the readings settlement used (``ledger/modules/privacy/hooks.py``).

Randomness: real meters use the OS RNG; the simulator draws share polynomials from a seeded
DRBG so the same seed gives the same partial sums, hence the same ledger, byte for byte.
The ML-KEM session keys still come from OpenSSL, which is why the ledger groups partials
by a round id over the included set (deterministic) rather than by the transcript digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridledger.crypto.hashing import tagged_hash
from gridledger.privacy.aggregation import (
    Committee,
    accept_grants,
    check_shares,
    establish_session,
    seal_reading,
    select_included,
    sum_shares,
)
from gridledger.privacy.dp import ClipBound
from gridledger.sim import community
from gridledger.sim.community import FEEDER, Member, PrivacyKeys

CLIP = ClipBound(-10**6, 10**6)  # +-1 MWh per slot: never binds for a household


def drbg(*label: object):
    """A seeded byte stream (SHA3 counter mode) standing in for the meter's RNG."""
    base = tagged_hash("gl/sim/drbg", *(str(x).encode() for x in label))
    state = {"n": 0}

    def random_bytes(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += tagged_hash("gl/sim/drbg/block", base, state["n"].to_bytes(8, "big"))
            state["n"] += 1
        return out[:n]
    return random_bytes


@dataclass(frozen=True)
class Round:
    """One slot's result off the ledger: the round id and each aggregator's partial value."""

    slot: int
    round_id: bytes
    included: tuple[str, ...]
    values: tuple[int, ...]       # by aggregator position
    true_total_wh: int
    first_aggregator_shares: dict[str, int]  # what aggregator 0 alone holds per meter


class FeederAggregation:
    """The feeder's committee for the run (one epoch) and its members' meter sessions."""

    def __init__(self, keys: PrivacyKeys, members: Sequence[Member], seed: int, epoch: int = 0):
        self.seed = seed
        self.committee = Committee(FEEDER, epoch, community.AGGREGATOR_THRESHOLD,
                                   tuple(a.info() for a in keys.aggregator_keys))
        self.sessions = {}
        grants = []
        for m in members:
            s, g = establish_session(m.cp, self.committee, m.meter)
            self.sessions[m.cp] = s
            grants.append(g)
        registry = {m.cp: m.meter.public_key for m in members}
        self.aggregators = [accept_grants(a, self.committee, grants, registry)
                            for a in keys.aggregator_keys]

    def run_round(self, slot: int, net_import_wh: dict[str, int]) -> Round:
        """Meters seal, aggregators check and sum; ``net_import_wh`` is what each meter read."""
        subs = [seal_reading(self.sessions[cp], slot, v, CLIP,
                             random_bytes=drbg(self.seed, slot, cp))
                for cp, v in sorted(net_import_wh.items()) if cp in self.sessions]
        pairs = [check_shares(a, slot, subs) for a in self.aggregators]
        inclusion = select_included(self.committee, slot, subs, [c for c, _ in pairs])
        partials = [sum_shares(r, inclusion) for _, r in pairs]
        included = inclusion.included_meters
        round_id = tagged_hash("gl/sim/secagg-round", FEEDER.encode(),
                               self.committee.epoch.to_bytes(8, "big"), slot.to_bytes(8, "big"),
                               *(c.encode() for c in included))
        return Round(slot, round_id, included, tuple(p.value for p in partials),
                     sum(net_import_wh[c] for c in included), dict(pairs[0][1].x_shares))
