"""The detectors: pure functions of the market's records (integers only, sorted inputs), so
every validator reaches the same findings. ``hooks.py`` calls them and writes the results.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gridledger.ledger.modules.surveillance.expected import BookOrder, Fill
from gridledger.ledger.modules.surveillance.types import (
    Config,
    Flow,
    Side,
    Supply,
    Visible,
    Watch,
)
from gridledger.market import ClearingResult, MarketInputError, Mechanism, clear_slot
from gridledger.market import Order as LibOrder

# -- the visible book ------------------------------------------------------------------------


def volumes(book: Iterable[tuple[bytes, BookOrder]]) -> dict[tuple[bytes, Side], int]:
    """Visible volume per (owner, side) of a book."""
    out: dict[tuple[bytes, Side], int] = {}
    for _oid, o in book:
        side: Side = "buy" if o.side == "buy" else "sell"
        out[(o.owner, side)] = out.get((o.owner, side), 0) + o.energy_wh
    return out


def observe(old: Watch | None, now: Mapping[tuple[bytes, Side], int]) -> Watch:
    """The watch after a block boundary at which the book shows ``now``: every shrink of an
    owner's side since the last boundary counts as withdrawn (a cancel, or a replace with
    less); peaks only grow."""
    before = {(v.owner, v.side): v for v in (old.entries if old else ())}
    entries = []
    for key in sorted(set(before) | set(now)):
        cur = now.get(key, 0)
        prev = before.get(key)
        if prev is None:
            entries.append(Visible(key[0], key[1], cur, cur, 0))
            continue
        entries.append(Visible(key[0], key[1], cur, max(prev.peak_wh, cur),
                               prev.withdrawn_wh + max(0, prev.energy_wh - cur)))
    buy = sum(v for (_o, s), v in now.items() if s == "buy")
    sell = sum(v for (_o, s), v in now.items() if s == "sell")
    return Watch(tuple(entries), max(old.peak_buy_wh if old else 0, buy),
                 max(old.peak_sell_wh if old else 0, sell))


def layering(w: Watch, cfg: Config) -> list[Visible]:
    """Owners who built visible volume on a side and withdrew it before the gate: at least
    ``layering_min_wh``, ``layering_share_pct`` % of the side's peak and
    ``layering_own_pct`` % of their own peak."""
    out = []
    for v in w.entries:
        side_peak = w.peak_buy_wh if v.side == "buy" else w.peak_sell_wh
        if (v.withdrawn_wh >= cfg.layering_min_wh
                and v.withdrawn_wh * 100 >= cfg.layering_share_pct * side_peak
                and v.withdrawn_wh * 100 >= cfg.layering_own_pct * v.peak_wh):
            out.append(v)
    return out


# -- conduct and impact ----------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """A book's clearing, as far as surveillance compares: traded volume and its
    volume-weighted price (None when nothing trades)."""

    volume_wh: int
    price_micro_per_kwh: int | None


def outcome(result: ClearingResult) -> Outcome:
    volume = sum(t.energy_wh for t in result.trades)
    if volume == 0:
        return Outcome(0, None)
    return Outcome(volume, sum(t.energy_wh * t.price_micro_per_kwh for t in result.trades)
                   // volume)


@dataclass(frozen=True)
class Impact:
    """The conduct-and-impact test of one book."""

    failing: tuple[tuple[bytes, BookOrder, int], ...]
    """(order id, order, reference level) of each offer that failed conduct."""
    as_submitted: Outcome
    mitigated: Outcome

    def material(self, cfg: Config) -> bool:
        """Mitigation changes the outcome enough: more energy trades, or the price moves by
        at least ``impact_min_micro_per_kwh``."""
        a, m = self.as_submitted, self.mitigated
        if m.volume_wh > a.volume_wh:
            return True
        if a.price_micro_per_kwh is None or m.price_micro_per_kwh is None:
            return False
        return abs(a.price_micro_per_kwh - m.price_micro_per_kwh) >= cfg.impact_min_micro_per_kwh


def conduct_and_impact(book: Sequence[tuple[bytes, BookOrder]], cfg: Config, mechanism: Mechanism,
                       retail_micro_per_kwh: int, feed_in_micro_per_kwh: int) -> Impact | None:
    """Test a slot's final book (None: no offer fails conduct, or the book cannot clear).

    Conduct: a limit above ``conduct_pct`` % of the retail tariff. Reference level: the
    feed-in tariff for a sell (what the seller gets from the grid anyway), the retail tariff
    for a buy (what the buyer pays the grid anyway). Impact: the book cleared as submitted
    and with the failing offers at their reference levels, by the chain's mechanism in
    arrival order. Envelopes and fees are left out: they clip quantities and add charges
    the same way in both clearings.
    """
    cap = retail_micro_per_kwh * cfg.conduct_pct // 100
    failing = []
    for oid, o in book:
        if o.price_micro_per_kwh > cap:
            ref = feed_in_micro_per_kwh if o.side == "sell" else retail_micro_per_kwh
            failing.append((oid, o, ref))
    if not failing:
        return None
    ordered = sorted(book, key=lambda item: item[1].seq)
    refs = {oid: ref for oid, _o, ref in failing}

    def lib(oid: bytes, o: BookOrder, price: int) -> LibOrder:
        return LibOrder(oid, o.owner, "buy" if o.side == "buy" else "sell", o.energy_wh, price)

    try:
        a = clear_slot([lib(oid, o, o.price_micro_per_kwh) for oid, o in ordered], mechanism)
        m = clear_slot([lib(oid, o, refs.get(oid, o.price_micro_per_kwh)) for oid, o in ordered],
                       mechanism)
    except MarketInputError:
        return None  # the market fails such a slot safely itself
    return Impact(tuple(sorted(failing, key=lambda f: f[0])), outcome(a), outcome(m))


# -- wash trades -----------------------------------------------------------------------------

def pair_flows(trades: Iterable[Fill]) -> tuple[Flow, ...]:
    """Net energy per pair of a slot's trades, ``a`` < ``b`` (an identity trades one side
    per slot, so a pair's trades in one slot all go one way)."""
    net: dict[tuple[bytes, bytes], int] = {}
    for t in trades:
        if t.seller == t.buyer:
            continue
        a, b = sorted((t.seller, t.buyer))
        sign = 1 if t.seller == a else -1
        net[(a, b)] = net.get((a, b), 0) + sign * t.energy_wh
    return tuple(Flow(a, b, n) for (a, b), n in sorted(net.items()) if n)


