"""Flexibility read-only views, served by ``Application.query("flex/<view>/<arg>")``: what
the simulator, the API and the OpenADR VTN read instead of the module's keys."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.flex import keeper
from gridledger.ledger.modules.flex.types import Offer, Request
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State


def _request(rid: bytes, r: Request) -> dict[str, Any]:
    return {"id": rid, **r.to_obj()}


def _offer(rid: bytes, oid: bytes, o: Offer) -> dict[str, Any]:
    return {"request": rid, "id": oid, **o.to_obj()}


def request(state: State, arg: str) -> dict[str, Any] | None:
    """``flex/request/<id hex>``: the request record (None: unknown or pruned)."""
    rid = bytes.fromhex(arg)
    r = keeper.request(state, rid)
    return None if r is None else _request(rid, r)


def requests(state: State, _arg: str) -> list[dict[str, Any]]:
    """``flex/requests``: every request still in state, by id."""
    return [_request(rid, r) for rid, r in keeper.requests(state)]


def offers(state: State, arg: str) -> list[dict[str, Any]]:
    """``flex/offers/<request id hex>``: the request's offers, by offer id."""
    rid = bytes.fromhex(arg)
    return [_offer(rid, oid, o) for oid, o in keeper.offers_of(state, rid)]


def activations(state: State, arg: str) -> list[dict[str, Any]]:
    """``flex/activations/<member hex>``: every activated offer of a member with its
    request's window and direction (what an OpenADR VTN turns into events)."""
    member = bytes.fromhex(arg)
    out = []
    for rid, oid, o in keeper.all_offers(state):
        if o.owner != member or o.activated_wh is None:
            continue
        r = keeper.request(state, rid)
        if r is None:
            continue
        out.append({**_offer(rid, oid, o), "first_slot": r.first_slot, "direction": r.direction,
                    "area": r.area, "status": r.status, "dso": r.dso})
    return out


def devices(state: State, arg: str) -> list[dict[str, Any]]:
    """``flex/devices/<cp>``: the flexible devices registered at a cp."""
    return [d.to_obj() for d in keeper.devices(state, arg).devices]


def ven(state: State, arg: str) -> dict[str, Any] | None:
    """``flex/ven/<name>``: the VEN enrolled under an OAuth client id: ``{address, member,
    name, secret_hash}`` (None: not enrolled)."""
    hit = keeper.ven_by_name(state, arg)
    if hit is None:
        return None
    addr, b = hit
    return {"address": addr, **b.to_obj()}


def config(state: State, _arg: str) -> dict[str, Any]:
    """``flex/config``: the programme's terms, with the chain's ``slot_seconds`` and
    ``settle_window_s`` (what a VTN needs to turn slots into intervals)."""
    p = load_params(state)
    return {**keeper.config(state).to_obj(), "slot_seconds": p.slot_seconds,
            "settle_window_s": p.settle_window_s}


VIEWS = {"request": request, "requests": requests, "offers": offers,
         "activations": activations, "devices": devices, "ven": ven, "config": config}
