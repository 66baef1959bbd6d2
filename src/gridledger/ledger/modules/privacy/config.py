"""Privacy module configuration: the genesis ``privacy`` section, checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridledger.crypto.shamir import unique_agreement
from gridledger.crypto.sig import PQ_SIG_ALGS, PublicKey
from gridledger.errors import ConfigError, CryptoError

PAYOUTS = ("claims", "bill")
"""How an epoch pool pays its owners (``PrivacyConfig.payout``)."""


@dataclass(frozen=True)
class Member:
    """A trustee or aggregator: its id, ledger address (its ML-DSA key) and ML-KEM key."""

    id: str
    addr: bytes
    kem_pk: bytes


@dataclass(frozen=True)
class RoamingPartner:
    """A foreign community this one has a roaming agreement with, and its DSO's pinned key
    (the key its roaming claims are signed with, ``privacy.roaming.settle_roaming_claim``)."""

    community: str
    dso_id: str
    alg: str
    pk: bytes

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.alg, self.pk)


@dataclass(frozen=True)
class PrivacyConfig:
    """What genesis fixes for pseudonymous trading and secure aggregation.

    * ``trustees`` / ``threshold``: k-of-n identity escrow and batch certificates;
    * ``allowance_micro``: money the epoch pool gives each pseudonym to trade and pay its
      slot's bill with; ``max_tickets``: pseudonyms per member and epoch (good tier);
    * ``epoch_slots``: slots per epoch (a day = 96); ``close_delay_s``: after the epoch's
      last settlement, how long its pseudonyms can still file disputes before their
      balances return to the pool; ``claim_window_s``: how long members have to claim;
    * ``aggregators`` / ``aggregator_threshold``: the secure-aggregation committee;
      ``aggregate_min_contributors``: fewest meters a partial sum may cover (anonymity
      set); ``aggregator_fault_bound``: colluding aggregators a total must withstand
      (default threshold - 1; see ``privacy.aggregation.Committee``);
      ``feeders``: feeder -> connection points (what an aggregate must add up to);
      ``aggregate_tolerance_wh``: the DP-noise bound of a published total;
      ``aggregate_clip_wh``: each meter clamps its slot reading into [-clip, +clip] Wh
      before sharing it (``privacy.dp.clip_reading``; a per-meter, per-slot bound, so it
      does not grow with the feeder), and the total is compared with the feeder's readings
      clamped alike — a reading beyond the bound is reported (``clipped_wh``), not taken
      for a wrong total (0: meters do not clip, readings are compared as they are);
    * ``roaming_partners``: foreign communities whose DSOs may bill this community for its
      members' EV charging (``privacy/roaming_charge``); ``roaming_hold_s``: how long a
      booked roaming authorisation holds the member's money before it is released;
    * ``payout``: how an epoch's pool pays its owners. ``claims``: each member claims its
      deposit less the allowances drawn plus its pseudonyms' finals (public amounts, checked
      by adding up; a pool dispute opens every pseudonym otherwise). ``bill``: each member
      claims back at most its deposit; the rest of the pool — the community's net market
      result — settles with the grid account, and the DSO puts each household's share on
      its energy bill. With ``claims`` a member's claim is its daily net market result in
      the clear, which anchors its pseudonyms (docs/privacy.md); ``bill`` puts no
      per-household amount on the ledger.
    """

    community: str
    threshold: int
    trustees: tuple[Member, ...]
    allowance_micro: int
    max_tickets: int
    epoch_slots: int
    close_delay_s: int
    claim_window_s: int
    aggregators: tuple[Member, ...]
    aggregator_threshold: int
    feeders: tuple[tuple[str, tuple[str, ...]], ...]
    aggregate_tolerance_wh: int
    roaming_partners: tuple[RoamingPartner, ...] = ()
    aggregate_min_contributors: int = 5
    aggregator_fault_bound: int = 0
    roaming_hold_s: int = 7 * 86_400
    payout: str = "claims"
    aggregate_clip_wh: int = 0

    def clip_reading(self, net_wh: int) -> int:
        """A meter's slot reading (net import, Wh) as its meter shares it: clamped into
        [-aggregate_clip_wh, +aggregate_clip_wh], or as it is when no bound is set."""
        c = self.aggregate_clip_wh
        return min(max(net_wh, -c), c) if c else net_wh

    def aggregate_min_agree(self, n: int) -> int:
        """Partial sums out of ``n`` that must agree on a total (``Committee.min_agree``)."""
        return max(self.aggregator_threshold + self.aggregator_fault_bound,
                   unique_agreement(n, self.aggregator_threshold))

    def trustee_index(self, addr: bytes) -> int | None:
        for i, t in enumerate(self.trustees):
            if t.addr == addr:
                return i
        return None

    def aggregator_index(self, addr: bytes) -> int | None:
        for i, a in enumerate(self.aggregators):
            if a.addr == addr:
                return i
        return None

    def feeder_cps(self, feeder: str) -> tuple[str, ...] | None:
        for f, cps in self.feeders:
            if f == feeder:
                return cps
        return None

    def roaming_partner(self, community: str, dso_id: str) -> RoamingPartner | None:
        for r in self.roaming_partners:
            if r.community == community and r.dso_id == dso_id:
                return r
        return None

    def roaming_dso_keys(self) -> dict[tuple[str, str], PublicKey]:
        """(community, DSO id) -> pinned key, as ``settle_roaming_claim`` takes them."""
        return {(r.community, r.dso_id): r.public_key for r in self.roaming_partners}

    def to_obj(self) -> dict[str, Any]:
        def members(ms: tuple[Member, ...]) -> list[dict[str, Any]]:
            return [{"id": m.id, "addr": m.addr, "kem_pk": m.kem_pk} for m in ms]

        obj = {"community": self.community, "threshold": self.threshold,
               "trustees": members(self.trustees), "allowance_micro": self.allowance_micro,
               "max_tickets": self.max_tickets, "epoch_slots": self.epoch_slots,
               "close_delay_s": self.close_delay_s, "claim_window_s": self.claim_window_s,
               "aggregators": members(self.aggregators),
               "aggregator_threshold": self.aggregator_threshold,
               "feeders": [[f, list(cps)] for f, cps in self.feeders],
               "aggregate_tolerance_wh": self.aggregate_tolerance_wh,
               "aggregate_min_contributors": self.aggregate_min_contributors,
               "aggregator_fault_bound": self.aggregator_fault_bound,
               "roaming_hold_s": self.roaming_hold_s}
        if self.payout != "claims":  # absent when default: earlier chains keep their roots
            obj["payout"] = self.payout
        if self.aggregate_clip_wh:  # absent when 0: earlier chains keep their roots
            obj["aggregate_clip_wh"] = self.aggregate_clip_wh
        if self.roaming_partners:  # absent when empty: earlier chains keep their state roots
            obj["roaming_partners"] = [{"community": r.community, "dso_id": r.dso_id,
                                        "alg": r.alg, "pk": r.pk}
                                       for r in self.roaming_partners]
        return obj


def _int(raw: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = raw.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError(f"privacy.{name} must be an integer in [{lo}, {hi}]")
    return v


def _members(raw: Any, what: str) -> tuple[Member, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"privacy.{what} must be a list")
    out = []
    for m in raw:
        if (not isinstance(m, dict) or not isinstance(m.get("id"), str)
                or not isinstance(m.get("addr"), bytes) or len(m["addr"]) != 32
                or not isinstance(m.get("kem_pk"), bytes)):
            raise ConfigError(f"privacy.{what}: each needs id, a 32-byte addr and kem_pk")
        out.append(Member(m["id"], m["addr"], m["kem_pk"]))
    if len({m.id for m in out}) != len(out) or len({m.addr for m in out}) != len(out):
        raise ConfigError(f"privacy.{what}: ids and addresses must be distinct")
    return tuple(out)


def _partners(raw: Any) -> tuple[RoamingPartner, ...]:
    if not isinstance(raw, list):
        raise ConfigError("privacy.roaming_partners must be a list")
    out = []
    for r in raw:
        if (not isinstance(r, dict) or set(r) != {"community", "dso_id", "alg", "pk"}
                or not isinstance(r["community"], str) or not 1 <= len(r["community"]) <= 64
                or not isinstance(r["dso_id"], str) or not 1 <= len(r["dso_id"]) <= 64
                or r["alg"] not in PQ_SIG_ALGS or not isinstance(r["pk"], bytes)):
            raise ConfigError("privacy.roaming_partners: each needs community and dso_id "
                              "(1..64 characters), an ML-DSA alg and its pk")
        try:
            PublicKey(r["alg"], r["pk"])
        except CryptoError as exc:
            raise ConfigError(f"privacy.roaming_partners: {exc}") from exc
        out.append(RoamingPartner(r["community"], r["dso_id"], r["alg"], r["pk"]))
    if len({(r.community, r.dso_id) for r in out}) != len(out):
        raise ConfigError("privacy.roaming_partners: (community, dso_id) must be distinct")
    return tuple(sorted(out, key=lambda r: (r.community, r.dso_id)))


def parse_config(raw: dict[str, Any]) -> PrivacyConfig:
    """Check and build the config; raises ``ConfigError`` naming the first bad field."""
    community = raw.get("community")
    if not isinstance(community, str) or not 1 <= len(community) <= 64:
        raise ConfigError("privacy.community must be a name of 1..64 characters")
    trustees = _members(raw.get("trustees"), "trustees")
    threshold = _int(raw, "threshold", 0, 1, 32)
    if not threshold <= len(trustees) <= 32:
        raise ConfigError("privacy: need threshold <= number of trustees <= 32")
    aggregators = _members(raw.get("aggregators", []), "aggregators")
    agg_t = _int(raw, "aggregator_threshold", min(2, max(1, len(aggregators))), 1, 32)
    if aggregators and agg_t > len(aggregators):
        raise ConfigError("privacy: aggregator_threshold exceeds the committee size")
    min_contributors = _int(raw, "aggregate_min_contributors", 5, 2, 10**6)
    fault_bound = _int(raw, "aggregator_fault_bound", agg_t - 1, 0, 31)
    if fault_bound >= agg_t:
        raise ConfigError("privacy: aggregator_fault_bound must be below aggregator_threshold")
    if aggregators and max(agg_t + fault_bound,
                           unique_agreement(len(aggregators), agg_t)) > len(aggregators):
        raise ConfigError(f"privacy: {len(aggregators)} aggregators cannot reach the "
                          f"{agg_t + fault_bound} agreeing partial sums a total needs "
                          "(aggregator_threshold + aggregator_fault_bound)")
    feeders_raw = raw.get("feeders", [])
    feeders: list[tuple[str, tuple[str, ...]]] = []
    if not isinstance(feeders_raw, list):
        raise ConfigError("privacy.feeders must be a list of [feeder, [cp, ...]]")
    for f in feeders_raw:
        if (not isinstance(f, (list, tuple)) or len(f) != 2 or not isinstance(f[0], str)
                or not isinstance(f[1], (list, tuple))
                or not all(isinstance(c, str) for c in f[1])):
            raise ConfigError("privacy.feeders must be a list of [feeder, [cp, ...]]")
        feeders.append((f[0], tuple(sorted(f[1]))))
    payout = raw.get("payout", "claims")
    if payout not in PAYOUTS:
        raise ConfigError(f"privacy.payout must be one of {', '.join(PAYOUTS)}")
    return PrivacyConfig(
        payout=payout, community=community, threshold=threshold, trustees=trustees,
        allowance_micro=_int(raw, "allowance_micro", 2_000_000, 1, 10**12),
        max_tickets=_int(raw, "max_tickets", 96, 1, 10_000),
        epoch_slots=_int(raw, "epoch_slots", 96, 1, 10_000),
        close_delay_s=_int(raw, "close_delay_s", 1800, 0, 10**7),
        claim_window_s=_int(raw, "claim_window_s", 1800, 1, 10**7),
        aggregators=aggregators, aggregator_threshold=agg_t,
        feeders=tuple(sorted(feeders)),
        aggregate_tolerance_wh=_int(raw, "aggregate_tolerance_wh", 0, 0, 10**9),
        roaming_partners=_partners(raw.get("roaming_partners", [])),
        aggregate_min_contributors=min_contributors, aggregator_fault_bound=fault_bound,
        roaming_hold_s=_int(raw, "roaming_hold_s", 7 * 86_400, 900, 10**8),
        aggregate_clip_wh=_int(raw, "aggregate_clip_wh", 0, 0, 10**12))
