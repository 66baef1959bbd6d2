"""Flexibility settlement (USEF FlexSettlement), slot by slot, against signed meter readings.

For an activated offer of ``a`` Wh in slot ``k``, at the slot's settlement deadline (the
market's: every reading and false-data flag is in):

1. **Metered net injection** ``m`` = export - import of the cp's trusted reading (the
   meter's, or the DSO's network estimate when false-data detection flagged it). No reading:
   nothing was delivered.
2. **Baseline** ``b``. Method ``declared``: the member's prognosis in its offer (USEF's
   default baseline is the D-prognosis; shapeshifter UFTP spec, settle phase), but never
   more favourable to the member than the DSO's reference for that cp and slot: for ``up``
   ``b = max(declared, reference)``, for ``down`` ``b = min(declared, reference)``. A declared
   baseline more favourable than the reference by more than ``baseline_band_pct`` (at least
   ``baseline_band_min_wh``) is implausible: event ``baseline_capped``, a fault. Method
   ``reference``: ``b`` = the reference (a standard baseline the DSO computed, e.g. PG&E's
   "high 5 of 10 days", ``gridledger.flex.baselines``).
3. **Delivered** ``d = clamp(m - b, 0, a)`` for ``up`` (``b - m`` for ``down``).
4. **Payment**, pay as bid, pro rata: the offer's payments so far are ``floor(sum(d) x
   price / 1000)`` (one rounding per offer, the carry rule), from the DSO's escrow.
5. **Penalty** for shortfall beyond the tolerance band: ``s = max(0, a - d - floor(a x
   tolerance_pct / 100))``; the offer's penalties so far are ``ceil(sum(s) x deposit_rate /
   1000)``, from its deposit to the DSO (GSY DEX remuneration: pay ``min(req, deliv)``,
   penalise shortfall beyond the under-tolerance).
6. **Claims**: a report claiming more than ``d`` plus the tolerance is refused as evidence
   (event ``claim_rejected``, a fault): settlement never pays on a claim.

When the request's last slot has settled: deposits and the unspent escrow return, and a
member whose offer fell short beyond tolerance or had faults loses reputation
(``non_delivery``, once per cause). A sanctioned pseudonym's sanction is handed to
``Deps.disputes`` in the same block (a recorded dispute of kind ``flex``, privacy): the
trustees may open it and its owner takes the loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.module import BlockHook
from gridledger.ledger.modules.flex import keeper
from gridledger.ledger.modules.flex.expected import Deps, Sanction
from gridledger.ledger.modules.flex.handlers import close_request
from gridledger.ledger.modules.flex.types import (
    Config,
    Eligible,
    Offer,
    Request,
    settlement_deadline,
    slot_start,
)
from gridledger.ledger.params import Params, load_params, slot_of
from gridledger.ledger.state import State
from gridledger.market.rounding import ceil_micro


def make_end_block(deps: Deps) -> BlockHook:
    """The end-of-block hook, wired to the module's dependencies."""

    def end_block(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
        """Expire un-ordered requests whose window started, settle every slot due, prune
        requests finished a dispute window ago. A block with nothing due reads two keys."""
        now = ctx.slot_time
        p: Params | None = None
        for rid in keeper.active(state):
            r = keeper.request(state, rid)
            if r is None:
                continue
            p = p or load_params(state)
            if r.status == "open" and now >= slot_start(r.first_slot, p):
                close_request(deps, state, rid, r, "expired", now)
                events.append({"type": "flex_expired", "request": rid, "offers": r.offers})
            elif r.status == "ordered":
                _Settlement(deps, state, ctx, p, rid, r, events).run(now)
        done = keeper.finished(state)
        if done:
            p = p or load_params(state)
            for done_at, rid in done:
                if now >= done_at + p.dispute_window_s:
                    keeper.prune(state, rid)

    return end_block


def baseline_of(r: Request, elig: Eligible, o: Offer, k: int, cfg: Config) -> tuple[int, bool]:
    """``(baseline Wh, implausible)`` for slot ``k`` of offer ``o`` (rule 2 above)."""
    ref = elig.reference_wh[k]
    if r.baseline == "reference":
        return ref, False
    declared = o.baseline_wh[k]
    favour = ref - declared if r.direction == "up" else declared - ref
    slack = max(abs(ref) * cfg.baseline_band_pct // 100, cfg.baseline_band_min_wh)
    base = max(declared, ref) if r.direction == "up" else min(declared, ref)
    return base, favour > slack


def shortfall_wh(activated_wh: int, delivered_wh: int, tolerance_pct: int) -> int:
    """Energy short beyond the tolerance band (rule 5)."""
    return max(0, activated_wh - delivered_wh - activated_wh * tolerance_pct // 100)


class _Settlement:
    """Settle the due slots of one ordered request."""

    def __init__(self, deps: Deps, state: State, ctx: BlockContext, p: Params, rid: bytes,
                 r: Request, events: list[dict[str, Any]]) -> None:
        self.deps, self.state, self.ctx, self.p, self.rid, self.r = deps, state, ctx, p, rid, r
        self.events = events
        self.cfg = keeper.config(state)

    def run(self, now: int) -> None:
        r = self.r
        done = r.settled or 0
        while done < r.n_slots and now >= settlement_deadline(r.first_slot + done, self.p):
            self._slot(done)
            done += 1
        if done == r.n_slots:
            self._finish(now)

    def _slot(self, k: int) -> None:
        state, r, bank = self.state, self.r, self.deps.bank
        slot = r.first_slot + k
        paid = pen = 0
        for oid, o in keeper.offers_of(state, self.rid):
            if o.activated_wh is None:
                continue
            o, pay, penalty = self._offer_slot(oid, o, k, slot)
            bank.pay_from_locked(state, r.dso, o.owner, pay)
            bank.pay_from_locked(state, o.owner, r.dso, penalty)
            keeper.put_offer(state, self.rid, oid, o)
            paid += pay
            pen += penalty
        self.r = r = dataclasses.replace(
            r, settled=k + 1, escrow_micro=r.escrow_micro - paid,
            paid_micro=(r.paid_micro or 0) + paid, penalties_micro=(r.penalties_micro or 0) + pen)
        keeper.put_request(state, self.rid, r)

    def _offer_slot(self, oid: bytes, o: Offer, k: int, slot: int) -> tuple[Offer, int, int]:
        r, cfg = self.r, self.cfg
        assert o.activated_wh is not None
        a = o.activated_wh[k]
        elig = r.eligible(o.cp)
        assert elig is not None  # an offer exists only for an eligible cp
        reading = self.deps.metering.trusted_reading_of(self.state, slot, o.cp)
        metered = reading.export_wh - reading.import_wh if reading is not None else None
        base, implausible = baseline_of(r, elig, o, k, cfg)
        d = 0
        if a and metered is not None:
            delta = metered - base if r.direction == "up" else base - metered
            d = min(max(delta, 0), a)
        delivered = (*(o.delivered_wh or ()), d)
        pay = sum(delivered) * o.price_micro_per_kwh // 1000 - (o.paid_micro or 0)
        acts = o.activated_wh[:len(delivered)]
        short = sum(shortfall_wh(x, y, cfg.tolerance_pct) for x, y in zip(acts, delivered, strict=False))
        penalty = min(ceil_micro(short * o.deposit_rate) - (o.penalty_micro or 0), o.deposit_micro)
        faults = 0
        if a and implausible:
            faults += 1
            self.events.append({"type": "baseline_capped", "request": self.rid, "offer": oid,
                                "member": o.owner, "slot": slot, "declared_wh": o.baseline_wh[k],
                                "reference_wh": elig.reference_wh[k], "baseline_wh": base})
        claim = o.claims_wh[k] if o.claims_wh is not None else -1
        if claim > d + a * cfg.tolerance_pct // 100:
            faults += 1
            self.events.append({"type": "claim_rejected", "request": self.rid, "offer": oid,
                                "member": o.owner, "slot": slot, "claimed_wh": claim,
                                "delivered_wh": d})
        if a:
            self.events.append({
                "type": "flex_delivery", "request": self.rid, "offer": oid, "member": o.owner,
                "cp": o.cp, "device": o.device, "slot": slot, "activated_wh": a,
                "delivered_wh": d, "baseline_wh": base, "metered_net_wh": metered,
                "payment_micro": pay, "penalty_micro": penalty})
        return dataclasses.replace(
            o, delivered_wh=delivered, paid_micro=(o.paid_micro or 0) + pay,
            penalty_micro=(o.penalty_micro or 0) + penalty,
            deposit_micro=o.deposit_micro - penalty,
            faults=((o.faults or 0) + faults) or None), pay, penalty

    def _finish(self, now: int) -> None:
        state, r, bank = self.state, self.r, self.deps.bank
        now_slot = slot_of(now, self.p)
        for oid, o in keeper.offers_of(state, self.rid):
            if o.activated_wh is None:
                continue
            bank.unlock(state, o.owner, o.deposit_micro)
            keeper.put_offer(state, self.rid, oid, dataclasses.replace(o, deposit_micro=0))
            delivered = o.delivered_wh or ()
            short = sum(shortfall_wh(a, d, self.cfg.tolerance_pct)
                        for a, d in zip(o.activated_wh, delivered, strict=False))
            causes = (1 if short else 0) + (1 if o.faults else 0)
            if causes:
                self.events.append(self.deps.reputation.adjust(state, o.owner, "non_delivery",
                                                               now_slot, times=causes))
                if self.deps.disputes is not None:
                    self.deps.disputes.record(state, self.ctx, Sanction(
                        self.rid, oid, o.owner, o.cp, r.first_slot, r.first_slot + r.n_slots - 1,
                        sum(o.activated_wh), sum(delivered), short, o.penalty_micro or 0,
                        o.faults or 0, causes), self.events)
            self.events.append({
                "type": "flex_settled", "request": self.rid, "offer": oid, "member": o.owner,
                "activated_wh": sum(o.activated_wh), "delivered_wh": sum(delivered),
                "shortfall_wh": short, "paid_micro": o.paid_micro or 0,
                "penalty_micro": o.penalty_micro or 0, "faults": o.faults or 0})
        bank.unlock(state, r.dso, r.escrow_micro)
        keeper.put_request(state, self.rid, dataclasses.replace(
            r, status="settled", escrow_micro=0, done_at=now))
        keeper.mark_finished(state, self.rid, now)
        self.events.append({"type": "flex_request_settled", "request": self.rid,
                            "cost_micro": r.cost_micro, "paid_micro": r.paid_micro,
                            "penalties_micro": r.penalties_micro,
                            "returned_micro": r.escrow_micro})
