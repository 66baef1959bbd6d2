"""The only code that touches ``cert/`` keys.

Keys (``<slot>`` and ``<hour>`` are 8 bytes big-endian, ``<start>`` 8 bytes, so key order
is time order, then id order)::

    cert/config               Config (genesis section; absent: defaults)
    cert/on                   1 once any device is registered: the module writes nothing before
    cert/dev/<cp>             Device
    cert/pclass               Device: the class every pseudonym's stand-in cp is certified under
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
    cert/arch/<hour>          Archive: the hour's records folded into one Merkle root
    cert/atot                 ArchiveTotals
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TypeVar, cast

import cbor2

from gridledger.ledger.modules.certificates.types import (
    DEFAULT_CONFIG,
    Archive,
    ArchiveTotals,
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
from gridledger.ledger.record import Record
from gridledger.ledger.state import State
from gridledger.memo import Memo

CONFIG = b"cert/config"
ON = b"cert/on"
DEVICE = b"cert/dev/"
PSEUDONYM_CLASS = b"cert/pclass"
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
ARCHIVE = b"cert/arch/"
ARCHIVE_TOTALS = b"cert/atot"


def k8(n: int) -> bytes:
    """Fixed-width big-endian, so key order is numeric order."""
    return n.to_bytes(8, "big")


def bundle_key(slot: int, start: int) -> bytes:
    """The state key of bundle ``(slot, start)`` (what a membership proof names)."""
    return BUNDLE + k8(slot) + k8(start)


R = TypeVar("R", bound=Record)


# Records are decoded from their bytes; the same bytes always decode to the same (frozen)
# record, so hooks and invariants that read the open hours every block decode each once.
# State values were written canonical by this keeper, so no re-encoding check is needed.
_CACHE_MAX = 1 << 16
_CACHE: Memo[tuple[type[Record], bytes], Record] = Memo(_CACHE_MAX)  # aged by block time


def _decode(cls: type[R], raw: bytes) -> R:
    hit = _CACHE.get((cls, raw))
    if hit is None:
        hit = cls.from_obj(cbor2.loads(raw))
        _CACHE.put((cls, raw), hit)
    return cast(R, hit)


def _get(state: State, key: bytes, cls: type[R]) -> R | None:
    raw = state.get(key)
    return None if raw is None else _decode(cls, raw)


def _items(state: State, prefix: bytes, cls: type[R]) -> list[tuple[bytes, R]]:
    """``(key suffix, record)`` under ``prefix``, in key order."""
    out = []
    for k in state.keys_with_prefix(prefix):
        raw = state.get(k)
        if raw is not None:
            out.append((k[len(prefix):], _decode(cls, raw)))
    return out


def _bundle(raw: bytes) -> Bundle:
    return _decode(Bundle, raw)


# -- configuration and devices --------------------------------------------------------------

def config(state: State) -> Config:
    return _get(state, CONFIG, Config) or DEFAULT_CONFIG


def put_config(state: State, cfg: Config) -> None:
    state.set_obj(CONFIG, cfg.to_obj())


def enabled(state: State) -> bool:
    """Issuance runs once the DSO registered a device (or genesis configured the module)."""
    return state.get(ON) is not None


def enable(state: State) -> None:
    if state.get(ON) is None:
        state.set_int(ON, 1)


def device(state: State, cp: str) -> Device | None:
    return _get(state, DEVICE + cp.encode(), Device)


def put_device(state: State, cp: str, d: Device) -> None:
    state.set_obj(DEVICE + cp.encode(), d.to_obj())


def pseudonym_class(state: State) -> Device | None:
    """The DSO's device class for pseudonyms' stand-in cps (None: pseudonyms earn no GCs)."""
    return _get(state, PSEUDONYM_CLASS, Device)


def put_pseudonym_class(state: State, d: Device) -> None:
    state.set_obj(PSEUDONYM_CLASS, d.to_obj())


def devices(state: State) -> list[tuple[str, Device]]:
    """Every registered device, in cp byte order."""
    return [(k.decode(), d) for k, d in _items(state, DEVICE, Device)]


def next_ids(state: State, n: int) -> int:
    """Reserve ``n`` consecutive GC ids; returns the first."""
    first = state.get_int(SEQ) or 1
    state.set_int(SEQ, first + n)
    return first


def peek_id(state: State) -> int:
    return state.get_int(SEQ) or 1


# -- slots, issuances, bundles ---------------------------------------------------------------

def slot_record(state: State, slot: int) -> SlotRecord | None:
    return _get(state, SLOT + k8(slot), SlotRecord)


def put_slot_record(state: State, slot: int, rec: SlotRecord) -> None:
    state.set_obj(SLOT + k8(slot), rec.to_obj())


def slot_records(state: State) -> list[tuple[int, SlotRecord]]:
    return [(int.from_bytes(k, "big"), r) for k, r in _items(state, SLOT, SlotRecord)]


def issuance(state: State, slot: int, cp: str) -> Issuance | None:
    return _get(state, ISSUANCE + k8(slot) + cp.encode(), Issuance)


def put_issuance(state: State, slot: int, cp: str, rec: Issuance) -> None:
    state.set_obj(ISSUANCE + k8(slot) + cp.encode(), rec.to_obj())


def issuances_of_slot(state: State, slot: int) -> list[tuple[str, Issuance]]:
    return [(k.decode(), i) for k, i in _items(state, ISSUANCE + k8(slot), Issuance)]


def bundle(state: State, slot: int, start: int) -> Bundle | None:
    raw = state.get(bundle_key(slot, start))
    return None if raw is None else _bundle(raw)


def put_bundle(state: State, slot: int, start: int, b: Bundle) -> None:
    state.set(bundle_key(slot, start), b.encode())


def bundles_of_slot(state: State, slot: int) -> list[tuple[int, Bundle]]:
    """``(start, bundle)`` of every bundle of ``slot``, in id order."""
    return [(int.from_bytes(k, "big"), b) for k, b in _items(state, BUNDLE + k8(slot), Bundle)]


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
    return _get(state, STORAGE_READING + k8(slot) + cp.encode(), StorageReading)


def put_storage_reading(state: State, slot: int, cp: str, r: StorageReading) -> None:
    state.set_obj(STORAGE_READING + k8(slot) + cp.encode(), r.to_obj())


def storage_account(state: State, cp: str) -> StorageAccount:
    return _get(state, STORAGE + cp.encode(), StorageAccount) or StorageAccount((), ())


def put_storage_account(state: State, cp: str, acc: StorageAccount) -> None:
    state.set_obj(STORAGE + cp.encode(), acc.to_obj())


def storage_accounts(state: State) -> Iterator[tuple[str, StorageAccount]]:
    for k, acc in _items(state, STORAGE, StorageAccount):
        yield k.decode(), acc


# -- matching --------------------------------------------------------------------------------

def matching(state: State, hour: int, addr: bytes) -> Matching:
    return _get(state, MATCHING + k8(hour) + addr, Matching) or Matching(0, 0, 0)


def put_matching(state: State, hour: int, addr: bytes, m: Matching) -> None:
    state.set_obj(MATCHING + k8(hour) + addr, m.to_obj())


def matchings_of_hour(state: State, hour: int) -> list[tuple[bytes, Matching]]:
    return _items(state, MATCHING + k8(hour), Matching)


def all_matchings(state: State) -> Iterator[tuple[int, bytes, Matching]]:
    """``(hour, addr, record)`` of every holder-hour, by hour then address."""
    for k, m in _items(state, MATCHING, Matching):
        yield int.from_bytes(k[:8], "big"), k[8:], m


def hour_record(state: State, hour: int) -> HourRecord | None:
    return _get(state, HOUR + k8(hour), HourRecord)


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
    return _get(state, TOTALS, Totals) or Totals()


def add_totals(state: State, **wh: int) -> None:
    """Add to the running totals (only fields named)."""
    t = totals(state)
    state.set_obj(TOTALS, replace(t, **{k: getattr(t, k) + v for k, v in wh.items()}).to_obj())


# -- archive ---------------------------------------------------------------------------------

def archive_key(hour: int) -> bytes:
    """The state key of hour ``hour``'s archive entry (what the second level of an archived
    record's proof names)."""
    return ARCHIVE + k8(hour)


