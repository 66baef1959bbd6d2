"""The only code that touches ``cert/`` keys.

Keys (``<slot>`` and ``<hour>`` are 8 bytes big-endian, ``<start>`` 8 bytes, so key order
is time order, then id order)::

    cert/config               Config (genesis section; absent: defaults)
    cert/on                   1 once any device is registered: the module writes nothing before
    cert/dev/<cp>             Device
    cert/seq                  next GC id (ids start at 1)
    cert/s/<slot>             SlotRecord: the slot was issued
    cert/i/<slot><cp>         Issuance
    cert/b/<slot><start>      Bundle
    cert/sr/<slot><cp>        StorageReading
    cert/st/<cp>              StorageAccount
    cert/m/<hour><addr>       Matching
    cert/h/<hour>             HourRecord (closed hours)
    cert/open                 [hour, ...] open hours, ascending
    cert/tot                  Totals
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache

from gridledger.ledger.modules.certificates.types import (
    DEFAULT_CONFIG,
    Bundle,
    Config,
    Device,
    HourRecord,
    Issuance,
    Matching,
    SlotRecord,
    StorageAccount,
    StorageReading,
    Totals,
)
from gridledger.ledger.state import State

CONFIG = b"cert/config"
ON = b"cert/on"
DEVICE = b"cert/dev/"
SEQ = b"cert/seq"
SLOT = b"cert/s/"
ISSUANCE = b"cert/i/"
BUNDLE = b"cert/b/"
STORAGE_READING = b"cert/sr/"
STORAGE = b"cert/st/"
MATCHING = b"cert/m/"
HOUR = b"cert/h/"
OPEN = b"cert/open"
TOTALS = b"cert/tot"


def k8(n: int) -> bytes:
    """Fixed-width big-endian, so key order is numeric order."""
    return n.to_bytes(8, "big")


def bundle_key(slot: int, start: int) -> bytes:
    """The state key of bundle ``(slot, start)`` (what a membership proof names)."""
    return BUNDLE + k8(slot) + k8(start)


# Records are decoded from their bytes; the same bytes always decode to the same record
# (a pure function), so invariants that scan a slot's bundles every block decode each once.
@lru_cache(maxsize=65536)
def _bundle(raw: bytes) -> Bundle:
    return Bundle.decode(raw)


# -- configuration and devices --------------------------------------------------------------

def config(state: State) -> Config:
    obj = state.get_obj(CONFIG)
    return DEFAULT_CONFIG if obj is None else Config.from_obj(obj)


def put_config(state: State, cfg: Config) -> None:
    state.set_obj(CONFIG, cfg.to_obj())


def enabled(state: State) -> bool:
    """Issuance runs once the DSO registered a device (or genesis configured the module)."""
    return state.get(ON) is not None


def enable(state: State) -> None:
    if state.get(ON) is None:
        state.set_int(ON, 1)


def device(state: State, cp: str) -> Device | None:
    obj = state.get_obj(DEVICE + cp.encode())
    return None if obj is None else Device.from_obj(obj)


def put_device(state: State, cp: str, d: Device) -> None:
    state.set_obj(DEVICE + cp.encode(), d.to_obj())


def devices(state: State) -> list[tuple[str, Device]]:
    """Every registered device, in cp byte order."""
    return [(k[len(DEVICE):].decode(), Device.from_obj(v))
            for k, v in state.items_with_prefix(DEVICE)]


def next_ids(state: State, n: int) -> int:
    """Reserve ``n`` consecutive GC ids; returns the first."""
    first = state.get_int(SEQ) or 1
    state.set_int(SEQ, first + n)
    return first


def peek_id(state: State) -> int:
    return state.get_int(SEQ) or 1


# -- slots, issuances, bundles ---------------------------------------------------------------

def slot_record(state: State, slot: int) -> SlotRecord | None:
    obj = state.get_obj(SLOT + k8(slot))
    return None if obj is None else SlotRecord.from_obj(obj)


def put_slot_record(state: State, slot: int, rec: SlotRecord) -> None:
    state.set_obj(SLOT + k8(slot), rec.to_obj())


def slot_records(state: State) -> list[tuple[int, SlotRecord]]:
    return [(int.from_bytes(k[len(SLOT):], "big"), SlotRecord.from_obj(v))
            for k, v in state.items_with_prefix(SLOT)]


def issuance(state: State, slot: int, cp: str) -> Issuance | None:
    obj = state.get_obj(ISSUANCE + k8(slot) + cp.encode())
    return None if obj is None else Issuance.from_obj(obj)


def put_issuance(state: State, slot: int, cp: str, rec: Issuance) -> None:
    state.set_obj(ISSUANCE + k8(slot) + cp.encode(), rec.to_obj())


def issuances_of_slot(state: State, slot: int) -> list[tuple[str, Issuance]]:
    prefix = ISSUANCE + k8(slot)
    return [(k[len(prefix):].decode(), Issuance.from_obj(v))
            for k, v in state.items_with_prefix(prefix)]


def bundle(state: State, slot: int, start: int) -> Bundle | None:
    raw = state.get(bundle_key(slot, start))
    return None if raw is None else _bundle(raw)


def put_bundle(state: State, slot: int, start: int, b: Bundle) -> None:
    state.set(bundle_key(slot, start), b.encode())


def bundles_of_slot(state: State, slot: int) -> list[tuple[int, Bundle]]:
    """``(start, bundle)`` of every bundle of ``slot``, in id order."""
    prefix = BUNDLE + k8(slot)
    out = []
    for k in state.keys_with_prefix(prefix):
        raw = state.get(k)
        if raw is not None:
            out.append((int.from_bytes(k[len(prefix):], "big"), _bundle(raw)))
    return out


def split(state: State, slot: int, start: int, b: Bundle, n: int) -> Bundle:
    """Cut the first ``n`` GCs of bundle ``(slot, start)`` off as their own bundle (kept at
    ``start``, returned); the rest stays with the same owner and status at ``start + n``.
    ``n`` equal to the bundle's size changes nothing. The caller has checked ``n``."""
    if n == b.size(start):
        return b
    head = replace(b, end=start + n - 1)
    put_bundle(state, slot, start, head)
    put_bundle(state, slot, start + n, b)
    return head


