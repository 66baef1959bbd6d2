"""Issuance at settlement, transfer with delivered energy, expiry at the hour's close.

The end-of-block hook runs after the market's (the catalog lists this module after it), so a
slot is issued in the very block that settles it, from exactly what settlement used:

1. **Issue.** For every registered device whose connection point has a signed reading for
   the slot (and every pseudonym's stand-in cp with one, under the DSO's pseudonym class,
   ``devices.py``): a flagged reading (the DSO's false-data detection), or one from a meter the
   firmware registry had quarantined, issues nothing. Otherwise
   the metered export E splits into storage discharge ``min(E, discharged_wh)`` (the
   battery sub-meter) and the rest, solar. Solar GCs are issued up to the device's capacity
   bound; storage discharge GCs only as far as the battery's Storage Charge Records reach,
   first in first out, each carrying the source of the charge it draws on. Everything else
   stays uncertified. GCs go to the connection point's holder.
2. **Transfer.** Each trade of the slot, in clearing order, moves the seller's GCs of the
   slot for the energy it *delivered* (settlement's allocation of the metered export) to the
   buyer.
3. **Consumption.** Every holder's settled import (the DSO's estimate where flagged) is added
   to its hour: what it may claim GCs against. What no GC covers is the grid's residual mix.
4. **Close.** Once an hour's claim window has passed, its active GCs expire and the hour's
   record (consumption, cancelled, stored, expired, residual) is written.
5. **Archive.** A market dispute window after its close, the hour's records leave live
   state for one Merkle root (``archive.py``).

The issuer is the validator quorum: this runs inside execution, so every certified block
that issues is the quorum's signed act.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.modules.certificates import keeper
from gridledger.ledger.modules.certificates.archive import EVENT as ARCHIVE_EVENT
from gridledger.ledger.modules.certificates.archive import archive_root
from gridledger.ledger.modules.certificates.devices import DeviceBook
from gridledger.ledger.modules.certificates.expected import Market, Metering, Registry
from gridledger.ledger.modules.certificates.types import (
    Archive,
    Bundle,
    Charge,
    HourRecord,
    Issuance,
    Matching,
    SlotRecord,
    SourceTotal,
    StorageAccount,
    Technology,
    capacity_wh,
    hour_close,
    hour_of,
    slots_of_hour,
)
from gridledger.ledger.params import Params, load_params
from gridledger.ledger.state import State

Events = list[dict[str, Any]]


def zone_of(cp: str, p: Params, default: str) -> str:
    """The cp's network zone (param ``grid_fee_zones``), else the issuing body's market zone."""
    for c, z in p.grid_fee_zones:
        if c == cp:
            return z
    return default


class Issuer:
    """The end-of-block hook, wired to the registry, market and metering keepers."""

    def __init__(self, registry: Registry, market: Market, metering: Metering,
                 book: DeviceBook) -> None:
        self.registry = registry
        self.market = market
        self.metering = metering
        self.book = book

    def end_block(self, state: State, ctx: BlockContext, events: Events) -> None:
        """Issue every slot settled and not yet issued, then close hours that are due."""
        if not keeper.enabled(state):
            return
        p = load_params(state)
        # the market's hook ran first in this block: what it settled now is due here
        for slot, settled_at in sorted(self.market.settled_slots(state)):
            if settled_at == ctx.slot_time and keeper.slot_record(state, slot) is None:
                self.issue_slot(state, ctx, p, slot, events)
        cfg = keeper.config(state)
        for hour in keeper.open_hours(state):
            if ctx.slot_time >= hour_close(hour, p.slot_seconds, p.settle_window_s,
                                           cfg.claim_window_s):
                close_hour(state, ctx, p, hour, events)
        for hour in keeper.closed_hours(state):
            if ctx.slot_time < archive_time(hour, p, cfg.claim_window_s):
                break            # ascending: later hours are due later
            archive_hour(state, ctx, p, hour, events)

    # -- one slot ------------------------------------------------------------------------------
    def issue_slot(self, state: State, ctx: BlockContext, p: Params, slot: int,
                   events: Events) -> None:
        cfg = keeper.config(state)
        first = keeper.peek_id(state)
        issued = storage = withheld = capped = uncertified = 0
        for cp, dev in self.book.of_slot(state, slot):
            reading = self.metering.reading_of(state, slot, cp)
            owner = self.registry.cp_holder(state, cp)
            if reading is None or owner is None:
                continue
            zone = zone_of(cp, p, cfg.issue_market_zone)
            export = reading.export_wh
            # a reading settlement does not trust issues nothing: one the DSO flagged (false
            # data detection), or one from a meter the firmware registry had quarantined
            untrusted = ("flagged" if self.metering.flag_of(state, slot, cp) is not None
                         else "quarantined" if reading.quarantine is not None else None)
            if untrusted is not None:
                keeper.put_issuance(state, slot, cp, Issuance(owner, export, 0, 0, True, zone))
                withheld += export
                if export:
                    events.append({"type": "certificates_withheld", "slot": slot, "cp": cp,
                                   "energy_wh": export, "reason": untrusted})
                continue
            sr = keeper.storage_reading(state, slot, cp) if dev.storage_w else None
            storage_part = min(export, sr.discharged_wh) if sr is not None else 0
            solar_part = export - storage_part
            solar = min(solar_part, capacity_wh(dev.solar_w, p.slot_seconds))
            capped += solar_part - solar
            if solar_part > solar:
                events.append({"type": "certificates_withheld", "slot": slot, "cp": cp,
                               "energy_wh": solar_part - solar, "reason": "capacity"})
            if solar:
                self._issue(state, ctx, slot, cp, owner, "solar_pv", "solar_pv", solar,
                            None, events)
            got = self._discharge(state, ctx, slot, cp, owner, storage_part, events)
            uncertified += storage_part - got
            if export or solar or got:
                keeper.put_issuance(state, slot, cp, Issuance(owner, export, solar, got, False,
                                                              zone))
            issued += solar + got
            storage += got
        transferred = self._transfer(state, slot, events)
        self._consumption(state, p, slot)
        keeper.put_slot_record(state, slot, SlotRecord(
            first, keeper.peek_id(state), issued, storage, transferred, withheld, capped,
            uncertified, ctx.height))
        keeper.add_totals(state, issued_wh=issued, storage_issued_wh=storage,
                          transferred_wh=transferred, withheld_wh=withheld, capped_wh=capped,
                          uncertified_wh=uncertified)
        keeper.open_hour(state, hour_of(slot, p.slot_seconds))

    def _issue(self, state: State, ctx: BlockContext, slot: int, cp: str, owner: bytes,
               technology: Technology, source: str, energy_wh: int, charge: Charge | None,
               events: Events) -> None:
        start = keeper.next_ids(state, energy_wh)
        b = Bundle(start + energy_wh - 1, cp, technology, source, owner, "active", ctx.height,
                   charge.slot if charge else None, charge.start if charge else None)
        keeper.put_bundle(state, slot, start, b)
        events.append({"type": "certificates_issued", "slot": slot, "cp": cp, "owner": owner,
                       "start": start, "end": b.end, "energy_wh": energy_wh,
                       "technology": technology, "energy_source": source})

    def _discharge(self, state: State, ctx: BlockContext, slot: int, cp: str, owner: bytes,
                   energy_wh: int, events: Events) -> int:
        """Storage discharge GCs for up to ``energy_wh``, drawn first in first out from the
        battery's Storage Charge Records; returns the Wh issued."""
        if energy_wh <= 0:
            return 0
        acc = keeper.storage_account(state, cp)
        queue = list(acc.queue)
        drawn: dict[str, int] = {}
        need, got = energy_wh, 0
        while need and queue:
            head = queue[0]
            take = min(need, head.energy_wh)
            self._issue(state, ctx, slot, cp, owner, "battery_storage", head.source, take,
                        head, events)
            drawn[head.source] = drawn.get(head.source, 0) + take
            need -= take
            got += take
            if take == head.energy_wh:
                queue.pop(0)
            else:
                queue[0] = replace(head, energy_wh=head.energy_wh - take)
        if got:
            totals = tuple(replace(t, discharged_wh=t.discharged_wh + drawn.get(t.source, 0))
                           for t in acc.totals)
            keeper.put_storage_account(state, cp, StorageAccount(tuple(queue), totals))
        return got

    def _transfer(self, state: State, slot: int, events: Events) -> int:
        """Move the sellers' GCs of ``slot`` to the buyers for each trade's delivered energy
        (each seller's bundles in id order, split from the start of a range)."""
        moved = 0
        held: dict[bytes, list[tuple[int, Bundle]]] = {}
        for start, b in keeper.bundles_of_slot(state, slot):   # all freshly issued, active
            held.setdefault(b.owner, []).append((start, b))
        for index, t in enumerate(self.market.trades_of_slot(state, slot)):
            left = t.delivered_wh or 0
            queue = held.get(t.seller)
            if left <= 0 or t.seller == t.buyer or not queue:
                continue
            sent = 0
            while left and queue:
                start, b = queue[0]
                n = min(left, b.size(start))
                head = keeper.split(state, slot, start, b, n)
                keeper.put_bundle(state, slot, start, replace(head, owner=t.buyer))
                if n == b.size(start):
                    queue.pop(0)
                else:
                    queue[0] = (start + n, b)
                left -= n
                sent += n
            if sent:
                moved += sent
                events.append({"type": "certificates_transferred", "slot": slot,
                               "trade": index, "from": t.seller, "to": t.buyer,
                               "energy_wh": sent})
        return moved

    def _consumption(self, state: State, p: Params, slot: int) -> None:
        """Add every holder's settled import of ``slot`` to its hour."""
        hour = hour_of(slot, p.slot_seconds)
        total = 0
        for r in self.metering.trusted_readings_for_slot(state, slot):
            holder = self.registry.cp_holder(state, r.cp)
            if holder is None or r.import_wh <= 0:
                continue
            m = keeper.matching(state, hour, holder)
            keeper.put_matching(state, hour, holder,
                                replace(m, consumption_wh=m.consumption_wh + r.import_wh))
            total += r.import_wh
        if total:
            keeper.add_totals(state, consumption_wh=total)