@dataclass(frozen=True)
class Wash:
    a: bytes
    b: bytes
    slots: tuple[int, ...]
    gross_wh: int
    net_wh: int
    reversals: int


def wash_pairs(window: Sequence[tuple[int, tuple[Flow, ...]]], pairs: Iterable[tuple[bytes, bytes]],
               cfg: Config) -> list[Wash]:
    """Of ``pairs``, those whose flows over ``window`` (ascending slots) reverse direction
    at least ``wash_reversals`` times and net to at most ``wash_net_pct`` % of gross."""
    series: dict[tuple[bytes, bytes], list[tuple[int, int]]] = {}
    for slot, fl in window:
        for f in fl:
            series.setdefault((f.a, f.b), []).append((slot, f.net_wh))
    out = []
    for pair in sorted(set(pairs)):
        s = series.get(pair, [])
        signs = [1 if n > 0 else -1 for _slot, n in s]
        reversals = sum(1 for x, y in itertools.pairwise(signs) if x != y)
        gross = sum(abs(n) for _slot, n in s)
        net = abs(sum(n for _slot, n in s))
        if gross and reversals >= cfg.wash_reversals and net * 100 <= cfg.wash_net_pct * gross:
            out.append(Wash(pair[0], pair[1], tuple(slot for slot, _n in s), gross, net,
                            reversals))
    return out


# -- physical withholding --------------------------------------------------------------------

@dataclass(frozen=True)
class Kept:
    """A holder that kept metered surplus off a short market: what it offered, what its
    meter exported, and how much of what it could have offered buyers went without."""

    owner: bytes
    offered_wh: int
    metered_wh: int
    withheld_wh: int


def physical_withholding(supply: Supply, exports: Iterable[tuple[str, bytes, int]],
                         traded_wh: int, cfg: Config) -> tuple[int, list[Kept]]:
    """(unmet buy volume, holders found) of a settled slot.

    ``exports``: (cp, holder, metered export Wh) of the meters whose own readings settled
    the slot. Unmet = the buy volume bid at or above the feed-in tariff less what traded. A
    holder is found when its export is at least ``physical_min_wh``, it offered at most
    ``physical_offered_pct`` % of what it could offer (the export, within its export
    envelope and within the offer its money could back as delivery deposit — a per-slot
    pseudonym's money is its pool allowance, whatever its meter exports) and at least
    ``physical_min_wh`` of the rest could have met unmet demand.
    """
    unmet = max(0, supply.buy_wh - traded_wh)
    if unmet < cfg.physical_min_wh:
        return unmet, []
    offered = {o.owner: o.energy_wh for o in supply.offered}
    envelope = dict(supply.envelopes)
    backing = {o.owner: o.energy_wh for o in supply.backing}
    found = []
    for cp, owner, export in sorted(exports):
        if export < cfg.physical_min_wh:
            continue
        could = min(export, envelope.get(cp, export), backing.get(owner, export))
        mine = offered.get(owner, 0)
        if mine * 100 > cfg.physical_offered_pct * could:
            continue
        withheld = min(could - mine, unmet)
        if withheld >= cfg.physical_min_wh:
            found.append(Kept(owner, mine, export, withheld))
    return unmet, found