def archive(state: State, hour: int) -> Archive | None:
    return _get(state, archive_key(hour), Archive)


def put_archive(state: State, hour: int, a: Archive) -> None:
    state.set_obj(archive_key(hour), a.to_obj())


def archives(state: State) -> list[tuple[int, Archive]]:
    """``(hour, entry)`` of every archived hour, ascending."""
    return [(int.from_bytes(k, "big"), a) for k, a in _items(state, ARCHIVE, Archive)]


def archive_totals(state: State) -> ArchiveTotals:
    return _get(state, ARCHIVE_TOTALS, ArchiveTotals) or ArchiveTotals()


def put_archive_totals(state: State, t: ArchiveTotals) -> None:
    state.set_obj(ARCHIVE_TOTALS, t.to_obj())


def closed_hours(state: State) -> list[int]:
    """Hours closed and not yet archived (those with a live ``HourRecord``), ascending."""
    return [int.from_bytes(k[len(HOUR):], "big") for k in state.keys_with_prefix(HOUR)]


def hour_prefixes(hour: int, slots: range) -> list[bytes]:
    """Every key prefix holding a record of ``hour`` (whose slots are ``slots``)."""
    out = [MATCHING + k8(hour), HOUR + k8(hour)]
    for slot in slots:
        out += [SLOT + k8(slot), ISSUANCE + k8(slot), BUNDLE + k8(slot),
                STORAGE_READING + k8(slot)]
    return out


