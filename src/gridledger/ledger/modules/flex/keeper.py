"""The only code that touches ``flex/`` keys.

Money the module holds is a bank lock AND a field of one record (a request's
``escrow_micro``, an offer's ``deposit_micro``); ``hold`` / ``release`` / ``pay_held``
move both together, and the ``flex-escrow-backed`` invariant checks they agree.
"""

from __future__ import annotations

from gridledger.ledger.modules.flex.types import Config, Devices, Offer, Request, VenBinding
from gridledger.ledger.state import State

CONFIG = b"flex/cfg"
REQUEST = b"flex/r/"      # + request id -> Request
OFFER = b"flex/o/"        # + request id + offer id -> Offer
COUNT = b"flex/n/"        # + request id + owner -> offers the owner has in the request
ACTIVE = b"flex/active"   # [request id] not yet settled, expired or cancelled
DONE = b"flex/done"       # [[done_at, request id]] finished, kept a dispute window
DEVICES = b"flex/dev/"    # + cp -> Devices
VEN = b"flex/ven/"        # + VEN address -> VenBinding
VEN_NAME = b"flex/vn/"    # + VEN name -> VEN address


# -- configuration and devices ------------------------------------------------------------------

def config(state: State) -> Config:
    """The programme's terms (defaults on a chain whose genesis has no ``flex`` section)."""
    obj = state.get_obj(CONFIG)
    return Config() if obj is None else Config.from_obj(obj)


def put_config(state: State, cfg: Config) -> None:
    state.set_obj(CONFIG, cfg.to_obj())


def devices(state: State, cp: str) -> Devices:
    obj = state.get_obj(DEVICES + cp.encode())
    return Devices(()) if obj is None else Devices.from_obj(obj)


def put_devices(state: State, cp: str, devs: Devices) -> None:
    if devs.devices:
        state.set_obj(DEVICES + cp.encode(), devs.to_obj())
    else:
        state.delete(DEVICES + cp.encode())


def all_devices(state: State) -> list[tuple[str, Devices]]:
    return [(k[len(DEVICES):].decode(), Devices.from_obj(v))
            for k, v in state.items_with_prefix(DEVICES)]


# -- requests and offers ------------------------------------------------------------------------

def request(state: State, rid: bytes) -> Request | None:
    obj = state.get_obj(REQUEST + rid)
    return None if obj is None else Request.from_obj(obj)


def put_request(state: State, rid: bytes, rec: Request) -> None:
    state.set_obj(REQUEST + rid, rec.to_obj())


def requests(state: State) -> list[tuple[bytes, Request]]:
    """Every stored request, by id."""
    return [(k[len(REQUEST):], Request.from_obj(v)) for k, v in state.items_with_prefix(REQUEST)]


def active(state: State) -> list[bytes]:
    """Requests not yet finished (open or ordered), by id."""
    return list(state.get_obj(ACTIVE, []))


def mark_active(state: State, rid: bytes) -> None:
    state.set_obj(ACTIVE, sorted({*active(state), rid}))


def mark_done(state: State, rid: bytes) -> None:
    rest = [r for r in active(state) if r != rid]
    if rest:
        state.set_obj(ACTIVE, rest)
    else:
        state.delete(ACTIVE)


def mark_finished(state: State, rid: bytes, done_at: int) -> None:
    """``rid`` finished at ``done_at``: no longer active, pruned a dispute window later."""
    mark_done(state, rid)
    state.set_obj(DONE, sorted([*state.get_obj(DONE, []), [done_at, rid]]))


def finished(state: State) -> list[tuple[int, bytes]]:
    """``(done_at, request id)`` of finished requests still in state, oldest first."""
    return [(int(t), bytes(r)) for t, r in state.get_obj(DONE, [])]


def prune(state: State, rid: bytes) -> None:
    """Drop a finished request and its offers; blocks and receipts keep the history."""
    for k in state.keys_with_prefix(OFFER + rid):
        state.delete(k)
    state.delete(REQUEST + rid)
    rest = [[t, r] for t, r in state.get_obj(DONE, []) if r != rid]
    if rest:
        state.set_obj(DONE, rest)
    else:
        state.delete(DONE)


def offer(state: State, rid: bytes, oid: bytes) -> Offer | None:
    obj = state.get_obj(OFFER + rid + oid)
    return None if obj is None else Offer.from_obj(obj)


def put_offer(state: State, rid: bytes, oid: bytes, rec: Offer) -> None:
    state.set_obj(OFFER + rid + oid, rec.to_obj())


def delete_offer(state: State, rid: bytes, oid: bytes) -> None:
    state.delete(OFFER + rid + oid)


def offers_of(state: State, rid: bytes) -> list[tuple[bytes, Offer]]:
    """``(offer id, offer)`` of a request, by offer id."""
    prefix = OFFER + rid
    return [(k[len(prefix):], Offer.from_obj(v)) for k, v in state.items_with_prefix(prefix)]


def all_offers(state: State) -> list[tuple[bytes, bytes, Offer]]:
    """``(request id, offer id, offer)`` of every stored offer."""
    n = len(OFFER)
    return [(k[n:n + 32], k[n + 32:], Offer.from_obj(v)) for k, v in state.items_with_prefix(OFFER)]


def offer_count(state: State, rid: bytes, owner: bytes) -> int:
    return state.get_int(COUNT + rid + owner)


def set_offer_count(state: State, rid: bytes, owner: bytes, n: int) -> None:
    if n > 0:
        state.set_int(COUNT + rid + owner, n)
    else:
        state.delete(COUNT + rid + owner)


def drop_counts(state: State, rid: bytes) -> None:
    for k in state.keys_with_prefix(COUNT + rid):
        state.delete(k)


# -- VENs ------------------------------------------------------------------------------------------

def ven(state: State, addr: bytes) -> VenBinding | None:
    """The enrolment of the VEN whose reporting key has address ``addr``."""
    obj = state.get_obj(VEN + addr)
    return None if obj is None else VenBinding.from_obj(obj)


def ven_by_name(state: State, name: str) -> tuple[bytes, VenBinding] | None:
    """``(VEN address, enrolment)`` of the VEN called ``name`` (its OAuth client id)."""
    addr: bytes | None = state.get_obj(VEN_NAME + name.encode())
    if addr is None:
        return None
    b = ven(state, addr)
    return None if b is None else (addr, b)


def put_ven(state: State, addr: bytes, b: VenBinding) -> None:
    state.set_obj(VEN + addr, b.to_obj())
    state.set_obj(VEN_NAME + b.name.encode(), addr)


def vens(state: State) -> list[tuple[bytes, VenBinding]]:
    return [(k[len(VEN):], VenBinding.from_obj(v)) for k, v in state.items_with_prefix(VEN)]


# -- money ------------------------------------------------------------------------------------------

def holds(state: State) -> dict[bytes, int]:
    """Money the module holds per owner: open escrows and deposits (micro-units)."""
    out: dict[bytes, int] = {}
    for _, r in requests(state):
        if r.escrow_micro:
            out[r.dso] = out.get(r.dso, 0) + r.escrow_micro
    for _, _, o in all_offers(state):
        if o.deposit_micro:
            out[o.owner] = out.get(o.owner, 0) + o.deposit_micro
    return out