# -- storage ---------------------------------------------------------------------------------

def storage_reading(state: State, slot: int, cp: str) -> StorageReading | None:
    obj = state.get_obj(STORAGE_READING + k8(slot) + cp.encode())
    return None if obj is None else StorageReading.from_obj(obj)


def put_storage_reading(state: State, slot: int, cp: str, r: StorageReading) -> None:
    state.set_obj(STORAGE_READING + k8(slot) + cp.encode(), r.to_obj())


def storage_account(state: State, cp: str) -> StorageAccount:
    obj = state.get_obj(STORAGE + cp.encode())
    return StorageAccount((), ()) if obj is None else StorageAccount.from_obj(obj)


def put_storage_account(state: State, cp: str, acc: StorageAccount) -> None:
    state.set_obj(STORAGE + cp.encode(), acc.to_obj())


def storage_accounts(state: State) -> Iterator[tuple[str, StorageAccount]]:
    for k, v in state.items_with_prefix(STORAGE):
        yield k[len(STORAGE):].decode(), StorageAccount.from_obj(v)


# -- matching --------------------------------------------------------------------------------

def matching(state: State, hour: int, addr: bytes) -> Matching:
    obj = state.get_obj(MATCHING + k8(hour) + addr)
    return Matching(0, 0, 0) if obj is None else Matching.from_obj(obj)


def put_matching(state: State, hour: int, addr: bytes, m: Matching) -> None:
    state.set_obj(MATCHING + k8(hour) + addr, m.to_obj())


def matchings_of_hour(state: State, hour: int) -> list[tuple[bytes, Matching]]:
    prefix = MATCHING + k8(hour)
    return [(k[len(prefix):], Matching.from_obj(v)) for k, v in state.items_with_prefix(prefix)]


def all_matchings(state: State) -> Iterator[tuple[int, bytes, Matching]]:
    """``(hour, addr, record)`` of every holder-hour, by hour then address."""
    n = len(MATCHING)
    for k, v in state.items_with_prefix(MATCHING):
        yield int.from_bytes(k[n:n + 8], "big"), k[n + 8:], Matching.from_obj(v)


def hour_record(state: State, hour: int) -> HourRecord | None:
    obj = state.get_obj(HOUR + k8(hour))
    return None if obj is None else HourRecord.from_obj(obj)


def put_hour_record(state: State, hour: int, rec: HourRecord) -> None:
    state.set_obj(HOUR + k8(hour), rec.to_obj())


def open_hours(state: State) -> list[int]:
    return [int(h) for h in state.get_obj(OPEN, [])]


def open_hour(state: State, hour: int) -> None:
    hours = open_hours(state)
    if hour not in hours:
        state.set_obj(OPEN, sorted([*hours, hour]))


def close_hour_list(state: State, hour: int) -> None:
    rest = [h for h in open_hours(state) if h != hour]
    if rest:
        state.set_obj(OPEN, rest)
    else:
        state.delete(OPEN)


def is_open(state: State, hour: int) -> bool:
    return hour in open_hours(state)


# -- totals ----------------------------------------------------------------------------------

def totals(state: State) -> Totals:
    obj = state.get_obj(TOTALS)
    return Totals() if obj is None else Totals.from_obj(obj)


def add_totals(state: State, **wh: int) -> None:
    """Add to the running totals (only fields named)."""
    t = totals(state)
    state.set_obj(TOTALS, replace(t, **{k: getattr(t, k) + v for k, v in wh.items()}).to_obj())
