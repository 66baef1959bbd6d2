"""Certificate invariants, run after every block by every node and test.

They check the open hours (issued, not yet closed): a closed hour's bundles are written by
no code path (its GCs are cancelled or expired, both final), so the per-block cost stays
bounded as history grows — as the metering module checks only pending readings.

* ``issued-within-export``: per device and slot, GCs issued <= the metered export of the
  reading they came from (and that is the reading metering holds, while it holds it).
* ``no-flagged-issuance``: a reading the DSO flagged, or one from a quarantined meter,
  issued nothing.
* ``ids-tile``: a slot's bundles cover exactly the ids issued for it, each id once, and per
  device and technology add up to its issuance: no GC is created or lost by a split.
* ``cancelled-once``: per holder and hour, the cancelled bundles it holds add up to exactly
  what it claimed (consumption) and stored, which never exceed its metered import: a GC
  cancelled twice, or moved or revived after cancellation, breaks the equality.
* ``storage-backed``: per battery and source, certified discharge <= deliverable charge <=
  charge allocated to cancelled GCs, and the FIFO queue holds exactly the difference.
* ``archive-accounted``: the running totals (issued, consumption, cancelled, stored,
  expired) equal what archived hours add up to (``cert/atot``) plus what live records hold
  (slot records; closed hours' records; open hours' matching rows), so no record leaves
  live state without being counted in the archive. It reads slot records and the hours not
  yet archived (a few days' worth), not the archive entries.
"""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.certificates import keeper
from gridledger.ledger.modules.certificates.expected import Metering
from gridledger.ledger.modules.certificates.types import slots_of_hour
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State


class Invariants:
    """The module's invariants, wired to the metering keeper (readings and flags)."""

    def __init__(self, metering: Metering) -> None:
        self.metering = metering

    def open_hours(self, state: State) -> None:
        """``issued-within-export``, ``no-flagged-issuance``, ``ids-tile`` and
        ``cancelled-once``, in one pass over each open hour's bundles."""
        p = load_params(state)
        for hour in keeper.open_hours(state):
            claimed: dict[tuple[bytes, str], int] = {}
            for slot in slots_of_hour(hour, p.slot_seconds):
                rec = keeper.slot_record(state, slot)
                if rec is not None:
                    self._slot(state, slot, rec.first_id, rec.next_id, claimed)
            _claims(state, hour, claimed)

    def _slot(self, state: State, slot: int, first_id: int, next_id: int,
              claimed: dict[tuple[bytes, str], int]) -> None:
        issued: dict[tuple[str, str], int] = {}
        for cp, iss in keeper.issuances_of_slot(state, slot):
            if iss.solar_wh + iss.storage_wh > iss.export_wh:
                raise InvariantViolation(f"issued-within-export: slot {slot} cp {cp!r} issued "
                                         f"{iss.solar_wh + iss.storage_wh} > export {iss.export_wh}")
            r = self.metering.reading_of(state, slot, cp)
            if r is not None and r.export_wh != iss.export_wh:
                raise InvariantViolation(f"issued-within-export: slot {slot} cp {cp!r} issued "
                                         "from a different reading than metering holds")
            flagged = self.metering.flag_of(state, slot, cp) is not None or (
                r is not None and r.quarantine is not None)
            if (flagged or iss.flagged) and iss.solar_wh + iss.storage_wh:
                raise InvariantViolation(f"no-flagged-issuance: slot {slot} cp {cp!r}")
            issued[(cp, "solar_pv")] = iss.solar_wh
            issued[(cp, "battery_storage")] = iss.storage_wh
        expect = first_id
        held: dict[tuple[str, str], int] = {}
        for start, b in keeper.bundles_of_slot(state, slot):
            if start != expect or b.end < start:
                raise InvariantViolation(f"ids-tile: slot {slot} bundle {start} (expected id "
                                         f"{expect})")
            expect = b.end + 1
            key = (b.cp, b.technology)
            held[key] = held.get(key, 0) + b.size(start)
            if b.status == "cancelled":
                if b.purpose is None or b.cancelled_at is None:
                    raise InvariantViolation(f"cancelled-once: bundle {slot}:{start} cancelled "
                                             "without purpose or time")
                k = (b.owner, b.purpose)
                claimed[k] = claimed.get(k, 0) + b.size(start)
            elif b.purpose is not None or b.cancelled_at is not None:
                raise InvariantViolation(f"cancelled-once: bundle {slot}:{start} is {b.status} "
                                         "after a cancellation")
        if expect != next_id:
            raise InvariantViolation(f"ids-tile: slot {slot} bundles end at {expect - 1}, ids "
                                     f"issued up to {next_id - 1}")
        if {k: v for k, v in held.items() if v} != {k: v for k, v in issued.items() if v}:
            raise InvariantViolation(f"ids-tile: slot {slot} bundles do not add up to the "
                                     "issuances")


