"""Flexibility handlers: requests, offers, the order, reports, devices, VEN enrolment."""

from __future__ import annotations

import dataclasses
from typing import Any

from gridledger.crypto.sig import address_of
from gridledger.errors import ConfigError, InvalidBody
from gridledger.flex.merit import MeritOffer, cost_nano, select
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.flex import keeper
from gridledger.ledger.modules.flex.errors import (
    AboveCapacity,
    AboveEnvelope,
    AbovePriceCap,
    AboveRequest,
    AlreadyOrdered,
    AlreadyReported,
    FlexGateClosed,
    FlexSuspended,
    MaxOffers,
    NoOffer,
    NotActivated,
    NotDelegate,
    NotEligible,
    NotMeritOrder,
    NotOfferOwner,
    NotRequester,
    OrderWindow,
    OverBudget,
    PseudonymDevice,
    PseudonymVen,
    ReportWindow,
    RequestWindow,
    UnknownRequest,
    UnregisteredDevice,
    VenTaken,
)
from gridledger.ledger.modules.flex.expected import Deps
from gridledger.ledger.modules.flex.types import (
    DEVICES,
    CancelRequest,
    Device,
    Devices,
    EnrollVen,
    Offer,
    PostOffer,
    PostOrder,
    PostRequest,
    RegisterDevice,
    Report,
    Request,
    Revoke,
    VenBinding,
    parse_config,
    settlement_deadline,
    slot_end,
    slot_start,
)
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State
from gridledger.market.rounding import ceil_micro

VEN_ROLE = "ven"
PSEUDONYM_ROLE = "pseudonym"


