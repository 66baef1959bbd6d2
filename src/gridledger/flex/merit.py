"""Merit-order selection of flexibility offers: pure, integer, deterministic.

The DSO's flexibility request names, per eligible connection point, a *weight* (the
sensitivity of the congested quantity to that cp's injection, in parts per million of the
most effective cp's, from the DSO's power flow) and, per slot, the *effective* energy it
needs (Wh at weight 10^6). An offer's ``a`` Wh activated at a cp of weight ``w`` count as
``a * w / 10^6`` effective Wh and cost ``a * price`` (pay as bid, USEF FlexOrder).

With one congestion constraint per slot this is a fractional covering problem

    minimise   sum_i a_i * p_i       subject to   sum_i a_i * w_i >= need,  0 <= a_i <= e_i

whose optimum is the *merit order*: offers by price per effective Wh (``p_i / w_i``)
ascending, each taken whole until the need is covered, the last one partly (Dantzig's
greedy for the continuous knapsack). USEF lets the DSO activate an offer partly
(FlexOffer ``MinActivationFactor``; shapeshifter UFTP spec), so partial activation is
allowed. The rule is exact in integers, so validators recompute it inside block execution
and accept the DSO's signed order only if it is this selection (``flex/order``).

Ties (equal price per effective Wh) go to the lower offer id; a slot whose need the offers
cannot cover activates every offer with energy there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

PPM = 1_000_000
"""Weights are in parts per million of the most effective connection point."""


@dataclass(frozen=True)
class MeritOffer:
    """An offer as selection sees it: id (tie-break), its cp's weight, price, energy per
    slot of the request (Wh, >= 0)."""

    offer_id: bytes
    weight_ppm: int
    price_micro_per_kwh: int
    energies_wh: tuple[int, ...]


def _cheaper(a: MeritOffer, b: MeritOffer) -> int:
    # p_a / w_a < p_b / w_b  <=>  p_a * w_b < p_b * w_a (weights > 0): exact in integers
    left, right = a.price_micro_per_kwh * b.weight_ppm, b.price_micro_per_kwh * a.weight_ppm
    if left != right:
        return -1 if left < right else 1
    return -1 if a.offer_id < b.offer_id else (1 if a.offer_id > b.offer_id else 0)


def merit_order(offers: Sequence[MeritOffer]) -> list[int]:
    """Indices of ``offers`` from cheapest to dearest per effective Wh (ties: offer id).

    Raises ``ValueError`` for a weight outside 1..10^6 (a weight of 0 would make an offer
    useless and its price per effective Wh infinite)."""
    for o in offers:
        if not 1 <= o.weight_ppm <= PPM:
            raise ValueError(f"weight {o.weight_ppm} outside 1..{PPM}")
    def cmp(i: int, j: int) -> int:
        return _cheaper(offers[i], offers[j])

    return sorted(range(len(offers)), key=functools.cmp_to_key(cmp))


def select(offers: Sequence[MeritOffer], need_wh: Sequence[int]) -> list[tuple[int, ...]]:
    """The activation (Wh per slot) of every offer, in the order given, that covers the
    effective ``need_wh`` of each slot at least cost.

    Each slot is covered independently along the merit order: whole offers while they fit,
    the last one rounded up to whole Wh (so coverage is never short by rounding). An offer
    with no energy in a slot is skipped there.

    Raises ``ValueError`` if an offer's energies do not have one entry per slot of
    ``need_wh``, or an energy or need is negative.
    """
    n = len(need_wh)
    if any(x < 0 for x in need_wh):
        raise ValueError("a need is negative")
    for o in offers:
        if len(o.energies_wh) != n:
            raise ValueError(f"offer has {len(o.energies_wh)} slots, the request {n}")
        if any(e < 0 for e in o.energies_wh):
            raise ValueError("an offered energy is negative")
    order = merit_order(offers)
    out = [[0] * n for _ in offers]
    for k in range(n):
        rem = need_wh[k] * PPM
        for i in order:
            if rem <= 0:
                break
            o = offers[i]
            e = o.energies_wh[k]
            if e == 0:
                continue
            eff = e * o.weight_ppm
            if eff <= rem:
                out[i][k] = e
                rem -= eff
            else:
                out[i][k] = -(-rem // o.weight_ppm)
                rem = 0
    return [tuple(a) for a in out]


def effective_wh(offers: Sequence[MeritOffer], activations: Sequence[Sequence[int]],
                 slot: int) -> int:
    """Effective Wh the activations give in ``slot`` (floor)."""
    return sum(a[slot] * o.weight_ppm for o, a in zip(offers, activations, strict=True)) // PPM


def cost_nano(offers: Sequence[MeritOffer], activations: Sequence[Sequence[int]]) -> int:
    """Pay-as-bid cost of ``activations`` in nano-units (Wh x micro/kWh): ``ceil(/1000)``
    is the money the DSO must hold for it."""
    return sum(sum(a) * o.price_micro_per_kwh for o, a in zip(offers, activations, strict=True))
