"""Certificate read-only views, served by ``Application.query("certificates/<view>/<arg>")``.

Bundles are named ``<slot>:<start>`` (the slot of the energy, the bundle's first GC id).
"""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.certificates import keeper
from gridledger.ledger.modules.certificates.types import Bundle, hour_of, slots_of_hour
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


def bundle(state: State, arg: str) -> dict[str, Any] | None:
    """``certificates/bundle/<slot>:<start>``: one bundle (None: no bundle starts there)."""
    slot, start = parse_bundle_id(arg)
    b = keeper.bundle(state, slot, start)
    return None if b is None else bundle_obj(slot, start, b)


def bundles(state: State, arg: str) -> list[dict[str, Any]]:
    """``certificates/bundles/<slot>`` (one slot) or ``certificates/bundles`` (all)."""
    if arg:
        slot = int(arg)
        return [bundle_obj(slot, s, b) for s, b in keeper.bundles_of_slot(state, slot)]
    out = []
    for slot, _rec in keeper.slot_records(state):
        out += [bundle_obj(slot, s, b) for s, b in keeper.bundles_of_slot(state, slot)]
    return out


def issuances(state: State, arg: str) -> list[dict[str, Any]]:
    """``certificates/issuances/<slot>``: each device's issuance for the slot."""
    slot = int(arg)
    return [{"slot": slot, "cp": cp, **i.to_obj()} for cp, i in keeper.issuances_of_slot(state, slot)]


def slots(state: State, _arg: str) -> list[dict[str, Any]]:
    """``certificates/slots``: every issued slot's record."""
    return [{"slot": s, **r.to_obj()} for s, r in keeper.slot_records(state)]


def totals(state: State, _arg: str) -> dict[str, Any]:
    """``certificates/totals``: running totals (Wh) and the residual-mix energy so far
    (import no GC covers, open hours included)."""
    t = keeper.totals(state)
    return {**t.to_obj(), "residual_wh": t.consumption_wh - t.cancelled_wh - t.stored_wh}


def matching(state: State, arg: str) -> list[dict[str, Any]]:
    """``certificates/matching[/<addr hex>]``: per holder and hour ``{hour, address,
    consumption_wh, cancelled_wh, stored_wh, residual_wh}`` (hourly, 24/7 matching)."""
    only = bytes.fromhex(arg) if arg else None
    return [{"hour": h, "address": a, **m.to_obj(),
             "residual_wh": m.consumption_wh - m.cancelled_wh - m.stored_wh}
            for h, a, m in keeper.all_matchings(state) if only is None or a == only]


def storage(state: State, arg: str) -> dict[str, Any]:
    """``certificates/storage/<cp>``: the battery's Storage Charge Records and totals."""
    return keeper.storage_account(state, arg).to_obj()


def hour(state: State, arg: str) -> dict[str, Any]:
    """``certificates/hour/<hour>``: whether it is open, which of its slots were issued, its
    closing record (once closed) and every holder's matching row in it."""
    h = int(arg)
    p = load_params(state)
    rec = keeper.hour_record(state, h)
    return {"hour": h, "open": keeper.is_open(state, h),
            "slots": list(slots_of_hour(h, p.slot_seconds)),
            "issued": [s for s in slots_of_hour(h, p.slot_seconds)
                       if keeper.slot_record(state, s) is not None],
            "closed": None if rec is None else rec.to_obj(),
            "matching": [{"address": a, **m.to_obj(),
                          "residual_wh": m.consumption_wh - m.cancelled_wh - m.stored_wh}
                         for a, m in keeper.matchings_of_hour(state, h)]}


def storage_reading(state: State, arg: str) -> dict[str, Any] | None:
    """``certificates/storage_reading/<slot>/<cp>``: the battery sub-meter of one slot
    ``{charged_wh, discharged_wh, meter, stored_wh}`` (None: not reported)."""
    slot, _, cp = arg.partition("/")
    r = keeper.storage_reading(state, int(slot), cp)
    return None if r is None else r.to_obj()


def hours(state: State, _arg: str) -> dict[str, Any]:
    """``certificates/hours``: open hours and the records of closed ones."""
    p = load_params(state)
    closed: list[dict[str, Any]] = []
    for slot, _rec in keeper.slot_records(state):
        h = hour_of(slot, p.slot_seconds)
        rec = keeper.hour_record(state, h)
        if rec is not None and (not closed or closed[-1]["hour"] != h):
            closed.append({"hour": h, **rec.to_obj()})
    return {"open": keeper.open_hours(state), "closed": closed}


VIEWS = {"config": config, "devices": devices, "pseudonym_class": pseudonym_class,
         "bundle": bundle, "bundles": bundles,
         "issuances": issuances, "slots": slots, "totals": totals, "matching": matching,
         "storage": storage, "storage_reading": storage_reading, "hour": hour, "hours": hours}