def close_hour(state: State, ctx: BlockContext, p: Params, hour: int, events: Events) -> None:
    """Expire the hour's active GCs and record its matching (consumption, claims, residual)."""
    expired = 0
    for slot in slots_of_hour(hour, p.slot_seconds):
        for start, b in keeper.bundles_of_slot(state, slot):
            if b.status == "active":
                keeper.put_bundle(state, slot, start, replace(b, status="expired"))
                expired += b.size(start)
    consumption = cancelled = stored = residual = 0
    for _addr, m in keeper.matchings_of_hour(state, hour):
        consumption += m.consumption_wh
        cancelled += m.cancelled_wh
        stored += m.stored_wh
        residual += m.consumption_wh - m.cancelled_wh - m.stored_wh
    keeper.put_hour_record(state, hour, HourRecord(consumption, cancelled, stored, expired,
                                                   residual, ctx.slot_time))
    keeper.close_hour_list(state, hour)
    keeper.add_totals(state, expired_wh=expired)
    events.append({"type": "certificates_hour_closed", "hour": hour,
                   "consumption_wh": consumption, "cancelled_wh": cancelled,
                   "stored_wh": stored, "expired_wh": expired, "residual_wh": residual})


def archive_time(hour: int, p: Params, claim_window_s: int) -> int:
    """Block time from which a closed hour is archived: its close plus the market's dispute
    window (every slot of the hour is then past its own dispute window, and nothing reads
    or writes the hour's records)."""
    return hour_close(hour, p.slot_seconds, p.settle_window_s, claim_window_s) + p.dispute_window_s


