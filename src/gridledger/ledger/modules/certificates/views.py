"""Certificate read-only views, served by ``Application.query("certificates/<view>/<arg>")``.

Bundles are named ``<slot>:<start>`` (the slot of the energy, the bundle's first GC id).

Records of an archived hour (``archive.py``) are no longer in state: the views that show
them (``bundle``, ``bundles``, ``issuances``, ``slots``, ``matching``, ``hour``, ``hours``,
``storage_reading``) read them from the node's stored block events (``History``), checked
against the hour's archive root, and mark them ``archived: <hour>``. Without a history
(an application with no store) they show live records only.
"""

from __future__ import annotations

from typing import Any

from gridledger.ledger.module import History
from gridledger.ledger.modules.certificates import keeper
from gridledger.ledger.modules.certificates.archive import prove_record, stored_records
from gridledger.ledger.modules.certificates.types import (
    Bundle,
    HourRecord,
    Issuance,
    Matching,
    SlotRecord,
    StorageReading,
    hour_of,
    period_seconds,
    slots_of_hour,
)
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State


def parse_bundle_id(arg: str) -> tuple[int, int]:
    """``"<slot>:<start>"`` (decimal, each below 2^64: they are fixed-width key parts) ->
    (slot, start); ``ValueError`` naming the expected form otherwise."""
    slot, sep, start = arg.partition(":")
    if not (sep and all(p.isascii() and p.isdigit() and len(p) <= 20 and int(p) < 2**64
                        for p in (slot, start))):
        raise ValueError(f"a bundle id is <slot>:<start> (two decimal numbers below 2^64), "
                         f"got {arg[:40]!r}")
    return int(slot), int(start)


def bundle_obj(slot: int, start: int, b: Bundle) -> dict[str, Any]:
    """A bundle as plain data, with its id, range, size and state key."""
    return {"id": f"{slot}:{start}", "slot": slot, "start": start, "energy_wh": b.size(start),
            "key": keeper.bundle_key(slot, start).hex(), **b.to_obj()}


def config(state: State, _arg: str) -> dict[str, Any]:
    """``certificates/config``: issuing-body metadata, claim window, whether issuance runs,
    and the timing an export needs (``slot_seconds``, ``settle_window_s``)."""
    p = load_params(state)
    return {**keeper.config(state).to_obj(), "enabled": keeper.enabled(state),
            "slot_seconds": p.slot_seconds, "settle_window_s": p.settle_window_s}


def devices(state: State, _arg: str) -> list[dict[str, Any]]:
    """``certificates/devices``: every registered device ``{cp, solar_w, storage_w, ...}``."""
    return [{"cp": cp, **d.to_obj()} for cp, d in keeper.devices(state)]


def pseudonym_class(state: State, _arg: str) -> dict[str, Any] | None:
    """``certificates/pseudonym_class``: the DSO's device class for pseudonyms' stand-in cps
    (None: pseudonyms earn no GCs)."""
    d = keeper.pseudonym_class(state)
    return None if d is None else d.to_obj()


def _archived(state: State, history: History | None, hour: int) -> list[tuple[bytes, bytes]]:
    """The archived records of ``hour`` (empty: not archived or not readable here)."""
    return stored_records(state, history, hour) or []


def _under(pairs: list[tuple[bytes, bytes]], prefix: bytes) -> list[tuple[bytes, bytes]]:
    """``(key suffix, value)`` of the pairs under ``prefix``, in key order."""
    return [(k[len(prefix):], v) for k, v in pairs if k.startswith(prefix)]


def _archived_bundles(pairs: list[tuple[bytes, bytes]], hour: int,
                      slot: int | None = None) -> list[dict[str, Any]]:
    prefix = keeper.BUNDLE + (keeper.k8(slot) if slot is not None else b"")
    out = []
    for k, v in pairs:
        if k.startswith(prefix):
            rest = k[len(keeper.BUNDLE):]
            s, start = int.from_bytes(rest[:8], "big"), int.from_bytes(rest[8:16], "big")
            out.append({**bundle_obj(s, start, Bundle.decode(v)), "archived": hour})
    return out


