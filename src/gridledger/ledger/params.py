"""Chain parameters: names, defaults, the checks a genesis document must pass, and where
they live in state.

Every parameter is an integer (or a list of integers, an address, a mechanism name) so
that execution never touches floats. Defaults are the values of a 15-minute community
market priced in micro-units of the community currency per kWh.

Parameters are part of the ledger core, like ``State`` and ``BlockContext``: every module
reads them (``load_params``) without depending on another module; the governance module
is their only writer (genesis today; votes activated at a height later).

State
  ``gov/params``  the non-default parameters (canonical CBOR map); absent when all default
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

from gridledger.errors import ConfigError
from gridledger.ledger import codec
from gridledger.ledger.state import State
from gridledger.market import Mechanism

MECHANISMS = ("uniform", "pay_as_bid", "continuous")
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Params:
    """Market, metering, reputation, dispute and onboarding parameters (genesis ``params``)."""

    # -- market timeline (seconds of block ``slot_time``) --
    slot_seconds: int = 900
    gate_closure_s: int = 300          # orders for slot t close this long before t starts
    reveal_window_s: int = 150         # sealed-bid reveals after gate closure; then clearing
    settle_window_s: int = 900         # meter readings for slot t until end(t) + this
    order_horizon_slots: int = 96      # how far ahead orders may be placed
    max_orders_per_slot: int = 4       # per participant, orders + commitments
    mechanism: Mechanism = "uniform"
    # -- prices (micro-units per kWh) --
    grid_fee_flat_micro_per_kwh: int = 30_000
    grid_fee_tou_micro_per_kwh: tuple[int, ...] = ()
    # network-distance component: zone of each connection point, fee per (unordered) pair
    # of zones, and the fee for pairs not listed (e.g. "across the transformer")
    grid_fee_zones: tuple[tuple[str, str], ...] = ()                    # (cp, zone)
    grid_fee_distance_micro_per_kwh: tuple[tuple[str, str, int], ...] = ()  # (zone, zone, fee)
    grid_fee_default_distance_micro_per_kwh: int = 0
    # bounds on the grid-fee rate of any slot (flat + time-of-use entry) the DSO may set at
    # run time (governance/set_grid_fees); max 0: fees are fixed at genesis
    grid_fee_min_micro_per_kwh: int = 0
    grid_fee_max_micro_per_kwh: int = 0
    retail_import_micro_per_kwh: int = 250_000
    feed_in_micro_per_kwh: int = 80_000
    imbalance_micro_per_kwh: int = 350_000
    deposit_micro_per_kwh: int = 350_000   # seller delivery deposit per kWh offered
    # -- fixed amounts (micro-units) --
    commit_deposit_micro: int = 20_000
    dispute_fee_micro: int = 50_000
    dispute_window_s: int = 86_400
    # -- onboarding --
    endorsements_required: int = 2
    endorse_min_reputation: int = 400
    # -- reputation (scores 0..1000, 500 neutral) --
    rep_watch_below: int = 400
    rep_restrict_below: int = 250
    rep_suspend_below: int = 100
    rep_deposit_pct_watch: int = 150
    rep_deposit_pct_restrict: int = 300
    rep_gain_trade: int = 5            # per unit of economic substance settled (below)
    # a unit is rep_gain_unit_wh delivered AND rep_gain_unit_micro paid for it, per slot:
    # 1 Wh trades, or trades at price 0, earn nothing (market: issue 21.6)
    rep_gain_unit_wh: int = 500
    rep_gain_unit_micro: int = 25_000
    rep_gain_max_per_slot: int = 15    # the most a participant's score rises in one slot
    rep_loss_non_delivery: int = 100
    rep_loss_missing_reading: int = 20
    rep_loss_non_payment: int = 100
    rep_loss_dispute: int = 150
    rep_loss_forfeit: int = 50
    rep_loss_rejected: int = 2
    rep_loss_market_abuse: int = 150   # per surveillance finding naming the participant (lab)
    appeal_clean_slots: int = 8        # before the first self-appeal; doubles per appeal granted
    appeal_clean_slots_max: int = 128  # ... up to this many
    appeal_restore_score: int = 400
    appeal_quorum: int = 2
    # -- retail credit (market: issue 21.6) --
    # a metered participant keeps retail_hold_slots x its recent peak import (at least
    # retail_hold_min_wh) at the retail price locked, less retail_credit_micro of credit
    retail_hold_slots: int = 3
    retail_hold_min_wh: int = 500
    retail_credit_micro: int = 0
    # -- accounts --
    grid_account: bytes | None = None  # DSO / community fund; default: first dso in genesis
    # -- validator set (governance votes) --
    min_validators: int = 4               # a removal may not leave fewer (4 = 3f+1, f = 1)
    valset_vote_expiry_blocks: int = 100  # a proposal takes votes for this many blocks
    # -- module upgrades (governance v3) --
    upgrade_notice_blocks: int = 20       # an upgrade activates at least this many blocks on

    def to_obj(self) -> dict[str, Any]:
        """The canonical-CBOR form (tuples as lists) of the non-default fields."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v != f.default:
                out[f.name] = ([list(x) if isinstance(x, tuple) else x for x in v]
                               if isinstance(v, tuple) else v)
        return out


