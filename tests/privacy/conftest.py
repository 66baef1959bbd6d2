"""Shared fixtures for the privacy tests: a 7-aggregator committee (t = 3) and meters."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.privacy.aggregation import (
    AggregatorKeys,
    AggregatorSession,
    Committee,
    ContributorSession,
    EpochGrant,
    accept_grants,
    establish_session,
)
from gridledger.privacy.pseudonyms import TrusteeKeys, TrusteeSet


def _seed(*parts: object) -> bytes:
    import hashlib

    return hashlib.sha3_256(repr(parts).encode()).digest()


def make_aggregators(m: int, tag: str = "a") -> list[AggregatorKeys]:
    return [AggregatorKeys(f"{tag}{j}", SigningKey.from_seed("ml-dsa-65", _seed(tag, j)),
                           KemKey(_seed(tag, "kem", j) * 2)) for j in range(m)]


@dataclass
class Feeder:
    aggs: list[AggregatorKeys]
    committee: Committee
    device_keys: dict[str, SigningKey]
    sessions: dict[str, ContributorSession]
    grants: list[EpochGrant]
    agg_sessions: list[AggregatorSession]

    @property
    def registry(self) -> dict[str, PublicKey]:
        return {k: v.public_key for k, v in self.device_keys.items()}


def make_feeder(m: int = 7, t: int = 3, meters: int = 12, noise: bool = False,
                min_contributors: int = 5, fault_bound: int | None = None) -> Feeder:
    aggs = make_aggregators(m)
    committee = Committee("feeder-1", 3, t, tuple(a.info() for a in aggs),
                          min_contributors=min_contributors, fault_bound=fault_bound)
    dev = {f"m{i:03d}": SigningKey.from_seed("ml-dsa-44", _seed("meter", i))
           for i in range(meters)}
    sessions, grants = {}, []
    for mid, key in dev.items():
        s, g = establish_session(mid, committee, key)
        sessions[mid] = s
        grants.append(g)
    if noise:
        for a in aggs:
            s, g = establish_session(f"noise/{a.aggregator_id}", committee, a.signing_key)
            sessions[s.contributor_id] = s
            grants.append(g)
    reg = {k: v.public_key for k, v in dev.items()}
    agg_sessions = [accept_grants(a, committee, grants, reg) for a in aggs]
    return Feeder(aggs, committee, dev, sessions, grants, agg_sessions)


@pytest.fixture(scope="session")
def feeder() -> Feeder:
    return make_feeder()


@pytest.fixture(scope="session")
def trustee_keys() -> list[TrusteeKeys]:
    return [TrusteeKeys(f"t{j}", SigningKey.from_seed("ml-dsa-65", _seed("trustee", j)),
                        KemKey(_seed("trustee-kem", j) * 2)) for j in range(5)]


@pytest.fixture(scope="session")
def trustees(trustee_keys: list[TrusteeKeys]) -> TrusteeSet:
    return TrusteeSet("home", 3, tuple(t.info() for t in trustee_keys))


@pytest.fixture(scope="session")
def identity() -> SigningKey:
    return SigningKey.from_seed("ml-dsa-65", _seed("household", 1))
