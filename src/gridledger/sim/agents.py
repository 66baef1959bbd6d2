"""Trading agents: what each household bids, and what its battery does, slot by slot.

Agents run on the client side (outside block execution), see only public information
(cleared prices, the tariffs, the DSO's envelope for their cp) plus their own forecast, and
are deterministic for a seed.

* ``truthful``: bids its reservation value. A buyer's is the retail tariff minus the grid
  fee (above that, the grid is cheaper); a seller's is the feed-in tariff.
* ``zip``: Zero-Intelligence-Plus (Cliff, HP Labs HPL-97-141, 1997): a profit margin on the
  reservation value, adapted after every cleared slot by a Widrow-Hoff rule with momentum
  towards a target just beyond the last price. Never bids beyond its reservation value.
* ``battery``: household load and PV plus a battery that charges when the expected price is
  low and discharges when it is high (thresholds: the 30th and 70th percentiles of its price
  expectation for the day), within power and capacity limits, 90 % charging efficiency. It
  never charges from the grid while its household is short in a slot whose landed cost (price
  + that slot's grid fee) reaches retail, "fills up" only with at least ``MIN_ORDER_WH`` of
  room, and discharges beyond its own load only up to the community's forecast shortage
  (beyond that, energy bought dear would be sold to the grid at feed-in).
  Expected price of a slot of the day = the last cleared price at that time of day, or,
  before it has seen one, feed-in when the community's forecast is in surplus and retail
  minus fee when it is short.

Quantities offered keep a 3 % margin below the forecast, so meter noise (0.3 %, class 1)
never turns an honest seller into a non-deliverer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gridledger.sim.community import Battery

MIN_ORDER_WH = 20
SAFETY_PCT = 97


@dataclass(frozen=True)
class MarketView:
    """Public information when orders for ``slot`` are placed."""

    slot: int
    slot_of_day: int
    retail: int          # micro/kWh
    feed_in: int
    fee: int             # grid fee the buyer pays in this slot (flat + time of use)
    community_net_wh: int  # the DSO's forecast of the community's net injection (> 0 surplus)


@dataclass(frozen=True)
class Intent:
    side: str
    energy_wh: int
    price: int


def buy_limit(v: MarketView) -> int:
    return max(v.feed_in, v.retail - v.fee)


def sell_limit(v: MarketView) -> int:
    return v.feed_in


def size(net_wh: int, envelope: tuple[int, int]) -> tuple[str | None, int]:
    """Side and quantity to trade for a forecast net position, inside the envelope."""
    imp_max, exp_max = envelope
    if net_wh > 0:
        q = min(net_wh, exp_max) * SAFETY_PCT // 100
        return ("sell", q) if q >= MIN_ORDER_WH else (None, 0)
    if net_wh < 0:
        q = min(-net_wh, imp_max) * SAFETY_PCT // 100
        return ("buy", q) if q >= MIN_ORDER_WH else (None, 0)
    return None, 0


@dataclass
class Agent:
    """Base: truthful bidding, no battery."""

    name: str

    def battery_wh(self, v: MarketView, net_wh: int, envelope: tuple[int, int]) -> int:
        """Battery injection this slot (> 0 discharge); households without one: 0."""
        return 0

    def price(self, side: str, v: MarketView) -> int:
        return buy_limit(v) if side == "buy" else sell_limit(v)

    def decide(self, v: MarketView, net_wh: int, envelope: tuple[int, int]) -> tuple[list[Intent], int]:
        """(orders, battery injection) for slot ``v.slot`` given the household's forecast."""
        b = self.battery_wh(v, net_wh, envelope)
        side, q = size(net_wh + b, envelope)
        if side is None:
            return [], b
        return [Intent(side, q, self.price(side, v))], b

    def observe(self, v: MarketView, price: int | None, traded: dict[str, int]) -> None:
        """The slot cleared at ``price`` (None: no trade); ``traded`` = this agent's fills."""