PARAM_NAMES = frozenset(f.name for f in fields(Params))
_SPECIAL = {"mechanism", "grid_fee_tou_micro_per_kwh", "grid_account", "grid_fee_zones",
            "grid_fee_distance_micro_per_kwh"}
MAX_PARAM = 10**12


def parse_params(raw: dict[str, Any]) -> Params:
    """Build ``Params`` from a mapping of overrides; unknown names are ignored.

    Raises:
        ConfigError: naming the first parameter of the wrong type, out of range, or
            inconsistent with another.
    """
    kw: dict[str, Any] = {}
    for name in sorted(raw):
        if name not in PARAM_NAMES:
            continue  # other components (node, grid) keep their own parameters here
        kw[name] = parse_value(name, raw[name])
    p = Params(**kw)
    check_params(p)
    return p


def parse_value(name: str, v: Any) -> Any:
    """One parameter's value in its canonical type; ``ConfigError`` naming the parameter
    for a wrong type or range (cross-parameter rules: ``check_params``)."""
    if name == "mechanism":
        if v not in MECHANISMS:
            raise ConfigError(f"param mechanism must be one of {', '.join(MECHANISMS)}")
    elif name == "grid_fee_tou_micro_per_kwh":
        if not isinstance(v, (list, tuple)) or not all(_is_int(x) and 0 <= x <= 10**9 for x in v):
            raise ConfigError("param grid_fee_tou_micro_per_kwh must be a list of ints in [0, 1e9]")
        v = tuple(v)
    elif name == "grid_fee_zones":
        if not isinstance(v, (list, tuple)) or not all(
                isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(y, str) for y in x)
                for x in v):
            raise ConfigError("param grid_fee_zones must be a list of [cp, zone] strings")
        v = tuple(sorted((str(a), str(b)) for a, b in v))
    elif name == "grid_fee_distance_micro_per_kwh":
        if not isinstance(v, (list, tuple)) or not all(
                isinstance(x, (list, tuple)) and len(x) == 3 and isinstance(x[0], str)
                and isinstance(x[1], str) and _is_int(x[2]) and 0 <= x[2] <= 10**9 for x in v):
            raise ConfigError("param grid_fee_distance_micro_per_kwh must be a list of "
                              "[zone, zone, fee in 0..1e9]")
        v = tuple(sorted((str(a), str(b), int(c)) for a, b, c in v))
    elif name == "grid_account":
        if not isinstance(v, bytes) or len(v) != 32:
            raise ConfigError("param grid_account must be a 32-byte address")
    elif not _is_int(v) or not 0 <= v <= MAX_PARAM:
        raise ConfigError(f"param {name} must be an integer in [0, {MAX_PARAM}]")
    return v


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_params(p: Params) -> None:
    """Cross-parameter rules; each message names the rule."""
    if p.slot_seconds < 1:
        raise ConfigError("param slot_seconds must be >= 1")
    if not 1 <= p.reveal_window_s <= p.gate_closure_s:
        # clearing happens at gate closure + reveal window, which must be before slot start
        raise ConfigError("param reveal_window_s must be in [1, gate_closure_s]")
    if p.settle_window_s < 1 or p.max_orders_per_slot < 1 or p.order_horizon_slots < 1:
        raise ConfigError("settle_window_s, max_orders_per_slot, order_horizon_slots must be >= 1")
    tou = p.grid_fee_tou_micro_per_kwh
    if tou and len(tou) != SECONDS_PER_DAY // p.slot_seconds:
        raise ConfigError("param grid_fee_tou_micro_per_kwh needs one entry per slot of the day")
    for name in ("grid_fee_flat_micro_per_kwh", "retail_import_micro_per_kwh",
                 "feed_in_micro_per_kwh", "imbalance_micro_per_kwh"):
        if getattr(p, name) > 10**9:
            raise ConfigError(f"param {name} must be <= 1e9 (market price bound)")
    if p.imbalance_micro_per_kwh < p.retail_import_micro_per_kwh:
        # a seller who does not deliver must never do better than one who buys at retail
        raise ConfigError("param imbalance_micro_per_kwh must be >= retail_import_micro_per_kwh")
    if p.deposit_micro_per_kwh < p.retail_import_micro_per_kwh:
        # the deposit must cover the buyer's replacement cost, so buyers never lose
        raise ConfigError("param deposit_micro_per_kwh must be >= retail_import_micro_per_kwh")
    if not 0 <= p.rep_suspend_below <= p.rep_restrict_below <= p.rep_watch_below <= 1000:
        raise ConfigError("reputation thresholds must satisfy suspend <= restrict <= watch <= 1000")
    if not 0 <= p.appeal_restore_score <= 1000 or p.appeal_quorum < 1:
        raise ConfigError("appeal_restore_score in [0, 1000] and appeal_quorum >= 1")
    if p.rep_gain_unit_wh < 1 or p.rep_gain_unit_micro < 1:
        raise ConfigError("rep_gain_unit_wh and rep_gain_unit_micro must be >= 1")
    if p.appeal_clean_slots_max < p.appeal_clean_slots:
        raise ConfigError("param appeal_clean_slots_max must be >= appeal_clean_slots")
    if p.retail_hold_slots > 96 or p.retail_hold_min_wh > 10**9:
        raise ConfigError("retail_hold_slots <= 96 and retail_hold_min_wh <= 1e9")
    if p.endorsements_required < 1:
        raise ConfigError("param endorsements_required must be >= 1 (no single registrar)")
    if p.min_validators < 1:
        raise ConfigError("param min_validators must be >= 1 (a chain needs a validator)")
    if p.valset_vote_expiry_blocks < 1:
        raise ConfigError("param valset_vote_expiry_blocks must be >= 1")
    if p.upgrade_notice_blocks < 2:
        raise ConfigError("param upgrade_notice_blocks must be >= 2 (votes need a block)")
    if p.grid_fee_max_micro_per_kwh:
        lo, hi = p.grid_fee_min_micro_per_kwh, p.grid_fee_max_micro_per_kwh
        if not lo <= hi <= 10**9:
            raise ConfigError("grid fee bounds must satisfy min <= max <= 1e9")
        for rate in fee_rates(p.grid_fee_flat_micro_per_kwh, p.grid_fee_tou_micro_per_kwh):
            if not lo <= rate <= hi:
                raise ConfigError(f"the genesis grid fee {rate} is outside the bounds "
                                  f"[{lo}, {hi}]")
    elif p.grid_fee_min_micro_per_kwh:
        raise ConfigError("param grid_fee_min_micro_per_kwh needs grid_fee_max_micro_per_kwh")