def bundle(state: State, history: History | None, arg: str) -> dict[str, Any] | None:
    """``certificates/bundle/<slot>:<start>``: one bundle (None: no bundle starts there; one
    of an archived hour comes from the archive, marked ``archived``)."""
    slot, start = parse_bundle_id(arg)
    b = keeper.bundle(state, slot, start)
    if b is not None:
        return bundle_obj(slot, start, b)
    hour = hour_of(slot, load_params(state).slot_seconds)
    key = keeper.bundle_key(slot, start)
    for k, v in _archived(state, history, hour):
        if k == key:
            return {**bundle_obj(slot, start, Bundle.decode(v)), "archived": hour}
    return None


def bundles(state: State, history: History | None, arg: str) -> list[dict[str, Any]]:
    """``certificates/bundles/<slot>`` (one slot) or ``certificates/bundles`` (all: archived
    hours' first, then live ones)."""
    p = load_params(state)
    if arg:
        slot = int(arg)
        live = [bundle_obj(slot, s, b) for s, b in keeper.bundles_of_slot(state, slot)]
        if live:
            return live
        hour = hour_of(slot, p.slot_seconds)
        return _archived_bundles(_archived(state, history, hour), hour, slot)
    out = []
    for hour, _entry in keeper.archives(state):
        out += _archived_bundles(_archived(state, history, hour), hour)
    for slot, _rec in keeper.slot_records(state):
        out += [bundle_obj(slot, s, b) for s, b in keeper.bundles_of_slot(state, slot)]
    return out


def issuances(state: State, history: History | None, arg: str) -> list[dict[str, Any]]:
    """``certificates/issuances/<slot>``: each device's issuance for the slot."""
    slot = int(arg)
    live = [{"slot": slot, "cp": cp, **i.to_obj()} for cp, i in keeper.issuances_of_slot(state, slot)]
    if live:
        return live
    hour = hour_of(slot, load_params(state).slot_seconds)
    return [{"slot": slot, "cp": k.decode(), **Issuance.decode(v).to_obj(), "archived": hour}
            for k, v in _under(_archived(state, history, hour),
                               keeper.ISSUANCE + keeper.k8(slot))]


def slots(state: State, history: History | None, _arg: str) -> list[dict[str, Any]]:
    """``certificates/slots``: every issued slot's record (archived hours' first)."""
    out: list[dict[str, Any]] = []
    for hour, _entry in keeper.archives(state):
        out += [{"slot": int.from_bytes(k, "big"), **SlotRecord.decode(v).to_obj(),
                 "archived": hour}
                for k, v in _under(_archived(state, history, hour), keeper.SLOT)]
    return out + [{"slot": s, **r.to_obj()} for s, r in keeper.slot_records(state)]


def totals(state: State, _arg: str) -> dict[str, Any]:
    """``certificates/totals``: running totals (Wh) and the residual-mix energy so far
    (import no GC covers, open hours included)."""
    t = keeper.totals(state)
    return {**t.to_obj(), "residual_wh": t.consumption_wh - t.cancelled_wh - t.stored_wh}


def _matching_row(hour: int, addr: bytes, m: Matching) -> dict[str, Any]:
    return {"hour": hour, "address": addr, **m.to_obj(),
            "residual_wh": m.consumption_wh - m.cancelled_wh - m.stored_wh}


def matching(state: State, history: History | None, arg: str) -> list[dict[str, Any]]:
    """``certificates/matching[/<addr hex>]``: per holder and hour ``{hour, address,
    consumption_wh, cancelled_wh, stored_wh, residual_wh}`` (hourly, 24/7 matching;
    archived hours' rows first)."""
    only = bytes.fromhex(arg) if arg else None
    out = []
    for hour, _entry in keeper.archives(state):
        for k, v in _under(_archived(state, history, hour), keeper.MATCHING + keeper.k8(hour)):
            if only is None or k == only:
                out.append({**_matching_row(hour, k, Matching.decode(v)), "archived": hour})
    return out + [_matching_row(h, a, m) for h, a, m in keeper.all_matchings(state)
                  if only is None or a == only]


def storage(state: State, arg: str) -> dict[str, Any]:
    """``certificates/storage/<cp>``: the battery's Storage Charge Records and totals."""
    return keeper.storage_account(state, arg).to_obj()


