"""Market handlers: orders, cancel/replace, sealed bids, operating envelopes."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvalidBody, Unauthorized
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.governance.types import Params
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.types import (
    MAX_ENVELOPES_PER_TX,
    MAX_SALT_LEN,
    buyer_escrow_micro,
    gate_closure,
    order_commitment,
    parse_energy,
    parse_price,
    parse_side,
    parse_slot,
    require_exact_fields,
    reveal_deadline,
    seller_deposit_micro,
    seller_deposit_rate,
    slot_start,
)
from gridledger.ledger.modules.registry.keeper import get_participant
from gridledger.ledger.modules.reputation.keeper import deposit_pct, tier_of
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_bytes
from gridledger.market import MAX_ENERGY_WH


def _params_for_trading(state: State) -> Params:
    p = load_params(state)
    if p.grid_account is None:
        raise InvalidBody("market-disabled: no grid account (a dso in genesis or param grid_account)")
    return p


def _check_trader(state: State, addr: bytes, side: str | None, new_exposure: bool,
                  slot: int) -> None:
    """Trading identity rules: a connection point, sell needs prosumer, no suspension, and a
    pseudonym trades only in the slots its certificate names."""
    p = get_participant(state, addr)
    if p is None or not p.get("cp"):
        raise Unauthorized("no-connection-point: only identities holding a cp trade energy")
    valid = p.get("valid_slots")
    if valid is not None and not valid[0] <= slot <= valid[1]:
        raise Unauthorized(f"pseudonym-slot: this pseudonym trades only in slots "
                           f"{valid[0]}..{valid[1]}")
    if side == "sell" and "prosumer" not in p["roles"]:
        raise Unauthorized("sell-needs-prosumer: consumers can only buy")
    if new_exposure and tier_of(state, addr) == "suspended":
        raise Unauthorized("reputation-suspended: suspended from trading until an appeal")


def _check_before_gate(slot: int, now: int, p: Params) -> None:
    gate = gate_closure(slot, p)
    if now >= gate:
        raise InvalidBody(f"gate-closed: slot {slot} closed at {gate}, block time is {now}")
    if slot_start(slot, p) - now > p.order_horizon_slots * p.slot_seconds:
        raise InvalidBody(f"beyond-horizon: slot {slot} is more than {p.order_horizon_slots} slots ahead")


def place_order(state: State, p: Params, owner: bytes, slot: int, oid: bytes, side: str,
                energy_wh: int, price: int, seq: int, sealed: bool) -> dict[str, Any]:
    """Lock the order's escrow (buy) or delivery deposit (sell) and store it."""
    rate = 0
    if side == "buy":
        held = buyer_escrow_micro(energy_wh, price, p)
    else:
        rate = seller_deposit_rate(p, deposit_pct(state, owner))
        held = seller_deposit_micro(energy_wh, rate)
    keeper.hold(state, owner, held)
    rec = {"owner": owner, "side": side, "energy_wh": energy_wh, "price_micro_per_kwh": price,
           "held_micro": held, "deposit_rate": rate, "seq": seq, "sealed": sealed, "filled_wh": 0}
    keeper.put_order(state, slot, oid, rec)
    keeper.mark_open(state, slot)
    return rec


def _order_event(ctx: TxContext, slot: int, oid: bytes, rec: dict[str, Any]) -> None:
    ctx.emit("order_placed", slot=slot, order_id=oid, owner=rec["owner"], side=rec["side"],
             energy_wh=rec["energy_wh"], price_micro_per_kwh=rec["price_micro_per_kwh"],
             held_micro=rec["held_micro"], sealed=rec["sealed"])