class Handlers:
    """The flexibility module's message handlers; ``deps`` wired by the catalog."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def _request(self, state: State, rid: bytes) -> Request:
        r = keeper.request(state, rid)
        if r is None:
            raise UnknownRequest(f"no request {rid.hex()[:16]}…")
        return r

    @staticmethod
    def _before_gate(r: Request, now: int) -> None:
        if r.status != "open" or now >= r.gate_s:
            raise FlexGateClosed(f"the request's gate was {r.gate_s}, block time is {now} "
                                 f"(status {r.status})")

    # -- DSO -------------------------------------------------------------------------------
    def request(self, state: State, ctx: TxContext, msg: PostRequest) -> None:
        """``flex/request`` (dso): lock the budget from the sender. Rules ``request-window``,
        ``insufficient-funds``."""
        now = ctx.block.slot_time
        start = slot_start(msg.first_slot, load_params(state))
        if not now < msg.gate_s <= start:
            raise RequestWindow(f"gate {msg.gate_s} must be after block time {now} and no "
                                f"later than the first slot's start {start}")
        self.deps.bank.lock(state, ctx.sender, msg.budget_micro)
        rec = Request(dso=ctx.sender, area=msg.area, violation=msg.violation,
                      evidence=msg.evidence, first_slot=msg.first_slot,
                      energies_wh=msg.energies_wh, direction=msg.direction,
                      price_cap_micro_per_kwh=msg.price_cap_micro_per_kwh,
                      budget_micro=msg.budget_micro, baseline=msg.baseline,
                      reference_method=msg.reference_method, gate_s=msg.gate_s, cps=msg.cps,
                      status="open", escrow_micro=msg.budget_micro, offers=0)
        keeper.put_request(state, ctx.tx_hash, rec)
        keeper.mark_active(state, ctx.tx_hash)
        ctx.emit("flex_requested", request=ctx.tx_hash, dso=ctx.sender, area=msg.area,
                 violation=msg.violation, first_slot=msg.first_slot,
                 slots=len(msg.energies_wh), energy_wh=sum(msg.energies_wh),
                 direction=msg.direction, price_cap_micro_per_kwh=msg.price_cap_micro_per_kwh,
                 budget_micro=msg.budget_micro, gate_s=msg.gate_s, cps=len(msg.cps))

    def cancel(self, state: State, ctx: TxContext, msg: CancelRequest) -> None:
        """``flex/cancel`` (dso, the requester) before the gate: escrow and every offer's
        deposit released. Rules ``unknown-request``, ``not-requester``, ``flex-gate-closed``."""
        r = self._request(state, msg.request)
        if r.dso != ctx.sender:
            raise NotRequester("only the DSO identity that posted the request may cancel it")
        self._before_gate(r, ctx.block.slot_time)
        close_request(self.deps, state, msg.request, r, "cancelled", ctx.block.slot_time)
        ctx.emit("flex_cancelled", request=msg.request)

    def order(self, state: State, ctx: TxContext, msg: PostOrder) -> None:
        """``flex/order`` (dso, the requester) in ``[gate, first slot start)``: accepted
        only if its activations are the merit-order selection for ``effective_wh`` and cost
        no more than the budget. Deposits of offers not selected are released, selected
        ones keep the deposit of what was activated; the budget beyond the cost returns.
        Rules ``unknown-request``, ``not-requester``, ``order-window``, ``already-ordered``,
        ``invalid-body`` (length), ``above-request``, ``not-merit-order``, ``over-budget``."""
        r = self._request(state, msg.request)
        if r.dso != ctx.sender:
            raise NotRequester("only the DSO identity that posted the request may order it")
        if r.status != "open":
            raise AlreadyOrdered(f"the request is {r.status}")
        now, start = ctx.block.slot_time, slot_start(r.first_slot, load_params(state))
        if not r.gate_s <= now < start:
            raise OrderWindow(f"orders in [{r.gate_s}, {start}), block time is {now}")
        if len(msg.effective_wh) != r.n_slots:
            raise InvalidBody(f"field 'effective_wh' must have {r.n_slots} entries")
        for k, (e, asked) in enumerate(zip(msg.effective_wh, r.energies_wh, strict=True)):
            if e > asked:
                raise AboveRequest(f"slot {r.first_slot + k}: {e} effective Wh ordered, "
                                   f"{asked} requested")
        offers = keeper.offers_of(state, msg.request)
        merit = [MeritOffer(oid, _weight(r, o.cp), o.price_micro_per_kwh, o.energies_wh)
                 for oid, o in offers]
        expected = select(merit, msg.effective_wh)
        given = {a.offer: a.activated_wh for a in msg.activations}
        for (oid, _), want in zip(offers, expected, strict=True):
            got = given.pop(oid, (0,) * r.n_slots)
            if got != want:
                raise NotMeritOrder(f"offer {oid.hex()[:16]}… activates {list(got)}, the merit "
                                    f"order {list(want)}")
        if given:
            raise NotMeritOrder(f"offer {next(iter(given)).hex()[:16]}… is not in the request")
        cost = ceil_micro(cost_nano(merit, expected))
        if cost > r.budget_micro:
            raise OverBudget(f"the order costs {cost}, the budget is {r.budget_micro}")
        self.deps.bank.unlock(state, r.dso, r.escrow_micro - cost)
        bank = self.deps.bank
        for (oid, o), act in zip(offers, expected, strict=True):
            keep = ceil_micro(sum(act) * o.deposit_rate) if any(act) else 0
            bank.unlock(state, o.owner, o.deposit_micro - keep)
            keeper.put_offer(state, msg.request, oid, dataclasses.replace(
                o, deposit_micro=keep, activated_wh=act if any(act) else None))
        keeper.drop_counts(state, msg.request)
        keeper.put_request(state, msg.request, dataclasses.replace(
            r, status="ordered", escrow_micro=cost, effective_wh=msg.effective_wh,
            cost_micro=cost, settled=0, paid_micro=0, penalties_micro=0))
        ctx.emit("flex_ordered", request=msg.request, offers=len(offers),
                 activated=sum(1 for a in expected if any(a)),
                 activated_wh=sum(sum(a) for a in expected),
                 effective_wh=sum(msg.effective_wh), cost_micro=cost, evidence=msg.evidence)
        for (oid, o), act in zip(offers, expected, strict=True):
            if any(act):
                ctx.emit("flex_activated", request=msg.request, offer=oid, member=o.owner,
                         cp=o.cp, device=o.device, first_slot=r.first_slot,
                         activated_wh=list(act), price_micro_per_kwh=o.price_micro_per_kwh)

    def resource(self, state: State, ctx: TxContext, msg: RegisterDevice) -> None:
        """``flex/resource`` (dso): register (or with 0 remove) a flexible device at a cp.
        Rule ``pseudonym-device``: none at a pseudonym's stand-in cp (it would link the
        household's pseudonyms; the DSO caps the pseudonym's eligible ``max_wh`` instead)."""
        if msg.power_wh and self._pseudonym_cp(state, msg.cp):
            raise PseudonymDevice(f"{msg.cp} is a pseudonym's stand-in cp: cap its eligible "
                                  "max_wh by the device's power instead of registering it")
        devs = keeper.devices(state, msg.cp)
        rest = [d for d in devs.devices if d.device != msg.device]
        if msg.power_wh:
            rest.append(Device(msg.device, msg.power_wh))
        keeper.put_devices(state, msg.cp, Devices(tuple(sorted(rest, key=lambda d: d.device))))
        ctx.emit("flex_device", cp=msg.cp, device=msg.device, power_wh=msg.power_wh)

    def _pseudonym_cp(self, state: State, cp: str) -> bool:
        holder = self.deps.registry.cp_holder(state, cp)
        p = self.deps.registry.participant(state, holder) if holder is not None else None
        return p is not None and PSEUDONYM_ROLE in p.roles

    # -- members ---------------------------------------------------------------------------
    def offer(self, state: State, ctx: TxContext, msg: PostOffer) -> None:
        """``flex/offer`` before the gate, from a cp the request names: locks the delivery
        deposit. Rules ``unknown-request``, ``flex-gate-closed``, ``not-eligible``,
        ``invalid-body`` (length), ``above-price-cap``, ``unregistered-device``,
        ``above-capacity``, ``above-envelope``, ``max-offers``, ``insufficient-funds``;
        ``meter-quarantined`` (firmware registry): delivery is measured by the cp's meter, so
        a quarantined meter's holder offers nothing until it is patched; ``flex-suspended``:
        the reputation module suspended the sender (it offers nothing until an appeal).

        A pseudonym (privacy mode) offers from its stand-in cp, which the DSO named in the
        request (it attested the pseudonym's meter, so it knows whose it is), for slots its
        certificate covers (``pseudonym-slot``); its stand-in cp has no device record
        (``pseudonym-device``), so the device's power bounds the offer through the
        ``max_wh`` the DSO gave the cp, and ``device`` is the pseudonym's word."""
        r = self._request(state, msg.request)
        self._before_gate(r, ctx.block.slot_time)
        holder = self.deps.registry.participant(state, ctx.sender)
        cp = holder.cp if holder is not None else None
        elig = r.eligible(cp) if cp else None
        if holder is None or cp is None or elig is None:
            raise NotEligible(f"the request does not name the sender's connection point {cp!r}")
        pseudonym = PSEUDONYM_ROLE in holder.roles
        if pseudonym:
            for k in range(r.n_slots):
                self.deps.registry.require_in_slot(state, ctx.sender, r.first_slot + k)
        self.deps.firmware.check_trading(state, cp)
        if self.deps.reputation.tier_of(state, ctx.sender) == "suspended":
            raise FlexSuspended("suspended: no flexibility offers until an appeal")
        if len(msg.energies_wh) != r.n_slots:
            raise InvalidBody(f"the request has {r.n_slots} slots, the offer "
                              f"{len(msg.energies_wh)}")
        if msg.price_micro_per_kwh > r.price_cap_micro_per_kwh:
            raise AbovePriceCap(f"price {msg.price_micro_per_kwh} > cap "
                                f"{r.price_cap_micro_per_kwh}")
        power = None if pseudonym else keeper.devices(state, cp).power_of(msg.device)
        if power is None and not pseudonym:
            raise UnregisteredDevice(f"no {msg.device} registered at {cp}")
        for k, e in enumerate(msg.energies_wh):
            if power is not None and e > power:
                raise AboveCapacity(f"slot {r.first_slot + k}: {e} Wh > the {msg.device}'s "
                                    f"{power} Wh per slot")
            if e > elig.max_wh[k]:
                raise AboveEnvelope(f"slot {r.first_slot + k}: {e} Wh > the envelope's "
                                    f"{elig.max_wh[k]} Wh {r.direction}")
        cfg = keeper.config(state)
        n = keeper.offer_count(state, msg.request, ctx.sender)
        if n >= cfg.max_offers_per_request:
            raise MaxOffers(f"at most {cfg.max_offers_per_request} offers per request")
        rate = cfg.deposit_micro_per_kwh
        deposit = ceil_micro(sum(msg.energies_wh) * rate)
        self.deps.bank.lock(state, ctx.sender, deposit)
        keeper.set_offer_count(state, msg.request, ctx.sender, n + 1)
        keeper.put_offer(state, msg.request, ctx.tx_hash, Offer(
            owner=ctx.sender, cp=cp, device=msg.device,
            price_micro_per_kwh=msg.price_micro_per_kwh, energies_wh=msg.energies_wh,
            baseline_wh=msg.baseline_wh, deposit_micro=deposit, deposit_rate=rate))
        keeper.put_request(state, msg.request, dataclasses.replace(r, offers=r.offers + 1))
        ctx.emit("flex_offered", request=msg.request, offer=ctx.tx_hash, member=ctx.sender,
                 cp=cp, device=msg.device, price_micro_per_kwh=msg.price_micro_per_kwh,
                 energy_wh=sum(msg.energies_wh), deposit_micro=deposit)

    def revoke(self, state: State, ctx: TxContext, msg: Revoke) -> None:
        """``flex/revoke`` before the gate: the deposit returns. Rules ``unknown-request``,
        ``flex-gate-closed``, ``no-offer``, ``not-offer-owner``."""
        r = self._request(state, msg.request)
        self._before_gate(r, ctx.block.slot_time)
        o = keeper.offer(state, msg.request, msg.offer)
        if o is None:
            raise NoOffer(f"no offer {msg.offer.hex()[:16]}… in the request")
        if o.owner != ctx.sender:
            raise NotOfferOwner("only the offer's owner may revoke it")
        self.deps.bank.unlock(state, o.owner, o.deposit_micro)
        keeper.delete_offer(state, msg.request, msg.offer)
        keeper.set_offer_count(state, msg.request, o.owner,
                               keeper.offer_count(state, msg.request, o.owner) - 1)
        keeper.put_request(state, msg.request, dataclasses.replace(r, offers=r.offers - 1))
        ctx.emit("flex_revoked", request=msg.request, offer=msg.offer, member=o.owner)

    def report(self, state: State, ctx: TxContext, msg: Report) -> None:
        """``flex/report`` by the offer's owner or a VEN it enrolled, for an activated slot,
        from the slot's end until its settlement deadline; recorded as the member's claim
        (checked against the meter at settlement). Rules ``unknown-request``, ``no-offer``,
        ``not-delegate``, ``not-activated``, ``report-window``, ``already-reported``."""
        r = self._request(state, msg.request)
        o = keeper.offer(state, msg.request, msg.offer)
        if o is None:
            raise NoOffer(f"no offer {msg.offer.hex()[:16]}… in the request")
        member = ctx.sender
        b = keeper.ven(state, ctx.sender)
        if b is not None:
            member = b.member
        if member != o.owner:
            raise NotDelegate("a report is the offer owner's, or a VEN it enrolled")
        k = msg.slot - r.first_slot
        if o.activated_wh is None or not 0 <= k < r.n_slots or o.activated_wh[k] == 0:
            raise NotActivated(f"the offer is not activated in slot {msg.slot}")
        p = load_params(state)
        now, first, last = ctx.block.slot_time, slot_end(msg.slot, p), settlement_deadline(msg.slot, p)
        if not first <= now < last:
            raise ReportWindow(f"reports for slot {msg.slot} in [{first}, {last}), block time "
                               f"is {now}")
        claims = list(o.claims_wh or (-1,) * r.n_slots)
        if claims[k] >= 0:
            raise AlreadyReported(f"slot {msg.slot} already reported")
        claims[k] = msg.delivered_wh
        keeper.put_offer(state, msg.request, msg.offer,
                         dataclasses.replace(o, claims_wh=tuple(claims)))
        ctx.emit("flex_reported", request=msg.request, offer=msg.offer, slot=msg.slot,
                 member=member, by=ctx.sender, delivered_wh=msg.delivered_wh)

    def ven(self, state: State, ctx: TxContext, msg: EnrollVen) -> None:
        """``flex/ven`` (member): register the VEN's reporting key as an identity with the
        single role ``ven`` (it can send nothing but ``flex/report``, and only for the
        enrolling member's offers) and bind its OAuth client id and secret hash. Rule
        ``ven-taken``, ``pseudonym-ven`` (a pseudonym reports itself)."""
        holder = self.deps.registry.participant(state, ctx.sender)
        if holder is not None and PSEUDONYM_ROLE in holder.roles:
            raise PseudonymVen("a pseudonym enrols no VEN: it reports its delivery itself")
        addr = address_of(msg.alg, msg.pk)
        if (keeper.ven_by_name(state, msg.name) is not None
                or self.deps.registry.participant(state, addr) is not None):
            raise VenTaken(f"VEN {msg.name!r} or its key is already enrolled")
        self.deps.registry.put_participant(state, addr, {
            "alg": msg.alg, "pk": msg.pk, "roles": [VEN_ROLE], "cp": None,
            "name": f"ven:{msg.name}", "status": "active"})
        keeper.put_ven(state, addr, VenBinding(ctx.sender, msg.name, msg.secret_hash))
        ctx.emit("ven_enrolled", member=ctx.sender, ven=addr, name=msg.name)


def _weight(r: Request, cp: str) -> int:
    e = r.eligible(cp)
    return e.weight_ppm if e is not None else 1


def close_request(deps: Deps, state: State, rid: bytes, r: Request, status: str,
                  now: int) -> None:
    """End an un-ordered request (cancelled, expired): escrow and every deposit return."""
    deps.bank.unlock(state, r.dso, r.escrow_micro)
    for oid, o in keeper.offers_of(state, rid):
        deps.bank.unlock(state, o.owner, o.deposit_micro)
        keeper.put_offer(state, rid, oid, dataclasses.replace(o, deposit_micro=0))
    keeper.drop_counts(state, rid)
    keeper.put_request(state, rid, dataclasses.replace(
        r, status="cancelled" if status == "cancelled" else "expired", escrow_micro=0,
        done_at=now))
    keeper.mark_finished(state, rid, now)


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Store the genesis section ``flex`` (programme terms, ``resources``: ``[cp, device,
    power_wh]`` per registered device). Nothing is written without one, so chains that do
    not run a flexibility programme keep their roots.

    Raises ``ConfigError`` naming the problem."""
    section = genesis.get("flex")
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError("genesis 'flex' must be a map")
    try:
        keeper.put_config(state, parse_config(dict(section)))
    except InvalidBody as exc:
        raise ConfigError(f"genesis flex: {exc}") from None
    by_cp: dict[str, list[Device]] = {}
    for e in section.get("resources", []):
        if not (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and e[0]
                and e[1] in DEVICES and isinstance(e[2], int) and not isinstance(e[2], bool)
                and 0 < e[2] <= 10**9):
            raise ConfigError("a genesis flex resource is [cp, device, power_wh 1..1e9]")
        devs = by_cp.setdefault(e[0], [])
        if any(d.device == e[1] for d in devs):
            raise ConfigError(f"genesis flex resource {e[1]} at {e[0]!r} listed twice")
        devs.append(Device(e[1], e[2]))
    for cp in sorted(by_cp):
        keeper.put_devices(state, cp, Devices(tuple(sorted(by_cp[cp], key=lambda d: d.device))))