NOT_VOTABLE = frozenset({
    "slot_seconds", "grid_account",
    "grid_fee_flat_micro_per_kwh", "grid_fee_tou_micro_per_kwh", "grid_fee_zones",
    "grid_fee_distance_micro_per_kwh", "grid_fee_default_distance_micro_per_kwh",
    "grid_fee_min_micro_per_kwh", "grid_fee_max_micro_per_kwh"})
"""Parameters a validator vote cannot change: the slot length (every slot number in state
depends on it), the grid account (the DSO's money), and every grid-fee parameter — fees
change only through the DSO within the genesis bounds, which buy escrows are sized for."""

PARAMS_KEY = b"gov/params"
_CACHE: dict[bytes | None, Params] = {}


def load_params(state: State) -> Params:
    """The chain's parameters: genesis overrides on top of the defaults.

    Memoised by the stored bytes (a pure function of them), so hot paths can call it freely.
    """
    raw = state.get(PARAMS_KEY)
    hit = _CACHE.get(raw)
    if hit is not None:
        return hit
    p = Params() if raw is None else parse_params(codec.decode(raw))
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[raw] = p
    return p


def store_params(state: State, params: Params) -> None:
    """Store the non-default parameters; nothing is written when all are defaults."""
    obj = params.to_obj()
    if obj:
        state.set_obj(PARAMS_KEY, obj)
    else:
        state.delete(PARAMS_KEY)