def archive_hour(state: State, ctx: BlockContext, p: Params, hour: int, events: Events) -> None:
    """Fold the closed hour's records out of live state into ``cert/arch/<hour>`` (their
    Merkle root, count and sums); the records themselves go into this block's
    ``certificates_archived`` event, which every node's store keeps."""
    slots = slots_of_hour(hour, p.slot_seconds)
    pairs = keeper.records_of_hour(state, hour, slots)
    issued = consumption = cancelled = stored = expired = 0
    closed_at = 0
    for key, raw in pairs:
        rec = keeper.decode_record(key, raw)
        if isinstance(rec, SlotRecord):
            issued += rec.issued_wh
        elif isinstance(rec, Matching):
            consumption += rec.consumption_wh
            cancelled += rec.cancelled_wh
            stored += rec.stored_wh
        elif isinstance(rec, HourRecord):
            expired += rec.expired_wh
            closed_at = rec.closed_at
    for key, _raw in pairs:
        state.delete(key)
    root = archive_root(pairs)
    keeper.put_archive(state, hour, Archive(
        root, len(pairs), ctx.height, issued, consumption, cancelled, stored, expired,
        consumption - cancelled - stored, closed_at))
    t = keeper.archive_totals(state)
    keeper.put_archive_totals(state, replace(
        t, hours=t.hours + 1, records=t.records + len(pairs), issued_wh=t.issued_wh + issued,
        consumption_wh=t.consumption_wh + consumption, cancelled_wh=t.cancelled_wh + cancelled,
        stored_wh=t.stored_wh + stored, expired_wh=t.expired_wh + expired))
    events.append({"type": ARCHIVE_EVENT, "hour": hour, "root": root, "count": len(pairs),
                   "records": [[k, v] for k, v in pairs]})


def add_charge(acc: StorageAccount, slot: int, start: int, source: str, charged_wh: int,
               efficiency_pct: int) -> StorageAccount:
    """A Storage Charge Record: ``charged_wh`` of ``source`` into the battery, backing
    ``charged_wh * efficiency_pct // 100`` Wh of later discharge."""
    deliverable = charged_wh * efficiency_pct // 100
    totals = list(acc.totals)
    for i, t in enumerate(totals):
        if t.source == source:
            totals[i] = replace(t, charged_wh=t.charged_wh + charged_wh,
                                deliverable_wh=t.deliverable_wh + deliverable)
            break
    else:
        totals.append(SourceTotal(source, charged_wh, deliverable, 0))
        totals.sort(key=lambda t: t.source)
    queue = acc.queue + ((Charge(slot, start, source, deliverable),) if deliverable else ())
    return StorageAccount(queue, tuple(totals))


def add_matching(m: Matching, cancelled_wh: int = 0, stored_wh: int = 0) -> Matching:
    return replace(m, cancelled_wh=m.cancelled_wh + cancelled_wh,
                   stored_wh=m.stored_wh + stored_wh)
