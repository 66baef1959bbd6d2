"""The only code that touches ``meter/`` keys.

Other modules use it through their own protocols: settlement reads
``trusted_readings_for_slot`` and marks slots settled, disputes read
``trusted_reading_of``, the privacy module records pseudonymous readings with
``accept_reading`` (the same window and one-per-slot rules as a meter's).
"""

from __future__ import annotations

import cbor2

from gridledger.ledger.modules.metering.errors import OneReadingPerSlot, ReadingEarly, ReadingLate
from gridledger.ledger.modules.metering.types import Flag, Reading, StoredReading, reading_window
from gridledger.ledger.params import load_params
from gridledger.ledger.record import read
from gridledger.ledger.state import State
from gridledger.memo import Memo

READING = b"meter/r/"
FLAG = b"meter/f/"
PENDING = b"meter/pending"


def slot_key(slot: int) -> bytes:
    # fixed-width big-endian, so key order is slot order
    return slot.to_bytes(8, "big")


_READINGS_MAX = 8192
_READINGS: Memo[tuple[bytes, bytes], Reading] = Memo(_READINGS_MAX)  # aged by block time
"""Readings kept decoded, by (key, stored bytes): a pure function of both (``Reading`` is
frozen), so a rolled-back write changes nothing. Settlement, surveillance and the
readings-valid invariant read every pending reading each block (issue 17); two slots'
readings at 1,000 members fit."""


def _reading(key: bytes, raw: bytes) -> Reading:
    hit = _READINGS.get((key, raw))
    if hit is None:
        r = StoredReading.from_obj(cbor2.loads(raw))
        slot = int.from_bytes(key[len(READING):len(READING) + 8], "big")
        hit = Reading(slot, key[len(READING) + 8:].decode(), r.import_wh, r.export_wh,
                      r.firmware, r.meter, r.quarantine)
        _READINGS.put((key, raw), hit)
    return hit


def reading_of(state: State, slot: int, cp: str) -> Reading | None:
    """The reading of ``cp`` for ``slot``, if its meter sent one."""
    key = READING + slot_key(slot) + cp.encode()
    raw = state.get(key)
    return None if raw is None else _reading(key, raw)


def readings_for_slot(state: State, slot: int) -> list[Reading]:
    """Every reading of ``slot``, in connection-point byte order."""
    get = state.get
    return [_reading(k, get(k)) for k in  # type: ignore[arg-type]
            state.keys_with_prefix(READING + slot_key(slot))]


def record_reading(state: State, r: Reading) -> None:
    """Store ``r`` and mark its slot pending (no checks: ``accept_reading`` checks)."""
    state.set_obj(READING + slot_key(r.slot) + r.cp.encode(), r.to_record().to_obj())
    pending = pending_slots(state)
    if r.slot not in pending:
        state.set_obj(PENDING, sorted([*pending, r.slot]))


def accept_reading(state: State, r: Reading, now: int) -> None:
    """Record ``r`` if it arrives in its window and is its cp's first for the slot.

    Raises:
        ReadingEarly: the slot has not ended at block time ``now``.
        ReadingLate: ``now`` is at or after the slot's settlement deadline.
        OneReadingPerSlot: the cp already reported the slot.
    """
    p = load_params(state)
    first, last = reading_window(r.slot, p.slot_seconds, p.settle_window_s)
    if now < first:
        raise ReadingEarly(f"slot {r.slot} ends at {first}, block time is {now}")
    if now >= last:
        raise ReadingLate(f"readings for slot {r.slot} closed at {last}")
    if reading_of(state, r.slot, r.cp) is not None:
        raise OneReadingPerSlot(f"cp {r.cp!r} already reported slot {r.slot}")
    record_reading(state, r)


def pending_slots(state: State) -> list[int]:
    """Slots with readings that settlement has not processed yet, ascending."""
    return list(state.get_obj(PENDING, []))


def mark_settled(state: State, slot: int) -> None:
    """Settlement processed ``slot``'s readings (they stay in state as dispute evidence)."""
    pending = [s for s in pending_slots(state) if s != slot]
    if pending:
        state.set_obj(PENDING, pending)
    else:
        state.delete(PENDING)


def prune_readings(state: State, slot: int) -> None:
    """Drop a settled slot's readings and flags once its dispute window has closed."""
    for prefix in (READING, FLAG):
        for k in state.keys_with_prefix(prefix + slot_key(slot)):
            state.delete(k)


# -- false-data-injection flags (docs/threat-model.md row 1) ------------------------------------------
def flag_of(state: State, slot: int, cp: str) -> Flag | None:
    """The DSO's flag on ``cp``'s reading for ``slot``: the network estimate that replaces it."""
    return read(state, FLAG + slot_key(slot) + cp.encode(), Flag)


def record_flag(state: State, slot: int, cp: str, flag: Flag) -> None:
    state.set_obj(FLAG + slot_key(slot) + cp.encode(), flag.to_obj())


def trusted_reading_of(state: State, slot: int, cp: str) -> Reading | None:
    """What settlement and disputes use: the meter's reading, unless the DSO flagged it, in
    which case the network's estimate (state estimation) stands in for it."""
    raw = reading_of(state, slot, cp)
    flag = flag_of(state, slot, cp)
    if flag is None:
        # a quarantined meter's own figures never settle: only the DSO's estimate does
        return None if raw is not None and raw.quarantine is not None else raw
    return Reading(slot, cp, flag.import_wh, flag.export_wh,
                   raw.firmware if raw else bytes(32), raw.meter if raw else b"")


def trusted_readings_for_slot(state: State, slot: int) -> list[Reading]:
    """``trusted_reading_of`` for every cp with a reading or a flag, in cp byte order."""
    cps = {r.cp for r in readings_for_slot(state, slot)}
    prefix = FLAG + slot_key(slot)
    cps |= {k[len(prefix):].decode() for k in state.keys_with_prefix(prefix)}
    out = [trusted_reading_of(state, slot, cp) for cp in sorted(cps, key=str.encode)]
    return [r for r in out if r is not None]
