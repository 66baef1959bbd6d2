"""The only code that touches ``meter/`` keys."""

from __future__ import annotations

from gridledger.ledger.modules.metering.types import Reading
from gridledger.ledger.state import State

READING = b"meter/r/"
FLAG = b"meter/f/"
PENDING = b"meter/pending"


def slot_key(slot: int) -> bytes:
    # fixed-width big-endian, so key order is slot order
    return slot.to_bytes(8, "big")


def reading_of(state: State, slot: int, cp: str) -> Reading | None:
    """The reading of ``cp`` for ``slot``, if its meter sent one."""
    obj = state.get_obj(READING + slot_key(slot) + cp.encode())
    if obj is None:
        return None
    return Reading(slot, cp, int(obj["import_wh"]), int(obj["export_wh"]), obj["firmware"],
                   obj["meter"])


def readings_for_slot(state: State, slot: int) -> list[Reading]:
    """Every reading of ``slot``, in connection-point byte order."""
    prefix = READING + slot_key(slot)
    out = []
    for k, obj in state.items_with_prefix(prefix):
        out.append(Reading(slot, k[len(prefix):].decode(), int(obj["import_wh"]),
                           int(obj["export_wh"]), obj["firmware"], obj["meter"]))
    return out


def record_reading(state: State, r: Reading) -> None:
    state.set_obj(READING + slot_key(r.slot) + r.cp.encode(), r.to_obj())
    pending = pending_slots(state)
    if r.slot not in pending:
        state.set_obj(PENDING, sorted(pending + [r.slot]))


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


# -- false-data-injection flags (THREATS.md row 1) ------------------------------------------
def flag_of(state: State, slot: int, cp: str) -> dict[str, object] | None:
    """The DSO's flag on ``cp``'s reading for ``slot``: the network estimate that replaces it."""
    obj: dict[str, object] | None = state.get_obj(FLAG + slot_key(slot) + cp.encode())
    return obj


def record_flag(state: State, slot: int, cp: str, import_wh: int, export_wh: int,
                evidence: bytes, dso: bytes) -> None:
    state.set_obj(FLAG + slot_key(slot) + cp.encode(),
                  {"import_wh": import_wh, "export_wh": export_wh, "evidence": evidence,
                   "dso": dso})


def trusted_reading_of(state: State, slot: int, cp: str) -> Reading | None:
    """What settlement and disputes use: the meter's reading, unless the DSO flagged it, in
    which case the network's estimate (state estimation) stands in for it."""
    raw = reading_of(state, slot, cp)
    flag = flag_of(state, slot, cp)
    if flag is None:
        return raw
    return Reading(slot, cp, int(flag["import_wh"]), int(flag["export_wh"]),  # type: ignore[call-overload]
                   raw.firmware if raw else bytes(32), raw.meter if raw else b"")


def trusted_readings_for_slot(state: State, slot: int) -> list[Reading]:
    """``trusted_reading_of`` for every cp with a reading or a flag, in cp byte order."""
    cps = {r.cp for r in readings_for_slot(state, slot)}
    prefix = FLAG + slot_key(slot)
    cps |= {k[len(prefix):].decode() for k in state.keys_with_prefix(prefix)}
    out = [trusted_reading_of(state, slot, cp) for cp in sorted(cps, key=str.encode)]
    return [r for r in out if r is not None]