@dataclass
class ZipAgent(Agent):
    seed: int = 0
    beta: float = 0.3
    gamma: float = 0.3
    margin_buy: float = 0.0
    margin_sell: float = 0.0
    _mom_buy: float = 0.0
    _mom_sell: float = 0.0
    _rng: random.Random = field(init=False, repr=False)
    _last_side: str | None = None
    _last_price: int | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(f"zip/{self.seed}/{self.name}")
        self.beta = self._rng.uniform(0.1, 0.5)
        self.gamma = self._rng.uniform(0.0, 0.3)
        self.margin_buy = self._rng.uniform(0.05, 0.35)
        self.margin_sell = self._rng.uniform(0.05, 0.35)

    def price(self, side: str, v: MarketView) -> int:
        if side == "buy":
            p = int(buy_limit(v) * (1.0 - self.margin_buy))
            p = max(min(p, buy_limit(v)), 0)
        else:
            p = int(sell_limit(v) * (1.0 + self.margin_sell))
            p = max(p, sell_limit(v))
        self._last_side, self._last_price = side, p
        return p

    def decide(self, v: MarketView, net_wh: int, envelope: tuple[int, int]) -> tuple[list[Intent], int]:
        self._last_side = self._last_price = None
        return super().decide(v, net_wh, envelope)

    def observe(self, v: MarketView, price: int | None, traded: dict[str, int]) -> None:
        side, mine = self._last_side, self._last_price
        if side is None or mine is None:
            return
        filled = traded.get(side, 0) > 0
        r = self._rng.uniform(0.0, 0.05)
        a = self._rng.uniform(0.0, 0.02) * v.retail
        if side == "sell":
            limit = sell_limit(v)
            if price is not None and price >= mine:
                target = price * (1 + r) + a           # could have asked more
            elif not filled:
                target = (price if price is not None else mine) * (1 - r) - a  # ask less
            else:
                return
            delta = self.beta * (target - mine)
            self._mom_sell = self.gamma * self._mom_sell + (1 - self.gamma) * delta
            self.margin_sell = max(0.0, (mine + self._mom_sell) / limit - 1.0)
        else:
            limit = buy_limit(v)
            if price is not None and price <= mine:
                target = price * (1 - r) - a           # could have bid less
            elif not filled:
                target = (price if price is not None else mine) * (1 + r) + a  # bid more
            else:
                return
            delta = self.beta * (target - mine)
            self._mom_buy = self.gamma * self._mom_buy + (1 - self.gamma) * delta
            self.margin_buy = min(0.9, max(0.0, 1.0 - (mine + self._mom_buy) / limit))


@dataclass
class BatteryAgent(Agent):
    battery: Battery = field(default_factory=lambda: Battery(0, 0))
    soc_wh: int = 0
    expected: dict[int, int] = field(default_factory=dict)  # slot of day -> micro/kWh

    def __post_init__(self) -> None:
        self.soc_wh = self.battery.capacity_wh // 2

    def _estimate(self, v: MarketView) -> int:
        if v.slot_of_day in self.expected:
            return self.expected[v.slot_of_day]
        return v.feed_in if v.community_net_wh > 0 else buy_limit(v)

    def battery_wh(self, v: MarketView, net_wh: int, envelope: tuple[int, int]) -> int:
        bat = self.battery
        imp_max, exp_max = envelope
        est = self._estimate(v)
        known = sorted(self.expected.values()) or [v.feed_in, buy_limit(v)]
        low = known[(len(known) - 1) * 3 // 10]
        high = known[(len(known) - 1) * 7 // 10]
        room = (bat.capacity_wh - self.soc_wh) * 100 // bat.efficiency_pct
        charge = discharge = 0
        # the cp's envelope bounds what the battery may add: net - charge >= -import_max,
        # net + discharge <= export_max
        can_charge = max(0, min(bat.power_wh, room, net_wh + imp_max))
        can_discharge = max(0, min(bat.power_wh, self.soc_wh, exp_max - net_wh))
        # what a kWh bought now really costs this household: the P2P price plus this slot's
        # grid fee, or retail. A time-of-use fee lowers the P2P price exactly at the peak, so
        # the price alone reads the dearest hours as cheap; charging from the grid while the
        # household itself is short at retail cost is never cheaper later
        dear_to_buy = net_wh < 0 and est + v.fee >= v.retail
        # energy beyond the own load only goes where the community is short: the rest would
        # be sold to the grid at feed-in, below what it cost
        export_cap = max(0, -net_wh) + max(0, -v.community_net_wh)
        if est <= low and can_charge >= MIN_ORDER_WH and not dear_to_buy:
            charge = can_charge                                   # cheap: fill up
        elif est >= high and can_discharge > 0:
            discharge = min(can_discharge, export_cap)            # dear: cover and sell
        elif net_wh > 0 and can_charge > 0:
            charge = min(net_wh, can_charge)                      # keep own PV surplus
        elif net_wh < 0 and can_discharge > 0:
            discharge = min(-net_wh, can_discharge)               # cover own load
        self.soc_wh += charge * bat.efficiency_pct // 100 - discharge
        return discharge - charge

    def observe(self, v: MarketView, price: int | None, traded: dict[str, int]) -> None:
        if price is not None:
            self.expected[v.slot_of_day] = price


def make_agent(name: str, strategy: str, seed: int, battery: Battery | None) -> Agent:
    if strategy == "battery" and battery is not None:
        return BatteryAgent(name, battery=battery)
    if strategy == "zip":
        return ZipAgent(name, seed=seed)
    return Agent(name)
