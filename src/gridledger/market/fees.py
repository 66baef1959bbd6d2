"""Grid (network) fees per trade: flat, time-of-use, and by network distance.

Who pays: the buyer. It pays the energy at the trade price (never above its limit) to the
seller, and the network charge as a separate bill line to the DSO, as on retail bills where
energy and network use are separate items (e.g. EU Directive 2019/944 Art. 18 asks for
network charges to be shown apart). Fees do not change matching or prices: the limit applies
to the energy price only.

The fee rate of a trade is ``flat + tou[slot_of_day] + distance(zone(buyer), zone(seller))``
micro-units per kWh, and the fee is ``payment_micro(energy_wh, rate)`` (floor), so it is an
integer and reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gridledger.market.types import (
    MAX_PRICE_MICRO_PER_KWH,
    MarketInputError,
    _check_int,
)


@dataclass(frozen=True, slots=True)
class GridFees:
    """Network-charge schedule applied to every market trade.

    Attributes:
        flat_micro_per_kwh: charged on every kWh traded.
        tou_micro_per_kwh: time-of-use component indexed by slot of day (e.g. 96 entries for
            15-minute slots); empty means none.
        zone_by_owner: network zone of each participant (feeder, secondary substation ...).
        distance_micro_per_kwh: fee for a pair of zones; the pair is unordered, so
            ``("feeder-a", "feeder-b")`` also covers b -> a; ``(z, z)`` is the same-zone fee.
        default_distance_micro_per_kwh: for pairs not in the table and owners without a zone
            (the conservative choice is the "across the transformer" fee).
    """

    flat_micro_per_kwh: int = 0
    tou_micro_per_kwh: tuple[int, ...] = ()
    zone_by_owner: Mapping[bytes, str] = field(default_factory=dict)
    distance_micro_per_kwh: Mapping[tuple[str, str], int] = field(default_factory=dict)
    default_distance_micro_per_kwh: int = 0

    def __post_init__(self) -> None:
        top = MAX_PRICE_MICRO_PER_KWH
        _check_int("flat_micro_per_kwh", self.flat_micro_per_kwh, 0, top)
        _check_int("default_distance_micro_per_kwh", self.default_distance_micro_per_kwh, 0, top)
        if not isinstance(self.tou_micro_per_kwh, tuple):
            raise MarketInputError("tou_micro_per_kwh must be a tuple")
        for i, v in enumerate(self.tou_micro_per_kwh):
            _check_int(f"tou_micro_per_kwh[{i}]", v, 0, top)
        for owner, zone in self.zone_by_owner.items():
            if type(owner) is not bytes or type(zone) is not str:
                raise MarketInputError("zone_by_owner maps bytes owner -> str zone")
        for pair, v in self.distance_micro_per_kwh.items():
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(type(z) is str for z in pair)):
                raise MarketInputError("distance_micro_per_kwh keys are (zone, zone) str pairs")
            _check_int(f"distance_micro_per_kwh[{pair!r}]", v, 0, top)
            rev = self.distance_micro_per_kwh.get((pair[1], pair[0]))
            if rev is not None and rev != v:
                raise MarketInputError(f"distance fee for {pair!r} differs by direction")

    def rate_micro_per_kwh(self, buyer: bytes, seller: bytes, slot_of_day: int = 0) -> int:
        """Fee rate for one trade between ``buyer`` and ``seller`` (scalar reference)."""
        rate = self.flat_micro_per_kwh + _tou(self, slot_of_day)
        zb = self.zone_by_owner.get(buyer)
        zs = self.zone_by_owner.get(seller)
        dist = self.default_distance_micro_per_kwh
        if zb is not None and zs is not None:
            table = self.distance_micro_per_kwh
            dist = table.get((zb, zs), table.get((zs, zb), dist))
        return rate + dist


def _tou(fees: GridFees, slot_of_day: int) -> int:
    tou = fees.tou_micro_per_kwh
    if not tou:
        return 0
    _check_int("slot_of_day", slot_of_day, 0, len(tou) - 1)
    return tou[slot_of_day]


def fee_rates(
    fees: GridFees,
    slot_of_day: int,
    owners: list[bytes],
    t_buy: NDArray[np.int64],
    t_sell: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Fee rate of every trade (vectorised ``GridFees.rate_micro_per_kwh``).

    ``owners[i]`` is the owner of order ``i``; ``t_buy``/``t_sell`` index the orders of each
    trade. Zones are numbered in sorted order, so nothing depends on mapping iteration order.
    """
    base = fees.flat_micro_per_kwh + _tou(fees, slot_of_day)
    rates = np.full(len(t_buy), base, dtype=np.int64)
    if not fees.distance_micro_per_kwh and not fees.default_distance_micro_per_kwh:
        return rates
    zones = sorted(set(fees.zone_by_owner.values()))
    zone_ix = {z: i for i, z in enumerate(zones)}
    none_ix = len(zones)  # owners without a zone
    table = np.full((none_ix + 1, none_ix + 1), fees.default_distance_micro_per_kwh, np.int64)
    for (za, zb), v in sorted(fees.distance_micro_per_kwh.items()):
        if za in zone_ix and zb in zone_ix:
            table[zone_ix[za], zone_ix[zb]] = v
            table[zone_ix[zb], zone_ix[za]] = v
    by_owner = fees.zone_by_owner
    order_zone = np.fromiter(
        (zone_ix[by_owner[o]] if o in by_owner else none_ix for o in owners),
        dtype=np.int64,
        count=len(owners),
    )
    rates += table[order_zone[t_buy], order_zone[t_sell]]
    return rates
