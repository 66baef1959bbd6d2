"""Market handlers: orders, cancel/replace, sealed bids, operating envelopes."""

from __future__ import annotations

from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.errors import (
    BeyondHorizon,
    CommitmentMismatch,
    EnvelopeLate,
    GateClosed,
    MarketDisabled,
    NoCommitment,
    NoConnectionPoint,
    NoOrder,
    NotOwner,
    OutsideRevealWindow,
    ReputationSuspended,
    SellNeedsProsumer,
)
from gridledger.ledger.modules.market.expected import Deps
from gridledger.ledger.modules.market.types import (
    Cancel,
    Commit,
    Commitment,
    Order,
    PlaceOrder,
    Replace,
    Reveal,
    SetEnvelopes,
    Side,
    buyer_escrow_micro,
    gate_closure,
    order_commitment,
    reveal_deadline,
    seller_deposit_micro,
    seller_deposit_rate,
    slot_start,
)
from gridledger.ledger.params import Params, load_params
from gridledger.ledger.state import State


class Handlers:
    """The market's message handlers; ``deps`` (bank, registry, reputation, metering,
    firmware) are wired by the catalog."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    # -- checks shared by the kinds -------------------------------------------------------

    def _params_for_trading(self, state: State) -> Params:
        p = load_params(state)
        if p.grid_account is None:
            raise MarketDisabled("no grid account (a dso in genesis or param grid_account)")
        return p

    def _check_trader(self, state: State, addr: bytes, side: Side | None, new_exposure: bool,
                      slot: int) -> None:
        """Trading identity rules: a connection point, sell needs prosumer, no suspension,
        no quarantined meter (``meter-quarantined``, firmware registry), and a pseudonym
        trades only in the slots its certificate names."""
        p = self.deps.registry.participant(state, addr)
        if p is None or not p.cp:
            raise NoConnectionPoint("only identities holding a cp trade energy")
        self.deps.registry.require_in_slot(state, addr, slot)
        if side == "sell" and "prosumer" not in p.roles:
            raise SellNeedsProsumer("consumers can only buy")
        # must-offer: a suspended seller keeps offering its supply (capped by
        # ``_must_offer_price``); it opens no other exposure until an appeal
        if new_exposure and side != "sell" \
                and self.deps.reputation.tier_of(state, addr) == "suspended":
            raise ReputationSuspended("suspended until an appeal: it may only offer its "
                                      "supply (open sell orders at most the feed-in tariff)")
        if new_exposure:
            self.deps.firmware.check_orders(state, p.cp)

    def _must_offer_price(self, state: State, ctx: TxContext, p: Params, slot: int,
                          oid: bytes, side: Side, price: int) -> int:
        """A suspended member's sell offer is mitigated to the sell reference level (the
        feed-in tariff, surveillance's reference) on entry, as market-power mitigation with a
        must-offer obligation does (CAISO local market power mitigation, ERCOT): the sanction
        takes its price-setting, never its supply off the market. Emits
        ``offer_mitigated``."""
        if side != "sell" or price <= p.feed_in_micro_per_kwh \
                or self.deps.reputation.tier_of(state, ctx.sender) != "suspended":
            return price
        ctx.emit("offer_mitigated", slot=slot, order_id=oid, owner=ctx.sender,
                 asked_micro_per_kwh=price, price_micro_per_kwh=p.feed_in_micro_per_kwh,
                 reason="reputation-suspended")
        return p.feed_in_micro_per_kwh

    @staticmethod
    def _check_before_gate(slot: int, now: int, p: Params) -> None:
        gate = gate_closure(slot, p)
        if now >= gate:
            raise GateClosed(f"slot {slot} closed at {gate}, block time is {now}")
        if slot_start(slot, p) - now > p.order_horizon_slots * p.slot_seconds:
            raise BeyondHorizon(f"slot {slot} is more than {p.order_horizon_slots} slots ahead")

    def _place(self, state: State, p: Params, owner: bytes, slot: int, oid: bytes, side: Side,
               energy_wh: int, price: int, seq: int, sealed: bool) -> Order:
        """Lock the order's escrow (buy) or delivery deposit (sell) and store it."""
        rate = 0
        if side == "buy":
            held = buyer_escrow_micro(energy_wh, price, p)
        else:
            rate = seller_deposit_rate(p, self.deps.reputation.deposit_pct(state, owner))
            held = seller_deposit_micro(energy_wh, rate)
        self.deps.bank.lock(state, owner, held)
        rec = Order(owner=owner, side=side, energy_wh=energy_wh, price_micro_per_kwh=price,
                    held_micro=held, deposit_rate=rate, seq=seq, sealed=sealed, filled_wh=0)
        keeper.put_order(state, slot, oid, rec)
        keeper.mark_open(state, slot)
        return rec

    def _take_own_order(self, state: State, ctx: TxContext, slot: int, oid: bytes) -> Order:
        rec = keeper.get_order(state, slot, oid)
        if rec is None:
            raise NoOrder(f"no order {oid.hex()[:16]}… in slot {slot}")
        if rec.owner != ctx.sender:
            raise NotOwner("only the order's owner may change it")
        self.deps.bank.unlock(state, ctx.sender, rec.held_micro)
        keeper.delete_order(state, slot, oid)
        return rec

    @staticmethod
    def _order_event(ctx: TxContext, slot: int, oid: bytes, rec: Order) -> None:
        ctx.emit("order_placed", slot=slot, order_id=oid, owner=rec.owner, side=rec.side,
                 energy_wh=rec.energy_wh, price_micro_per_kwh=rec.price_micro_per_kwh,
                 held_micro=rec.held_micro, sealed=rec.sealed)

    # -- kinds -------------------------------------------------------------------------------

    def order(self, state: State, ctx: TxContext, msg: PlaceOrder) -> None:
        """``market/order``; the order id is the tx hash; a suspended member's sell is
        mitigated to the feed-in tariff (``offer_mitigated``). Rules ``market-disabled``,
        ``gate-closed``, ``beyond-horizon``, ``no-connection-point``, ``pseudonym-slot``,
        ``sell-needs-prosumer``, ``reputation-suspended``, ``max-orders-per-slot``,
        ``one-side-per-slot``, ``insufficient-funds``."""
        p = self._params_for_trading(state)
        self._check_before_gate(msg.slot, ctx.block.slot_time, p)
        self._check_trader(state, ctx.sender, msg.side, new_exposure=True, slot=msg.slot)
        keeper.bump_count(state, msg.slot, ctx.sender, msg.side, p.max_orders_per_slot)
        price = self._must_offer_price(state, ctx, p, msg.slot, ctx.tx_hash, msg.side,
                                       msg.price_micro_per_kwh)
        rec = self._place(state, p, ctx.sender, msg.slot, ctx.tx_hash, msg.side, msg.energy_wh,
                          price, keeper.next_seq(state), sealed=False)
        self._order_event(ctx, msg.slot, ctx.tx_hash, rec)

    def cancel(self, state: State, ctx: TxContext, msg: Cancel) -> None:
        """``market/cancel``: an order or a sealed commitment, before the gate. Rules
        ``gate-closed``, ``beyond-horizon``, ``no-order``, ``not-owner``."""
        slot, oid = msg.slot, msg.order_id
        self._check_before_gate(slot, ctx.block.slot_time, load_params(state))
        com = keeper.get_commit(state, slot, oid)
        if com is not None:
            if com.owner != ctx.sender:
                raise NotOwner("only the committer may cancel a commitment")
            self.deps.bank.unlock(state, ctx.sender, com.deposit_micro)
            keeper.delete_commit(state, slot, oid)
            released = com.deposit_micro
        else:
            released = self._take_own_order(state, ctx, slot, oid).held_micro
        keeper.drop_count(state, slot, ctx.sender)
        ctx.emit("order_cancelled", slot=slot, order_id=oid, owner=ctx.sender,
                 released_micro=released)

    def replace(self, state: State, ctx: TxContext, msg: Replace) -> None:
        """``market/replace``: same side, new id (the tx hash) and new time priority; escrow
        is re-locked for the new terms. Rules as ``market/order`` plus ``no-order``,
        ``not-owner``."""
        p = self._params_for_trading(state)
        self._check_before_gate(msg.slot, ctx.block.slot_time, p)
        self._check_trader(state, ctx.sender, None, new_exposure=True, slot=msg.slot)
        old = self._take_own_order(state, ctx, msg.slot, msg.order_id)
        rec = self._place(state, p, ctx.sender, msg.slot, ctx.tx_hash, old.side, msg.energy_wh,
                          msg.price_micro_per_kwh, keeper.next_seq(state), sealed=False)
        ctx.emit("order_replaced", slot=msg.slot, old_order_id=msg.order_id, order_id=ctx.tx_hash)
        self._order_event(ctx, msg.slot, ctx.tx_hash, rec)

    def commit(self, state: State, ctx: TxContext, msg: Commit) -> None:
        """``market/commit``: a sealed bid; locks ``commit_deposit_micro``. Rules as
        ``market/order``."""
        p = self._params_for_trading(state)
        self._check_before_gate(msg.slot, ctx.block.slot_time, p)
        self._check_trader(state, ctx.sender, None, new_exposure=True, slot=msg.slot)
        keeper.bump_count(state, msg.slot, ctx.sender, None, p.max_orders_per_slot)
        self.deps.bank.lock(state, ctx.sender, p.commit_deposit_micro)
        keeper.put_commit(state, msg.slot, ctx.tx_hash, Commitment(
            owner=ctx.sender, commitment=msg.commitment, deposit_micro=p.commit_deposit_micro,
            seq=keeper.next_seq(state)))
        keeper.mark_open(state, msg.slot)
        ctx.emit("committed", slot=msg.slot, commit_id=ctx.tx_hash, owner=ctx.sender,
                 deposit_micro=p.commit_deposit_micro)

    def reveal(self, state: State, ctx: TxContext, msg: Reveal) -> None:
        """``market/reveal`` in the reveal window; the order keeps the commitment's id and
        time priority. Rules ``market-disabled``, ``outside-reveal-window``,
        ``no-commitment``, ``not-owner``, ``commitment-mismatch``, the trader rules but
        ``reputation-suspended``, ``one-side-per-slot``, ``insufficient-funds``."""
        p = self._params_for_trading(state)
        slot = msg.slot
        now, gate, deadline = ctx.block.slot_time, gate_closure(slot, p), reveal_deadline(slot, p)
        if not gate <= now < deadline:
            raise OutsideRevealWindow(f"reveals for slot {slot} in [{gate}, {deadline})")
        com = keeper.get_commit(state, slot, msg.commit_id)
        if com is None:
            raise NoCommitment(f"{msg.commit_id.hex()[:16]}… in slot {slot}")
        if com.owner != ctx.sender:
            raise NotOwner("only the committer may reveal")
        opened = order_commitment(ctx.sender, slot, msg.side, msg.energy_wh,
                                  msg.price_micro_per_kwh, msg.salt)
        if opened != com.commitment:
            raise CommitmentMismatch("the revealed order does not open the commitment")
        # Suspension does not block a reveal: the bid was placed before it; blocking it would
        # add a forfeit to the sanction.
        self._check_trader(state, ctx.sender, msg.side, new_exposure=False, slot=slot)
        keeper.reveal_side(state, slot, ctx.sender, msg.side)
        self.deps.bank.unlock(state, ctx.sender, com.deposit_micro)
        keeper.delete_commit(state, slot, msg.commit_id)
        price = self._must_offer_price(state, ctx, p, slot, msg.commit_id, msg.side,
                                       msg.price_micro_per_kwh)
        # If the escrow cannot be locked the whole reveal fails and the commitment forfeits.
        rec = self._place(state, p, ctx.sender, slot, msg.commit_id, msg.side, msg.energy_wh,
                          price, com.seq, sealed=True)
        self._order_event(ctx, slot, msg.commit_id, rec)

    def envelope(self, state: State, ctx: TxContext, msg: SetEnvelopes) -> None:
        """``market/envelope`` (dso), until the slot clears; a later envelope for the same cp
        replaces the earlier one. Rule ``envelope-late``."""
        deadline = reveal_deadline(msg.slot, load_params(state))
        if ctx.block.slot_time >= deadline:
            raise EnvelopeLate(f"slot {msg.slot} clears at {deadline}")
        for cp, import_max_wh, export_max_wh in msg.envelopes:
            keeper.put_envelope(state, msg.slot, cp, import_max_wh, export_max_wh)
        keeper.mark_open(state, msg.slot)
        ctx.emit("envelopes_set", slot=msg.slot, count=len(msg.envelopes), dso=ctx.sender)

