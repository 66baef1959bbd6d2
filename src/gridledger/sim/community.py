"""The community: who sits at which connection point, with what equipment, and the genesis.

Members are connection points of the real network. Equipment comes from the network's own
data: PV where the cp's generation profile is non-zero, a battery where it has storage
(power = the largest slot of its SimBench storage profile, capacity = 2 h of that power, as
SimBench sizes them), EV chargers and heat pumps where a SimBench load at the bus follows an
EV (``HLS``/``APLS``/``WLS``) or heat-pump (``Air``/``Soil``) profile.

Which cps join: every cp with PV or a battery (they have something to trade), then a seeded
choice among the rest, up to ``participants``. The cps that do not join stay on the grid as
ordinary DSO customers: they load the network and are metered by the DSO, but do not trade.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from gridledger.committee import CommitteeNode, CommitteeSigner, committee_of, genesis_entry
from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.grid import GridModel, simbench_load_profiles
from gridledger.ledger.genesis import Genesis, make_genesis
from gridledger.privacy.aggregation import AggregatorKeys
from gridledger.privacy.pseudonyms import TrusteeInfo, TrusteeKeys, TrusteeSet
from gridledger.sim.fleet import Fleet
from gridledger.sim.keys import sim_key
from gridledger.sim.scenario import EVENING_PEAK_EV_KW, Scenario

MEMBER_BALANCE = 2_000_000_000      # micro: 2 000 units of community currency each
GRID_BALANCE = 10_000_000_000_000   # the DSO's grid account pays feed-in and compensation
BATTERY_HOURS = 2                   # SimBench: max_e_mwh = 2 h x p_mw
SETTLE_WINDOW_S = 1800              # two slots: the DSO's two-slot FDI test can still correct
TOU_PEAK_FEE = 20_000               # extra grid fee 17:00-21:00 (micro/kWh)
GRID_FEE_BOUNDS = {"grid_fee_min_micro_per_kwh": 10_000, "grid_fee_max_micro_per_kwh": 120_000}
"""What the DSO may set any slot's grid fee (flat + time of use) to at run time."""
DSO_NODES, DSO_THRESHOLD = 3, 2      # the DSO signs its duties 2-of-3 (no single DSO process)
TRUSTEES, TRUSTEE_THRESHOLD = 3, 2  # identity escrow: any 2 of 3 open, 1 learns nothing
# Privacy against t - 1 = 2 colluding aggregators; a total needs 2t - 1 = 5 agreeing partial
# sums, so 7 aggregators tolerate two liars or crashes (privacy.aggregation.Committee).
AGGREGATORS, AGGREGATOR_THRESHOLD = 7, 3
AGGREGATE_MIN_CONTRIBUTORS = 5
AGGREGATE_CLIP_WH = 10**6
"""Each meter clamps its slot reading into +-1 MWh before sharing it (genesis
``privacy.aggregate_clip_wh``; a household never comes near it, a multi-MW generator member
of a large network does: the validators compare the total with the readings clamped alike,
and report what the clamp took)."""
FEEDER = "feeder-1"                 # the community's meters, summed by secure aggregation
# Privacy mode's epoch pool: a member buys one ticket per pseudonym (one per slot of the day);
# each pseudonym draws an allowance that covers its slot's escrow, deposit and retail bill
# (a household imports at most ~3 kWh a slot: < 1 CU at retail), claimed back after the day.
EPOCH_SLOTS = 96
POOL_ALLOWANCE_MICRO = 5_000_000
POOL_MAX_TICKETS = 2 * EPOCH_SLOTS   # a member on watch still covers every slot (half)
FOREIGN_COMMUNITY, FOREIGN_DSO = "foreign-town", "foreign-dso"  # EV roaming partner


@dataclass(frozen=True)
class Battery:
    power_wh: int        # per 15-minute slot
    capacity_wh: int
    efficiency_pct: int = 90  # charging losses


@dataclass
class Member:
    index: int
    name: str
    cp: str
    key: SigningKey
    meter: SigningKey
    role: str                       # "prosumer" | "consumer"
    der: tuple[str, ...]
    battery: Battery | None
    strategy: str = "truthful"       # truthful | zip | battery
    honest: bool = True
    attack: str | None = None

    @property
    def address(self) -> bytes:
        return self.key.address