def hour(state: State, history: History | None, arg: str) -> dict[str, Any]:
    """``certificates/hour/<hour>``: whether it is open (or archived), which of its slots
    were issued, its closing record (once closed) and every holder's matching row in it."""
    h = int(arg)
    p = load_params(state)
    hour_slots = list(slots_of_hour(h, p.slot_seconds))
    if keeper.archive(state, h) is not None:
        pairs = _archived(state, history, h)
        rec_raw = dict(pairs).get(keeper.HOUR + keeper.k8(h))
        issued = {int.from_bytes(k, "big") for k, _v in _under(pairs, keeper.SLOT)}
        return {"hour": h, "open": False, "archived": True, "slots": hour_slots,
                "issued": [s for s in hour_slots if s in issued],
                "closed": None if rec_raw is None else HourRecord.decode(rec_raw).to_obj(),
                "matching": [{k2: v2 for k2, v2 in _matching_row(h, a, Matching.decode(v)).items()
                              if k2 != "hour"}
                             for a, v in _under(pairs, keeper.MATCHING + keeper.k8(h))]}
    rec = keeper.hour_record(state, h)
    return {"hour": h, "open": keeper.is_open(state, h),
            "slots": hour_slots,
            "issued": [s for s in hour_slots if keeper.slot_record(state, s) is not None],
            "closed": None if rec is None else rec.to_obj(),
            "matching": [{"address": a, **m.to_obj(),
                          "residual_wh": m.consumption_wh - m.cancelled_wh - m.stored_wh}
                         for a, m in keeper.matchings_of_hour(state, h)]}


def storage_reading(state: State, history: History | None, arg: str) -> dict[str, Any] | None:
    """``certificates/storage_reading/<slot>/<cp>``: the battery sub-meter of one slot
    ``{charged_wh, discharged_wh, meter, stored_wh}`` (None: not reported)."""
    slot_s, _, cp = arg.partition("/")
    slot = int(slot_s)
    r = keeper.storage_reading(state, slot, cp)
    if r is not None:
        return r.to_obj()
    h = hour_of(slot, load_params(state).slot_seconds)
    key = keeper.STORAGE_READING + keeper.k8(slot) + cp.encode()
    raw = dict(_archived(state, history, h)).get(key)
    return None if raw is None else {**StorageReading.decode(raw).to_obj(), "archived": h}


def hours(state: State, _arg: str) -> dict[str, Any]:
    """``certificates/hours``: open hours and the records of closed ones (archived hours'
    from their archive entries)."""
    closed: list[dict[str, Any]] = []
    for h, a in keeper.archives(state):
        closed.append({"hour": h, "consumption_wh": a.consumption_wh,
                       "cancelled_wh": a.cancelled_wh, "stored_wh": a.stored_wh,
                       "expired_wh": a.expired_wh, "residual_wh": a.residual_wh,
                       "closed_at": a.closed_at, "archived": True})
    for h in keeper.closed_hours(state):
        rec = keeper.hour_record(state, h)
        if rec is not None:
            closed.append({"hour": h, **rec.to_obj()})
    return {"open": keeper.open_hours(state), "closed": closed}


def archives(state: State, _arg: str) -> list[dict[str, Any]]:
    """``certificates/archives``: every archived hour's entry ``{hour, key, root, records,
    height, ...}`` (the records are in block ``height``'s ``certificates_archived`` event)."""
    return [{"hour": h, "key": keeper.archive_key(h).hex(), **a.to_obj()}
            for h, a in keeper.archives(state)]


def record_proof(state: State, history: History | None, arg: str) -> dict[str, Any] | None:
    """``certificates/record_proof/<key hex>``: level one of an archived record's proof —
    ``{record: {hour, key, value, index, size, path}, entry_key, entry}`` — whose entry key
    ``proof/<entry_key>`` proves against the state root (None: the key is live, not a
    certificates record, not archived, or its hour's records are not readable here)."""
    key = bytes.fromhex(arg)
    if state.get(key) is not None:
        return None
    p = load_params(state)
    h = keeper.hour_of_record_key(key, (p.slot_seconds, period_seconds(p.slot_seconds)))
    if h is None:
        return None
    entry = keeper.archive(state, h)
    proof = prove_record(h, _archived(state, history, h), key)
    if entry is None or proof is None:
        return None
    return {"record": proof.to_json(), "entry_key": keeper.archive_key(h).hex(),
            "entry": entry.to_obj()}


VIEWS = {"config": config, "devices": devices, "pseudonym_class": pseudonym_class,
         "totals": totals, "storage": storage, "hours": hours, "archives": archives}
HISTORY_VIEWS = {"bundle": bundle, "bundles": bundles, "issuances": issuances, "slots": slots,
                 "matching": matching, "storage_reading": storage_reading, "hour": hour,
                 "record_proof": record_proof}
