"""Secure aggregation in the simulated community: every slot, the members' meters Shamir-share
their net readings to the aggregators (``privacy.aggregation``), each aggregator checks the
shares, derives the inclusion from all signed checks and signs one partial sum, and each
posts a ``privacy/partial``; the validators decode the feeder total as soon as the whole
committee has posted, and compare it with the readings settlement used at the settlement
deadline (``ledger/modules/privacy/aggregation.py``).

Randomness: everything secret (share polynomials, masks, nonces, ML-KEM encapsulations) comes
from the OS, as on a real meter, so a curious aggregator in the attack lab holds exactly
what a real one would: uniform shares, not values it could regenerate from the scenario
seed. Nothing secret reaches ledger state: the inclusion digest names contributors only, and
the partial values are decoded and dropped in the block they arrive in
(``docs/architecture.md``, "Secrets and reproducibility").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gridledger.crypto.sig import SigningKey
from gridledger.privacy.aggregation import (
    CTX_PARTIAL,
    Aggregator,
    Committee,
    ContributorSession,
    PartialSum,
    accept_grants,
    establish_session,
    seal_reading,
)
from gridledger.privacy.dp import ClipBound, clip_reading
from gridledger.privacy.errors import AnonymitySetTooSmall, PrivacyError
from gridledger.sim import community
from gridledger.sim.community import FEEDER, Member, PrivacyKeys

CLIP = ClipBound(-community.AGGREGATE_CLIP_WH, community.AGGREGATE_CLIP_WH)
"""The meters' clamp (genesis ``privacy.aggregate_clip_wh``): never binds for a household;
a generator member beyond it is summed at the bound, as the validators' check expects."""


@dataclass(frozen=True)
class Round:
    """One slot's result off the ledger: the signed partials and what the simulator knows."""

    slot: int
    inclusion: bytes
    included: tuple[str, ...]
    partials: tuple[PartialSum, ...]   # as signed, by the aggregators that signed
    true_total_wh: int
    """The included meters' readings, summed as each meter shared it (clamped by CLIP): the
    total an honest committee decodes."""
    first_aggregator_shares: dict[str, int]  # what aggregator 0 alone holds per meter
    clipped_wh: int = 0
    """What the clamp took off the included meters' readings (their unclamped sum is
    ``true_total_wh`` plus or minus this, per reading)."""


class FeederAggregation:
    """The feeder's committee for the run (one epoch) and its members' meter sessions."""

    def __init__(self, keys: PrivacyKeys, members: Sequence[Member], epoch: int = 0):
        self.keys = keys
        self.committee = Committee(FEEDER, epoch, community.AGGREGATOR_THRESHOLD,
                                   tuple(a.info() for a in keys.aggregator_keys),
                                   min_contributors=community.AGGREGATE_MIN_CONTRIBUTORS)
        self.sessions: dict[str, ContributorSession] = {}
        grants = []
        for m in members:
            s, g = establish_session(m.cp, self.committee, m.meter)
            self.sessions[m.cp] = s
            grants.append(g)
        registry = {m.cp: m.meter.public_key for m in members}
        self.aggregators = [Aggregator(accept_grants(a, self.committee, grants, registry))
                            for a in keys.aggregator_keys]

    def run_round(self, slot: int, net_import_wh: dict[str, int]) -> Round | None:
        """Meters seal, aggregators check and each signs its partial; ``net_import_wh`` is
        what each meter read. None when no aggregator would sign (too few meters)."""
        subs = [seal_reading(self.sessions[cp], slot, v, CLIP)  # the meter's OS randomness
                for cp, v in sorted(net_import_wh.items()) if cp in self.sessions]
        checks = [a.check(slot, subs) for a in self.aggregators]
        partials, inclusion = [], None
        for a in self.aggregators:
            a.forget_before(slot - 96)
            try:
                p, inclusion = a.partial(slot, checks)
            except AnonymitySetTooSmall:
                return None  # every honest aggregator refuses alike
            except PrivacyError:
                continue  # its own share of an included meter is unusable: it stays out
            partials.append(p)
        if inclusion is None:
            return None
        included = inclusion.included_meters
        first = self.aggregators[0]._rounds[slot].x_shares
        shared = {c: clip_reading(net_import_wh[c], CLIP) for c in included}
        return Round(slot, inclusion.digest(), included, tuple(partials),
                     sum(shared.values()), dict(first),
                     sum(abs(net_import_wh[c] - v) for c, v in shared.items()))

    def partial_txs(self, rnd: Round, values: Sequence[int]
                    ) -> list[tuple[SigningKey, dict[str, Any]]]:
        """(aggregator key, ``privacy/partial`` body) for each signed partial, with ``values``
        aligned to ``rnd.partials``. A value an attack changed is re-signed by its (lying)
        aggregator: a lie is still the aggregator's own signed statement."""
        out = []
        for p, v in zip(rnd.partials, values, strict=True):
            key = self.keys.aggregator_keys[p.position].signing_key
            if v != p.value:
                q = replace(p, value=v, signature=b"")
                p = replace(q, signature=key.sign(q.signed_message(), CTX_PARTIAL))
            out.append((key, {"slot": p.slot, "feeder": p.feeder_id, "epoch": p.epoch,
                              "inclusion": p.inclusion_digest, "meters": p.meters,
                              "value": p.value, "sig": p.signature}))
        return out