def _claims(state: State, hour: int, claimed: dict[tuple[bytes, str], int]) -> None:
    """``cancelled-once``: the hour's cancelled bundles per holder equal its claims."""
    for addr, m in keeper.matchings_of_hour(state, hour):
        c = claimed.pop((addr, "consumption"), 0)
        s = claimed.pop((addr, "storage"), 0)
        if c != m.cancelled_wh or s != m.stored_wh:
            raise InvariantViolation(
                f"cancelled-once: hour {hour} holder {addr.hex()[:16]} holds {c}/{s} Wh "
                f"cancelled/stored, claimed {m.cancelled_wh}/{m.stored_wh}")
        if m.cancelled_wh + m.stored_wh > m.consumption_wh:
            raise InvariantViolation(f"cancelled-once: hour {hour} holder {addr.hex()[:16]} "
                                     "claimed more than its metered import")
    if any(claimed.values()):
        raise InvariantViolation(f"cancelled-once: hour {hour} has cancelled GCs no claim "
                                 "accounts for")


def storage_backed(state: State) -> None:
    """``storage-backed``: discharge certified <= deliverable <= charged, per source, and
    the queue holds the difference."""
    for cp, acc in keeper.storage_accounts(state):
        queued: dict[str, int] = {}
        for c in acc.queue:
            if c.energy_wh <= 0:
                raise InvariantViolation(f"storage-backed: {cp!r} queues an empty charge")
            queued[c.source] = queued.get(c.source, 0) + c.energy_wh
        for t in acc.totals:
            if not 0 <= t.discharged_wh <= t.deliverable_wh <= t.charged_wh:
                raise InvariantViolation(
                    f"storage-backed: {cp!r} {t.source}: discharged {t.discharged_wh}, "
                    f"deliverable {t.deliverable_wh}, charged {t.charged_wh}")
            if queued.pop(t.source, 0) != t.deliverable_wh - t.discharged_wh:
                raise InvariantViolation(f"storage-backed: {cp!r} {t.source}: queue does not "
                                         "hold the undischarged charge")
        if queued:
            raise InvariantViolation(f"storage-backed: {cp!r} queues a source with no total")


def archive_accounted(state: State) -> None:
    """``archive-accounted``: running totals = archived totals + live records."""
    t = keeper.totals(state)
    a = keeper.archive_totals(state)
    issued = a.issued_wh + sum(r.issued_wh for _s, r in keeper.slot_records(state))
    consumption, cancelled, stored, expired = (a.consumption_wh, a.cancelled_wh, a.stored_wh,
                                               a.expired_wh)
    for hour in keeper.closed_hours(state):
        rec = keeper.hour_record(state, hour)
        if rec is not None:
            consumption += rec.consumption_wh
            cancelled += rec.cancelled_wh
            stored += rec.stored_wh
            expired += rec.expired_wh
    for hour in keeper.open_hours(state):
        for _addr, m in keeper.matchings_of_hour(state, hour):
            consumption += m.consumption_wh
            cancelled += m.cancelled_wh
            stored += m.stored_wh
    got = (issued, consumption, cancelled, stored, expired)
    want = (t.issued_wh, t.consumption_wh, t.cancelled_wh, t.stored_wh, t.expired_wh)
    if got != want:
        raise InvariantViolation(
            "archive-accounted: archived + live (issued, consumption, cancelled, stored, "
            f"expired) = {got}, running totals {want}")
