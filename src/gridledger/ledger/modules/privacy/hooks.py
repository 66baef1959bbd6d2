"""End-of-block work: close epochs (pseudonym balances back to the pool), pay or dispute
claims, and decode and check secure-aggregation rounds (``aggregation.py``)."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.market.keeper import unsettled_slots
from gridledger.ledger.modules.market.types import settlement_deadline
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.aggregation import process_aggregates
from gridledger.ledger.modules.privacy.roaming import release_expired
from gridledger.ledger.modules.privacy.types import (
    PrivacyConfig,
    dispute_id_for_pool,
    pool_address,
)
from gridledger.ledger.modules.reputation.keeper import adjust
from gridledger.ledger.state import State


def end_block(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
    cfg = keeper.config(state)
    if cfg is None:
        return
    p = load_params(state)
    process_aggregates(state, ctx, cfg, events)
    release_expired(state, ctx, events)
    for epoch in keeper.open_epochs(state):
        rec = keeper.get_epoch(state, epoch)
        if rec["status"] == "open":
            last = (epoch + 1) * cfg.epoch_slots - 1
            due = settlement_deadline(last, p) + cfg.close_delay_s
            if ctx.slot_time >= due and not any(s <= last for s in unsettled_slots(state)):
                _close_epoch(state, ctx, cfg, epoch, rec, events)
        elif rec["status"] == "claims" and ctx.slot_time >= rec["claims_deadline"]:
            _decide_claims(state, ctx, cfg, epoch, rec, events)


def _close_epoch(state: State, ctx: BlockContext, cfg: PrivacyConfig, epoch: int,
                 rec: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Every pseudonym of the epoch has settled: its spendable balance goes back to the pool."""
    pool = pool_address(epoch)
    swept = 0
    for addr in keeper.pseudonyms_of_epoch(state, epoch):
        bal = bank.balance(state, addr)
        if bal:
            bank.move(state, addr, pool, bal)
        swept += bal
        keeper.put_pseudonym(state, addr, {**keeper.get_pseudonym(state, addr),
                                           "final_micro": bal})
    deadline = ctx.slot_time + cfg.claim_window_s
    keeper.put_epoch(state, epoch, {**rec, "status": "claims", "claims_deadline": deadline,
                                    "swept_micro": swept})
    events.append({"type": "epoch_closed", "epoch": epoch, "pseudonyms": rec["registered"],
                   "pool_micro": bank.balance(state, pool), "claims_deadline": deadline})


def _decide_claims(state: State, ctx: BlockContext, cfg: PrivacyConfig, epoch: int,
                   rec: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Claims that add up to the pool are paid; any other total freezes the pool and records
    a dispute under which the trustees open the epoch's pseudonyms."""
    pool = pool_address(epoch)
    held = bank.balance(state, pool)
    claims = keeper.claims_of_epoch(state, epoch)
    total = sum(a for _, a in claims)
    if total == held and len(claims) == rec["members"]:
        for member, amount in claims:
            if amount:
                bank.move(state, pool, member, amount)
        keeper.put_epoch(state, epoch, {**rec, "status": "paid"})
        events.append({"type": "pool_paid", "epoch": epoch, "members": len(claims),
                       "paid_micro": total})
        return
    did = dispute_id_for_pool(epoch)
    keeper.put_dispute(state, did, {"kind": "pool", "epoch": epoch, "targets": []})
    keeper.put_epoch(state, epoch, {**rec, "status": "disputed"})
    events.append({"type": "pool_disputed", "epoch": epoch, "dispute": did,
                   "claims_micro": total, "pool_micro": held, "claims": len(claims),
                   "members": rec["members"], "pseudonyms": rec["registered"]})
    if rec["registered"] == 0:  # nothing to open: every member's due is its deposit
        resolve_pool_if_opened(state, ctx, cfg, epoch, events)


def member_dues(state: State, cfg: PrivacyConfig, epoch: int) -> dict[bytes, int] | None:
    """What each member is owed from the pool (None until every pseudonym is opened):
    deposit - allowances its pseudonyms drew + their final balances. An identity with
    pseudonyms but no tickets (a stolen ticket) is owed a negative amount."""
    owners: dict[bytes, list[int]] = {}
    for addr in keeper.pseudonyms_of_epoch(state, epoch):
        opening = keeper.get_opening(state, addr)
        if opening is None:
            return None
        final = keeper.get_pseudonym(state, addr)["final_micro"] or 0
        owners.setdefault(opening["identity"], []).append(final)
    dues = {m: t * cfg.allowance_micro for m, t in keeper.joined_members(state, epoch)}
    for owner, finals in owners.items():
        dues[owner] = dues.get(owner, 0) - len(finals) * cfg.allowance_micro + sum(finals)
    return dues


def resolve_pool_if_opened(state: State, ctx: BlockContext, cfg: PrivacyConfig, epoch: int,
                           events: list[dict[str, Any]]) -> None:
    """Once all pseudonyms of a disputed epoch are opened: pay the true dues, collect what
    a ticket thief owes, and sanction every member whose claim was not its due."""
    rec = keeper.get_epoch(state, epoch)
    if rec["status"] != "disputed":
        return
    dues = member_dues(state, cfg, epoch)
    if dues is None:
        return
    pool = pool_address(epoch)
    slot = ctx.slot_time // load_params(state).slot_seconds
    for member in sorted(dues):  # collect debts first, then pay
        if dues[member] < 0:
            take = min(-dues[member], bank.balance(state, member))
            if take:
                bank.move(state, member, pool, take)
    for member in sorted(dues):
        if dues[member] > 0:
            bank.move(state, pool, member, min(dues[member], bank.balance(state, pool)))
    claims = dict(keeper.claims_of_epoch(state, epoch))
    for member in sorted(dues):
        claimed = claims.get(member)
        if claimed is not None and claimed > dues[member] or dues[member] < 0:
            events.append({"type": "pool_overclaim", "epoch": epoch, "member": member,
                           "claimed_micro": claimed, "due_micro": dues[member]})
            events.append(adjust(state, member, "dispute_lost", slot))
    keeper.put_epoch(state, epoch, {**rec, "status": "paid"})
    events.append({"type": "pool_paid", "epoch": epoch, "members": len(dues),
                   "paid_micro": sum(d for d in dues.values() if d > 0),
                   "left_micro": bank.balance(state, pool)})