def records_of_hour(state: State, hour: int, slots: range) -> list[tuple[bytes, bytes]]:
    """``(key, value bytes)`` of every live record of ``hour``, in key order."""
    out = []
    for prefix in hour_prefixes(hour, slots):
        for k in state.keys_with_prefix(prefix):
            raw = state.get(k)
            if raw is not None:
                out.append((k, raw))
    out.sort()
    return out


def decode_record(key: bytes, raw: bytes) -> Record:
    """The record stored at ``key`` (any archivable prefix). Raises ``KeyError`` otherwise."""
    for prefix, cls in _ARCHIVABLE:
        if key.startswith(prefix):
            return _decode(cls, raw)
    raise KeyError(f"not a certificates record key: {key[:16]!r}")


_ARCHIVABLE: tuple[tuple[bytes, type[Record]], ...] = (
    (SLOT, SlotRecord), (ISSUANCE, Issuance), (BUNDLE, Bundle), (STORAGE_READING, StorageReading),
    (MATCHING, Matching), (HOUR, HourRecord))


def hour_of_record_key(key: bytes, hours_per_slot: tuple[int, int]) -> int | None:
    """The hour an archivable record key belongs to (None: not such a key).
    ``hours_per_slot``: ``(slot_seconds, period_seconds)``."""
    slot_seconds, period = hours_per_slot
    for prefix in (SLOT, ISSUANCE, BUNDLE, STORAGE_READING):
        if key.startswith(prefix) and len(key) >= len(prefix) + 8:
            return int.from_bytes(key[len(prefix):len(prefix) + 8], "big") * slot_seconds // period
    for prefix in (MATCHING, HOUR):
        if key.startswith(prefix) and len(key) >= len(prefix) + 8:
            return int.from_bytes(key[len(prefix):len(prefix) + 8], "big")
    return None