def handle_order(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``market/order {slot, side, energy_wh, price_micro_per_kwh}``; id = the tx hash."""
    require_exact_fields(body, "market/order", {"slot", "side", "energy_wh", "price_micro_per_kwh"})
    slot, side = parse_slot(body), parse_side(body)
    energy, price = parse_energy(body), parse_price(body)
    p = _params_for_trading(state)
    _check_before_gate(slot, ctx.block.slot_time, p)
    _check_trader(state, ctx.sender, side, new_exposure=True, slot=slot)
    keeper.bump_count(state, slot, ctx.sender, side, p.max_orders_per_slot)
    rec = place_order(state, p, ctx.sender, slot, ctx.tx_hash, side, energy, price,
                      keeper.next_seq(state), sealed=False)
    _order_event(ctx, slot, ctx.tx_hash, rec)


def _take_own_order(state: State, ctx: TxContext, slot: int, oid: bytes) -> dict[str, Any]:
    rec = keeper.get_order(state, slot, oid)
    if rec is None:
        raise InvalidBody(f"no-order: no order {oid.hex()[:16]}… in slot {slot}")
    if rec["owner"] != ctx.sender:
        raise Unauthorized("not-owner: only the order's owner may change it")
    keeper.release(state, ctx.sender, rec["held_micro"])
    keeper.delete_order(state, slot, oid)
    return rec


def handle_cancel(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``market/cancel {slot, order_id}``: an order or a sealed commitment, before the gate."""
    require_exact_fields(body, "market/cancel", {"slot", "order_id"})
    slot = parse_slot(body)
    oid = require_bytes(body, "order_id", exact=32)
    p = load_params(state)
    _check_before_gate(slot, ctx.block.slot_time, p)
    com = keeper.get_commit(state, slot, oid)
    if com is not None:
        if com["owner"] != ctx.sender:
            raise Unauthorized("not-owner: only the committer may cancel a commitment")
        keeper.release(state, ctx.sender, com["deposit_micro"])
        keeper.delete_commit(state, slot, oid)
        released = com["deposit_micro"]
    else:
        released = _take_own_order(state, ctx, slot, oid)["held_micro"]
    keeper.drop_count(state, slot, ctx.sender)
    ctx.emit("order_cancelled", slot=slot, order_id=oid, owner=ctx.sender, released_micro=released)


def handle_replace(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``market/replace {slot, order_id, energy_wh, price_micro_per_kwh}``: same side, new
    id (the tx hash) and new time priority; escrow is re-locked for the new terms."""
    require_exact_fields(body, "market/replace", {"slot", "order_id", "energy_wh", "price_micro_per_kwh"})
    slot = parse_slot(body)
    oid = require_bytes(body, "order_id", exact=32)
    energy, price = parse_energy(body), parse_price(body)
    p = _params_for_trading(state)
    _check_before_gate(slot, ctx.block.slot_time, p)
    _check_trader(state, ctx.sender, None, new_exposure=True, slot=slot)
    old = _take_own_order(state, ctx, slot, oid)
    rec = place_order(state, p, ctx.sender, slot, ctx.tx_hash, old["side"], energy, price,
                      keeper.next_seq(state), sealed=False)
    ctx.emit("order_replaced", slot=slot, old_order_id=oid, order_id=ctx.tx_hash)
    _order_event(ctx, slot, ctx.tx_hash, rec)


def handle_commit(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``market/commit {slot, commitment}``: a sealed bid; locks ``commit_deposit_micro``."""
    require_exact_fields(body, "market/commit", {"slot", "commitment"})
    slot = parse_slot(body)
    commitment = require_bytes(body, "commitment", exact=32)
    p = _params_for_trading(state)
    _check_before_gate(slot, ctx.block.slot_time, p)
    _check_trader(state, ctx.sender, None, new_exposure=True, slot=slot)
    keeper.bump_count(state, slot, ctx.sender, None, p.max_orders_per_slot)
    keeper.hold(state, ctx.sender, p.commit_deposit_micro)
    keeper.put_commit(state, slot, ctx.tx_hash, {"owner": ctx.sender, "commitment": commitment,
                                                 "deposit_micro": p.commit_deposit_micro,
                                                 "seq": keeper.next_seq(state)})
    keeper.mark_open(state, slot)
    ctx.emit("committed", slot=slot, commit_id=ctx.tx_hash, owner=ctx.sender,
             deposit_micro=p.commit_deposit_micro)


def handle_reveal(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``market/reveal {slot, commit_id, side, energy_wh, price_micro_per_kwh, salt}`` in the
    reveal window; the order keeps the commitment's id and time priority."""
    require_exact_fields(body, "market/reveal",
                         {"slot", "commit_id", "side", "energy_wh", "price_micro_per_kwh", "salt"})
    slot, side = parse_slot(body), parse_side(body)
    cid = require_bytes(body, "commit_id", exact=32)
    energy, price = parse_energy(body), parse_price(body)
    salt = require_bytes(body, "salt", max_len=MAX_SALT_LEN)
    p = _params_for_trading(state)
    now, gate, deadline = ctx.block.slot_time, gate_closure(slot, p), reveal_deadline(slot, p)
    if not gate <= now < deadline:
        raise InvalidBody(f"outside-reveal-window: reveals for slot {slot} in [{gate}, {deadline})")
    com = keeper.get_commit(state, slot, cid)
    if com is None:
        raise InvalidBody(f"no-commitment: {cid.hex()[:16]}… in slot {slot}")
    if com["owner"] != ctx.sender:
        raise Unauthorized("not-owner: only the committer may reveal")
    if order_commitment(ctx.sender, slot, side, energy, price, salt) != com["commitment"]:
        raise InvalidBody("commitment-mismatch: the revealed order does not open the commitment")
    # Suspension does not block a reveal: the bid was placed before it; blocking it would
    # add a forfeit to the sanction.
    _check_trader(state, ctx.sender, side, new_exposure=False, slot=slot)
    keeper.reveal_side(state, slot, ctx.sender, side)
    keeper.release(state, ctx.sender, com["deposit_micro"])
    keeper.delete_commit(state, slot, cid)
    # If the escrow cannot be locked the whole reveal fails and the commitment forfeits.
    rec = place_order(state, p, ctx.sender, slot, cid, side, energy, price, com["seq"], sealed=True)
    _order_event(ctx, slot, cid, rec)


def handle_envelope(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``market/envelope {slot, envelopes: [[cp, import_max_wh, export_max_wh], ...]}`` (dso),
    until the slot clears; a later envelope for the same cp replaces the earlier one."""
    require_exact_fields(body, "market/envelope", {"slot", "envelopes"})
    slot = parse_slot(body)
    p = load_params(state)
    now, deadline = ctx.block.slot_time, reveal_deadline(slot, p)
    if now >= deadline:
        raise InvalidBody(f"envelope-late: slot {slot} clears at {deadline}")
    envs = body["envelopes"]
    if not isinstance(envs, list) or not 0 < len(envs) <= MAX_ENVELOPES_PER_TX:
        raise InvalidBody(f"field 'envelopes' must be a list of 1..{MAX_ENVELOPES_PER_TX} entries")
    seen: set[str] = set()
    for e in envs:
        ok = (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and 0 < len(e[0]) <= 64
              and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_ENERGY_WH
                      for x in e[1:]))
        if not ok:
            raise InvalidBody(f"envelope entry must be [cp, import_max_wh, export_max_wh] with "
                              f"0 <= Wh <= {MAX_ENERGY_WH}")
        if e[0] in seen:
            raise InvalidBody(f"duplicate envelope for cp {e[0]!r}")
        seen.add(e[0])
        keeper.put_envelope(state, slot, e[0], e[1], e[2])
    keeper.mark_open(state, slot)
    ctx.emit("envelopes_set", slot=slot, count=len(envs), dso=ctx.sender)