def slot_of(slot_time: int, p: Params) -> int:
    """The market slot a block time (seconds) falls in."""
    return slot_time // p.slot_seconds


# -- grid fees in force per slot ---------------------------------------------------------

TARIFFS_KEY = b"gov/tariffs"
"""The grid-fee schedule (governance v3): ``[[from_slot, flat, [tou…]], …]`` by from_slot.
Written only by governance (the DSO's ``governance/set_grid_fees``); absent on chains whose
fees are the genesis parameters."""


@dataclass(frozen=True)
class GridFeeRates:
    """The grid-fee rates of a slot: ``flat_micro_per_kwh`` plus the time-of-use entry of
    the slot's position in the day (``tou_micro_per_kwh``: one per slot of the day, or
    empty); network-distance fees come on top (parameters, fixed at genesis)."""

    from_slot: int
    flat_micro_per_kwh: int
    tou_micro_per_kwh: tuple[int, ...]

    def rate(self, slot_of_day: int) -> int:
        """Flat + time-of-use rate (micro-units per kWh) at a position in the day."""
        tou = self.tou_micro_per_kwh
        return self.flat_micro_per_kwh + (tou[slot_of_day % len(tou)] if tou else 0)


def fee_rates(flat: int, tou: tuple[int, ...]) -> list[int]:
    """Every flat + time-of-use rate a fee table gives across the day."""
    return [flat + t for t in tou] if tou else [flat]


def tariff_schedule(state: State) -> list[GridFeeRates]:
    """The stored grid-fee schedule, by ``from_slot`` (empty: the genesis parameters)."""
    return [GridFeeRates(int(a), int(f), tuple(int(x) for x in t))
            for a, f, t in state.get_obj(TARIFFS_KEY, [])]


def store_tariff_schedule(state: State, schedule: list[GridFeeRates]) -> None:
    """Write the schedule (governance only), sorted by ``from_slot``."""
    state.set_obj(TARIFFS_KEY, [[e.from_slot, e.flat_micro_per_kwh, list(e.tou_micro_per_kwh)]
                                for e in sorted(schedule, key=lambda e: e.from_slot)])


def grid_fees_for_slot(state: State, slot: int) -> GridFeeRates:
    """The grid-fee rates in force for ``slot``: the last schedule entry starting at or
    before it, else the genesis parameters (``from_slot`` 0)."""
    found = None
    for e in tariff_schedule(state):
        if e.from_slot > slot:
            break
        found = e
    if found is not None:
        return found
    p = load_params(state)
    return GridFeeRates(0, p.grid_fee_flat_micro_per_kwh, p.grid_fee_tou_micro_per_kwh)


def fee_rate_ceiling(p: Params) -> int:
    """The highest flat + time-of-use rate any slot can carry: the genesis upper bound when
    the DSO may change fees, else the genesis table's highest rate. Buy escrows are sized
    with it, so a fee raised after an order was placed is still covered."""
    return _rate_ceiling(p.grid_fee_flat_micro_per_kwh, tuple(p.grid_fee_tou_micro_per_kwh),
                         p.grid_fee_max_micro_per_kwh)


@functools.lru_cache(maxsize=64)
def _rate_ceiling(flat: int, tou: tuple[int, ...], upper: int) -> int:
    # every buy order's escrow asks for it: a pure function of the fee table, computed once
    # per table instead of a pass over 96 rates per order (issue 17)
    return max(*fee_rates(flat, tou), upper)