def _kem(seed: int, role: str, index: int) -> KemKey:
    return KemKey(tagged_hash("gl/sim-kem", str(seed).encode(), role.encode(), str(index).encode())
                  + tagged_hash("gl/sim-kem/2", str(seed).encode(), role.encode(),
                                str(index).encode()))


@dataclass(frozen=True)
class PrivacyKeys:
    """The privacy roles' keys: trustees (identity escrow), the secure-aggregation committee,
    the home DSO's roaming billing key and the foreign DSO the community roams with."""

    trustee_keys: tuple[TrusteeKeys, ...]
    trustee_set: TrusteeSet
    aggregator_keys: tuple[AggregatorKeys, ...]
    billing_kem: KemKey
    foreign_dso_key: SigningKey
    dso_kem: KemKey
    """The DSO's ML-KEM key: meters seal each connection point's reading to it (privacy mode)."""

    @staticmethod
    def make(seed: int, community: str) -> PrivacyKeys:
        tks = tuple(TrusteeKeys(f"trustee-{j}", sim_key(seed, "trustee", j, alg="ml-dsa-44"),
                                _kem(seed, "trustee", j)) for j in range(TRUSTEES))
        ts = TrusteeSet(community, TRUSTEE_THRESHOLD,
                        tuple(TrusteeInfo(t.trustee_id, t.signing_key.public_key,
                                          t.kem_key.public_key) for t in tks))
        aks = tuple(AggregatorKeys(f"aggregator-{j}", sim_key(seed, "aggregator", j, alg="ml-dsa-44"),
                                   _kem(seed, "aggregator", j)) for j in range(AGGREGATORS))
        return PrivacyKeys(tks, ts, aks, _kem(seed, "billing", 0),
                           sim_key(seed, FOREIGN_DSO, 0, alg="ml-dsa-44"), _kem(seed, "dso", 0))

    def genesis_participants(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for t in self.trustee_keys:
            k = t.signing_key
            out.append({"alg": k.alg, "pk": k.public_key.raw, "roles": ["trustee"],
                        "name": t.trustee_id})
        for a in self.aggregator_keys:
            k = a.signing_key
            out.append({"alg": k.alg, "pk": k.public_key.raw, "roles": ["aggregator"],
                        "name": a.aggregator_id})
        return out

    def genesis_section(self, community: str, cps: list[str]) -> dict[str, Any]:
        f = self.foreign_dso_key
        return {
            "community": community, "threshold": TRUSTEE_THRESHOLD,
            "trustees": [{"id": t.trustee_id, "addr": t.signing_key.address,
                          "kem_pk": t.kem_key.public_key} for t in self.trustee_keys],
            "aggregators": [{"id": a.aggregator_id, "addr": a.signing_key.address,
                             "kem_pk": a.kem_key.public_key} for a in self.aggregator_keys],
            "aggregator_threshold": AGGREGATOR_THRESHOLD,
            "aggregate_min_contributors": AGGREGATE_MIN_CONTRIBUTORS,
            "aggregate_clip_wh": AGGREGATE_CLIP_WH,
            "allowance_micro": POOL_ALLOWANCE_MICRO, "max_tickets": POOL_MAX_TICKETS,
            "epoch_slots": EPOCH_SLOTS, "payout": "bill",
            "feeders": [[FEEDER, sorted(cps)]],
            "roaming_partners": [{"community": FOREIGN_COMMUNITY, "dso_id": FOREIGN_DSO,
                                  "alg": f.alg, "pk": f.public_key.raw}]}


@dataclass
class Community:
    members: list[Member]
    validators: list[SigningKey]
    dso: CommitteeSigner
    """The DSO as a k-of-n committee: signs like a key with k signatures of its running nodes."""
    genesis: Genesis
    outsiders: tuple[str, ...]
    """Connection points that do not trade (ordinary DSO customers)."""
    privacy_keys: PrivacyKeys | None = None
    extra_keys: dict[str, SigningKey] = field(default_factory=dict)
    fleet: Fleet | None = None
    """The meters' vendor and firmware (genesis ``firmware`` section; ``sim/fleet.py``)."""
    dso_roaming_key: SigningKey | None = None
    """The home DSO's off-ledger key for roaming guarantees (verified by foreign DSOs)."""

    @property
    def dso_nodes(self) -> list[CommitteeNode]:
        """The DSO committee's nodes (a ``crash`` scenario stops one)."""
        return self.dso.nodes

    def by_address(self) -> dict[bytes, Member]:
        return {m.address: m for m in self.members}

    def by_cp(self) -> dict[str, Member]:
        return {m.cp: m for m in self.members}


@lru_cache(maxsize=8)
def _simbench_tags(code: str) -> dict[int, frozenset[str]]:
    """Bus -> {"ev", "heat-pump"} from a SimBench net's load profile names (the net
    ``load_grid`` already loaded: ``grid.simbench_load_profiles``)."""
    tags: dict[int, set[str]] = {}
    for bus, profiles in simbench_load_profiles(code).items():
        for prof in profiles:
            if prof.startswith(("HLS", "APLS", "WLS")):
                tags.setdefault(bus, set()).add("ev")
            elif prof.startswith(("Air", "Soil")):
                tags.setdefault(bus, set()).add("heat-pump")
    return {b: frozenset(t) for b, t in tags.items()}


def equipment(model: GridModel) -> dict[str, tuple[tuple[str, ...], Battery | None]]:
    """Per cp: its DER tags and battery, from the network's data."""
    tags = _simbench_tags(model.name.split("+")[0])  # a stressed copy keeps its base's tags
    out: dict[str, tuple[tuple[str, ...], Battery | None]] = {}
    for i, cp in enumerate(model.cps):
        der: list[str] = []
        battery = None
        if int(model.year.pv_peak_wh[i]) > 0:
            der.append("pv")
        peak = int(model.year.storage_peak_wh[i])
        if peak > 0:
            der.append("battery")
            battery = Battery(power_wh=peak, capacity_wh=peak * 4 * BATTERY_HOURS)
        der += sorted(tags.get(cp.bus, ()))
        out[cp.cp_id] = (tuple(der), battery)
    return out


def choose_members(model: GridModel, sc: Scenario) -> list[str]:
    """The cps that join: DER owners first, then a seeded choice of the rest (sorted ids)."""
    eq = equipment(model)
    with_der = [cp for cp in model.cp_ids if {"pv", "battery"} & set(eq[cp][0])]
    rest = [cp for cp in model.cp_ids if cp not in with_der]
    random.Random(f"members/{sc.seed}").shuffle(rest)
    chosen = (with_der + rest)[: sc.participants]
    return sorted(chosen)


def assign_strategies(members: list[Member], seed: int) -> None:
    """Battery owners arbitrage; the others are split between truthful and ZIP traders."""
    rng = random.Random(f"strategies/{seed}")
    for m in members:
        if m.battery is not None:
            m.strategy = "battery"
        else:
            m.strategy = "zip" if rng.random() < 0.5 else "truthful"


def household_net_wh(model: GridModel, cp: str, slot: int) -> int:
    """Forecast net injection of ``cp`` in ``slot`` without storage (PV - load, Wh): the
    SimBench storage profile is replaced by the agent's own battery."""
    i, s = model.cp_index(cp), model.column(slot)
    return int(model.pv_wh[i, s]) - int(model.load_wh[i, s])


def forecast_wh_by_cp(model: GridModel, member_cps: Collection[str], slot: int) -> dict[str, int]:
    """What the DSO expects every cp to inject in ``slot`` without a market (Wh, > 0
    export): members PV - load (``household_net_wh``: their batteries are the agents' own,
    not SimBench's storage profile), outsiders their SimBench profile."""
    fc = model.forecast_wh_by_cp(slot)
    return {cp: household_net_wh(model, cp, slot) if cp in member_cps else int(fc[cp])
            for cp in model.cp_ids}


def demo_params(sc: Scenario) -> dict[str, Any]:
    """The genesis ledger parameters of a demo run: the simulator's own (two-slot settlement
    window, evening time-of-use fee and its bounds, the scenario's mechanism), then
    ``sc.params``."""
    return {"settle_window_s": SETTLE_WINDOW_S, "mechanism": sc.mechanism,
            "grid_fee_tou_micro_per_kwh": tou_fees(), **GRID_FEE_BOUNDS, **dict(sc.params)}


def tou_fees() -> list[int]:
    """Time-of-use grid fee per slot of the day: an evening-peak surcharge."""
    return [TOU_PEAK_FEE if 68 <= s < 84 else 0 for s in range(96)]


def certificates_section(chain_id: str, model: GridModel) -> dict[str, Any]:
    """The issuing body's metadata for granular certificates: the validator quorum issues,
    SimBench grids are German (bidding zone DE-LU), ledger slots count from 1 Jan 2016."""
    return {"issuing_body": f"{chain_id} validator quorum", "country_of_issuance": "DE",
            "connected_grid_identification": f"SimBench {model.name}",
            "issue_market_zone": "DE-LU", "time_origin_utc": "2016-01-01T00:00:00Z"}


HEAT_PUMP_WH = 500          # a 2 kW (electrical) heat pump over a 15-minute slot
WALLBOX_WH = 2_750          # an 11 kW wallbox over a 15-minute slot


def flex_section(members: list[Member], sc: Scenario) -> dict[str, Any]:
    """Genesis section ``flex``: the flexible devices the DSO registered per member cp (EV
    chargers: SimBench's EV profiles, or every cp in the evening-peak scenario, which adds a
    7.4 kW charger everywhere; heat pumps: SimBench's heat-pump profiles)."""
    ev_wh = int(EVENING_PEAK_EV_KW * 250) if sc.scenario == "evening-peak" else WALLBOX_WH
    res: list[list[Any]] = []
    for m in sorted(members, key=lambda m: m.cp):
        if sc.scenario == "evening-peak" or "ev" in m.der:
            res.append([m.cp, "ev", ev_wh])
        if "heat-pump" in m.der:
            res.append([m.cp, "heat-pump", HEAT_PUMP_WH])
    return {"resources": res}


def build_community(model: GridModel, sc: Scenario) -> Community:
    eq = equipment(model)
    cps = choose_members(model, sc)
    members = []
    for i, cp in enumerate(cps):
        der, battery = eq[cp]
        role = "prosumer" if {"pv", "battery"} & set(der) else "consumer"
        members.append(Member(i, f"h{i + 1:02d}", cp, sim_key(sc.seed, "member", i),
                              sim_key(sc.seed, "meter", i, alg="ml-dsa-44"), role, der, battery))
    assign_strategies(members, sc.seed)
    validators = [sim_key(sc.seed, "validator", i) for i in range(sc.validators)]
    dso_keys = [sim_key(sc.seed, "dso", j) for j in range(DSO_NODES)]
    committee = committee_of(DSO_THRESHOLD, dso_keys)
    dso = CommitteeSigner(committee, [CommitteeNode(f"dso-{j}", k)
                                      for j, k in enumerate(dso_keys)])
    parts: list[dict[str, Any]] = [
        {"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"validator-{i}"}
        for i, k in enumerate(validators)]
    parts.append(genesis_entry(committee, "dso", ["dso"], GRID_BALANCE))
    for m in members:
        # under privacy mode the registry does not say who has PV or a battery: every member
        # may sell (its pseudonyms may anyway), so a role anchors no pseudonym to a class
        role = "prosumer" if sc.privacy else m.role
        parts.append({"alg": m.key.alg, "pk": m.key.public_key.raw, "roles": [role],
                      "name": m.name, "cp": m.cp, "balance_micro": MEMBER_BALANCE})
        parts.append({"alg": m.meter.alg, "pk": m.meter.public_key.raw, "roles": ["meter"],
                      "name": f"meter-{m.name}", "meter_of": m.cp})
    privacy = PrivacyKeys.make(sc.seed, sc.chain_id)
    parts += privacy.genesis_participants()
    fleet = Fleet.make(sc.seed, [(m.cp, m.meter, m.der) for m in members])
    parts += fleet.genesis_participants()
    params = demo_params(sc)
    genesis = make_genesis(sc.chain_id, parts, params,
                           sections={"privacy": privacy.genesis_section(sc.chain_id, cps),
                                     "certificates": certificates_section(sc.chain_id, model),
                                     "firmware": fleet.genesis_section(),
                                     "surveillance": {},
                                     "flex": flex_section(members, sc)})
    outsiders = tuple(cp for cp in model.cp_ids if cp not in set(cps))
    return Community(members, validators, dso, genesis, outsiders, privacy, fleet=fleet,
                     dso_roaming_key=sim_key(sc.seed, "dso-roaming", 0))
