"""The epoch pool: tickets, attested reading keys, certified pseudonyms, claims, pay-out.

Money flows member -> pool (join) -> pseudonym (allowance at registration) -> market ->
pseudonym -> pool (close) -> member (claims, or true dues after a dispute). Every path ends
in a pay-out (issue 21 item 4):

* the epoch closes only after the dispute window of its last slot, so no dispute fee lands
  on a swept pseudonym, and the claims decision sweeps once more; money that still reaches
  a pseudonym of a paid-out epoch is carried by the pseudonym into an open epoch's pool,
  where its owner claims it (``privacy/carry``);
* a disputed pool resolves once every pseudonym it covers has an owner — opened by k
  trustees, or attributed through its meter's signed binding when its escrow proved bogus
  (``openings.py``) — however often members rotate their keys meanwhile;
* registration needs an open epoch, a certified leaf and a DSO-attested reading key bound
  to this pseudonym, so a pseudonym never rides on another member's spare ticket.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gridledger.crypto.merkle import verify_inclusion
from gridledger.crypto.sig import verify_signature
from gridledger.errors import CryptoError
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.config import PrivacyConfig
from gridledger.ledger.modules.privacy.errors import (
    AlreadyClaimed,
    AlreadyJoined,
    AttestationExists,
    BatchEndorsements,
    BatchExists,
    CarryRefused,
    ClaimAboveDue,
    ClaimsClosed,
    EpochClosed,
    JoinEpoch,
    JoinNeedsMember,
    NoBatch,
    NotCertified,
    NotInPool,
    NotTrustee,
    PrivacyDisabled,
    PseudonymRegistered,
    PseudonymRetired,
    PseudonymSlots,
    ReadingNotAttested,
    TicketCap,
    TicketsExceeded,
    UnknownFeeder,
    UnknownPseudonym,
)
from gridledger.ledger.modules.privacy.expected import (
    Bank,
    Firmware,
    Market,
    Registry,
    Reputation,
)
from gridledger.ledger.modules.privacy.records import (
    AttestRecord,
    BatchRecord,
    DisputeRecord,
    EpochRecord,
    JoinRecord,
    PseudonymRecord,
    dispute_id_for_pool,
    key_digest,
    pool_address,
    pseudo_cp,
)
from gridledger.ledger.modules.privacy.types import (
    Attest,
    Carry,
    Certify,
    Claim,
    Join,
    Leaf,
    MeterImage,
    Register,
)
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State
from gridledger.privacy.meter_keys import reading_leaf
from gridledger.privacy.pseudonyms import CTX_BATCH, batch_message, leaf_hash

MEMBER_ROLES = frozenset({"prosumer", "consumer"})


def require_config(state: State) -> PrivacyConfig:
    cfg = keeper.config(state)
    if cfg is None:
        raise PrivacyDisabled("this chain has no privacy section in genesis")
    return cfg


def now_slot(state: State, slot_time: int) -> int:
    return slot_time // load_params(state).slot_seconds


@dataclass
class Pool:
    """Handlers and end-of-block steps of the epoch pool."""

    bank: Bank
    registry: Registry
    reputation: Reputation
    market: Market
    firmware: Firmware | None = None

    # -- members ----------------------------------------------------------------------------
    def ticket_cap(self, state: State, cfg: PrivacyConfig, member: bytes) -> int:
        """Reputation follows the member into pseudonymity: fewer tickets on watch, none when
        restricted or suspended (they trade under their own name, with higher deposits)."""
        tier = self.reputation.tier_of(state, member)
        if tier == "good":
            return cfg.max_tickets
        if tier == "watch":
            return cfg.max_tickets // 2
        return 0

    def join(self, state: State, ctx: TxContext, msg: Join) -> None:
        """``privacy/join``: lock tickets x allowance in the epoch pool, recording the key the
        member holds now (its escrows are signed with it; a later rotation changes nothing)."""
        cfg = require_config(state)
        member = self.registry.participant(state, ctx.sender)
        if member is None or not member.cp or "pseudonym" in member.roles:
            raise JoinNeedsMember("only members holding a connection point join")
        now_epoch = now_slot(state, ctx.block.slot_time) // cfg.epoch_slots
        if not now_epoch <= msg.epoch <= now_epoch + 1:
            raise JoinEpoch(f"join epoch {now_epoch} or {now_epoch + 1}, not {msg.epoch}")
        rec = keeper.get_epoch(state, msg.epoch)
        if rec.status != "open":
            raise EpochClosed(f"epoch {msg.epoch} is {rec.status}")
        if keeper.get_join(state, msg.epoch, ctx.sender) is not None:
            raise AlreadyJoined(f"one join per member and epoch ({msg.epoch})")
        cap = self.ticket_cap(state, cfg, ctx.sender)
        if msg.tickets > cap:
            raise TicketCap(f"reputation tier {self.reputation.tier_of(state, ctx.sender)} "
                            f"allows {cap} pseudonyms per epoch")
        amount = msg.tickets * cfg.allowance_micro
        self.bank.move(state, ctx.sender, pool_address(msg.epoch), amount)
        keeper.put_join(state, msg.epoch, ctx.sender,
                        JoinRecord(msg.tickets, key_digest(member.alg, member.pk)))
        keeper.put_epoch(state, msg.epoch, replace(
            rec, tickets=rec.tickets + msg.tickets, members=rec.members + 1,
            pool_in_micro=rec.pool_in_micro + amount))
        ctx.emit("pool_joined", epoch=msg.epoch, member=ctx.sender, tickets=msg.tickets,
                 locked_micro=amount)

    def claim(self, state: State, ctx: TxContext, msg: Claim) -> None:
        """``privacy/claim``. Payout ``claims``: deposit - allowances drawn + its pseudonyms'
        finals (+ money they carried in); paid at the deadline if all claims add up to the
        pool. Payout ``bill``: at most the member's deposit, paid at the deadline. Either way
        a claim above what the epoch can owe is refused (``claim-above-due``)."""
        cfg = require_config(state)
        join = keeper.get_join(state, msg.epoch, ctx.sender)
        if join is None:
            raise NotInPool(f"the sender did not join epoch {msg.epoch}")
        rec = keeper.get_epoch(state, msg.epoch)
        if rec.status != "claims":
            raise ClaimsClosed(f"epoch {msg.epoch} is {rec.status}, not taking claims")
        if keeper.get_claim(state, msg.epoch, ctx.sender) is not None:
            raise AlreadyClaimed("one claim per member and epoch")
        if cfg.payout == "bill":
            due = join.tickets * cfg.allowance_micro
            if msg.amount_micro > due:
                raise ClaimAboveDue(f"the pool refunds at most the deposit, {due} micro; the "
                                    "market result is on the member's energy bill")
        else:
            # one claim may exceed its due (the pool dispute finds out), never the whole pool
            held = self.bank.balance(state, pool_address(msg.epoch))
            if msg.amount_micro > held:
                raise ClaimAboveDue(f"the epoch's pool holds {held} micro")
        keeper.put_claim(state, msg.epoch, ctx.sender, msg.amount_micro)
        keeper.put_epoch(state, msg.epoch,
                         replace(rec, claims_micro=rec.claims_micro + msg.amount_micro))
        ctx.emit("pool_claim", epoch=msg.epoch, member=ctx.sender, amount_micro=msg.amount_micro)

    def carry(self, state: State, ctx: TxContext, msg: Carry) -> None:
        """``privacy/carry``: a pseudonym of a paid-out epoch moves money that reached it late
        (a dispute fee, a transfer) into the pool of an open epoch; its owner adds it to its
        claim there, and a dispute of that epoch opens the carrying pseudonym too."""
        ps = keeper.get_pseudonym(state, ctx.sender)
        if ps is None:
            raise CarryRefused("only a registered pseudonym carries money")
        if keeper.get_epoch(state, ps.epoch).status != "paid":
            raise CarryRefused(f"epoch {ps.epoch} has not paid out: its own sweep takes this")
        target = keeper.get_epoch(state, msg.epoch)
        if target.status != "open" or msg.epoch == ps.epoch:
            raise CarryRefused(f"epoch {msg.epoch} is {target.status}: carry into an open one")
        amount = self.bank.balance(state, ctx.sender)
        if amount == 0:
            raise CarryRefused("nothing to carry")
        self.bank.move(state, ctx.sender, pool_address(msg.epoch), amount)
        keeper.add_carry(state, msg.epoch, ctx.sender, amount)
        keeper.put_epoch(state, msg.epoch,
                         replace(target, pool_in_micro=target.pool_in_micro + amount))
        ctx.emit("pool_carry", epoch=msg.epoch, pseudonym=ctx.sender, amount_micro=amount)
        self.retire_one(state, ctx.sender, self.held_back(state))

    # -- DSO and trustees --------------------------------------------------------------------
    def attest(self, state: State, ctx: TxContext, msg: Attest) -> None:
        """``privacy/attest`` by the DSO: a root of meter reading keys, each bound by its
        meter's device key to one pseudonym, at most the member's tickets per meter
        (``privacy.meter_keys.attest_readings``)."""
        rec = self._open_epoch(state, msg.epoch)
        if keeper.get_attestation(state, msg.root) is not None:
            raise AttestationExists("this root is already attested")
        if rec.attested + msg.count > rec.tickets:
            raise TicketsExceeded(f"epoch {msg.epoch} sold {rec.tickets} tickets, "
                                  f"{rec.attested} reading keys attested, root adds {msg.count}")
        keeper.put_attestation(state, msg.root, AttestRecord(msg.epoch, msg.count, 0))
        keeper.put_epoch(state, msg.epoch, replace(rec, attested=rec.attested + msg.count))
        ctx.emit("readings_attested", epoch=msg.epoch, root=msg.root, count=msg.count)

    def certify(self, state: State, ctx: TxContext, msg: Certify) -> None:
        """``privacy/certify`` by a trustee: the epoch batch certificate (k trustees signed
        the Merkle root)."""
        cfg = require_config(state)
        if cfg.trustee_index(ctx.sender) is None:
            raise NotTrustee("batch certificates are posted by a trustee")
        rec = self._open_epoch(state, msg.epoch)
        if keeper.get_batch(state, msg.root) is not None:
            raise BatchExists("this root is already certified")
        if rec.certified + msg.count > rec.tickets:
            raise TicketsExceeded(f"epoch {msg.epoch} sold {rec.tickets} tickets, "
                                  f"{rec.certified} certified, batch asks {msg.count}")
        message = batch_message(cfg.community, msg.epoch, msg.root, msg.count)
        good: set[int] = set()
        for index, sig in msg.endorsements:
            if index >= len(cfg.trustees):
                continue
            t = self.registry.participant(state, cfg.trustees[index].addr)
            if t is not None and _verifies(t.alg, t.pk, message, sig, CTX_BATCH):
                good.add(index)
        if len(good) < cfg.threshold:
            raise BatchEndorsements(f"{len(good)} valid distinct trustee signatures; "
                                    f"need {cfg.threshold}")
        keeper.put_batch(state, msg.root, BatchRecord(msg.epoch, msg.count, 0,
                                                      tuple(sorted(good))))
        keeper.put_epoch(state, msg.epoch, replace(rec, certified=rec.certified + msg.count))
        ctx.emit("batch_certified", epoch=msg.epoch, root=msg.root, count=msg.count,
                 trustees=[cfg.trustees[i].id for i in sorted(good)])

    def _open_epoch(self, state: State, epoch: int) -> EpochRecord:
        require_config(state)
        rec = keeper.get_epoch(state, epoch)
        if rec.status != "open":
            raise EpochClosed(f"epoch {epoch} is {rec.status}")
        return rec

    # -- registration ------------------------------------------------------------------------
    def register(self, state: State, ctx: TxContext, msg: Register) -> None:
        """``privacy/register``: anyone relays certified pseudonyms (the owner does not send
        it: that would link them). Each gets the allowance from the pool, a stand-in
        connection point ``ps:<addr>`` whose meter is its attested reading key, and may trade
        and be metered in its slots only."""
        cfg = require_config(state)
        batch = keeper.get_batch(state, msg.root)
        if batch is None:
            raise NoBatch("no certified batch with this root")
        rec = self._open_epoch(state, batch.epoch)
        first_ok = batch.epoch * cfg.epoch_slots
        last_ok = (batch.epoch + 1) * cfg.epoch_slots - 1
        # the attestations the leaves draw on, counted here and written once each (a
        # registration relays up to a few hundred leaves under one or two roots)
        atts: dict[bytes, AttestRecord | None] = {}
        for leaf in msg.leaves:
            self._register_one(state, ctx, cfg, batch, msg.root, leaf, first_ok, last_ok, atts)
            batch = replace(batch, registered=batch.registered + 1)
        for reading_root in sorted(atts):
            att = atts[reading_root]
            assert att is not None   # a leaf whose root had none was refused
            keeper.put_attestation(state, reading_root, att)
        keeper.put_batch(state, msg.root, batch)
        keeper.put_epoch(state, batch.epoch,
                         replace(rec, registered=rec.registered + len(msg.leaves)))

    def _register_one(self, state: State, ctx: TxContext, cfg: PrivacyConfig,
                      batch: BatchRecord, root: bytes, leaf: Leaf, first_ok: int,
                      last_ok: int, atts: dict[bytes, AttestRecord | None]) -> None:
        epoch = batch.epoch
        if not first_ok <= leaf.first_slot <= leaf.last_slot <= last_ok:
            raise PseudonymSlots(f"slots must lie in epoch {epoch} ({first_ok}..{last_ok})")
        if cfg.feeder_cps(leaf.feeder) is None:
            raise UnknownFeeder(repr(leaf.feeder))
        key = leaf.key
        certified = leaf_hash(cfg.community, epoch, leaf.first_slot, leaf.last_slot,
                              leaf.feeder, key.alg, key.raw, leaf.escrow_digest)
        if leaf.index >= batch.count or not verify_inclusion(root, certified, leaf.index,
                                                             batch.count, list(leaf.path)):
            raise NotCertified("the leaf is not in the certified batch")
        if leaf.reading_root not in atts:
            atts[leaf.reading_root] = keeper.get_attestation(state, leaf.reading_root)
        att = atts[leaf.reading_root]
        addr = key.address
        bound = reading_leaf(cfg.community, epoch, addr, leaf.reading_key, leaf.reading_firmware,
                             sealed=leaf.reading_sealed)
        if (att is None or att.epoch != epoch or leaf.reading_index >= att.count
                or not verify_inclusion(leaf.reading_root, bound, leaf.reading_index,
                                        att.count, list(leaf.reading_path))):
            raise ReadingNotAttested("the pseudonym's reading key is not attested for it in "
                                     f"epoch {epoch}")
        reading = leaf.reading_key.address
        if (keeper.get_pseudonym(state, addr) is not None  # retired ones too: never reused
                or keeper.pruned_epoch(state, addr) is not None  # and pruned ones
                or self.registry.participant(state, addr) is not None
                or self.registry.participant(state, reading) is not None):
            raise PseudonymRegistered("this pseudonym or reading key is already on the ledger")
        cp = pseudo_cp(addr)
        self.registry.put_pseudonym(state, addr, key.alg, key.raw, cp,
                                    (leaf.first_slot, leaf.last_slot), reading,
                                    leaf.reading_key.alg, leaf.reading_key.raw)
        if leaf.reading_firmware is not None and self.firmware is not None:
            # the image the meter attested is the pseudonym's firmware of record from now
            # on: an advisory in force (or one that comes later) quarantines it before its
            # first reading, so its orders are refused like its household meter's. A sealed
            # leaf's commitment stays sealed: the DSO opens it if its image gets advised, and
            # it trades only once the DSO's vouch covers its first slot (firmware/vouch)
            self.firmware.check_reading(state, ctx, cp, reading, leaf.reading_firmware,
                                        sealed=leaf.reading_sealed, slot=leaf.first_slot)
        keeper.put_pseudonym(state, addr, PseudonymRecord(
            epoch, leaf.first_slot, leaf.last_slot, leaf.feeder, leaf.escrow_digest, root,
            key.alg, key.raw, reading, reading_firmware=leaf.reading_firmware,
            reading_sealed=True if leaf.reading_sealed else None))
        for s in range(leaf.first_slot, leaf.last_slot + 1):
            keeper.index_feeder_slot(state, s, leaf.feeder, addr)
        atts[leaf.reading_root] = replace(att, registered=att.registered + 1)
        self.bank.move(state, pool_address(epoch), addr, cfg.allowance_micro)
        ctx.emit("pseudonym_registered", pseudonym=addr, epoch=epoch,
                 first_slot=leaf.first_slot, last_slot=leaf.last_slot, feeder=leaf.feeder,
                 allowance_micro=cfg.allowance_micro)

    def meter_image(self, state: State, ctx: TxContext, msg: MeterImage) -> None:
        """``privacy/meter_image`` (dso): the image a registered pseudonym's meter now
        attests, which the DSO saw in that meter's reading under an earlier pseudonym (it
        attested both, so it knows they are one meter). The pseudonym's firmware of record
        takes it as the firmware registry takes a reading's (a flashed meter: mismatch, so
        quarantined before the pseudonym trades). Under a sealed record ``firmware`` is the
        commitment the meter now attests (no image on the ledger).

        With ``salt`` it is an **opening** (on a firmware advisory): ``firmware`` is the
        image the sealed record commits to; the record is opened, so an advised image
        quarantines exactly this pseudonym (``firmware.open_image``, rule
        ``image-opening``). Rule ``unknown-pseudonym``."""
        ps = keeper.get_pseudonym(state, msg.pseudonym)
        if ps is None:
            pruned = keeper.pruned_epoch(state, msg.pseudonym)
            if pruned is not None:
                raise PseudonymRetired(f"epoch {pruned} has paid out: its meters are retired")
            raise UnknownPseudonym("no registered pseudonym has this address")
        if keeper.get_epoch(state, ps.epoch).status == "paid":
            raise PseudonymRetired(f"epoch {ps.epoch} has paid out: its meters are retired")
        if self.firmware is not None:
            cp = pseudo_cp(msg.pseudonym)
            if msg.salt is not None:
                self.firmware.open_image(state, ctx, cp, msg.firmware, msg.salt)
            else:
                self.firmware.check_reading(state, ctx, cp, ps.reading, msg.firmware)
        if msg.salt is None:
            ctx.emit("meter_image_reported", pseudonym=msg.pseudonym, firmware=msg.firmware)

    # -- end of block --------------------------------------------------------------------------
    def step(self, state: State, ctx: BlockContext, cfg: PrivacyConfig,
             events: list[dict[str, Any]]) -> None:
        """Close epochs whose pseudonyms are final, decide claims that are due."""
        p = load_params(state)
        for epoch in keeper.open_epochs(state):
            rec = keeper.get_epoch(state, epoch)
            if rec.status == "open":
                last = (epoch + 1) * cfg.epoch_slots - 1
                deadline = (last + 1) * p.slot_seconds + p.settle_window_s
                # after the last slot's dispute window: no dispute fee reaches a swept pseudonym
                due = deadline + max(cfg.close_delay_s, p.dispute_window_s)
                if ctx.slot_time >= due and not any(
                        s <= last for s in self.market.unsettled_slots(state)):
                    self._close(state, ctx, cfg, epoch, rec, events)
            elif (rec.status == "claims" and rec.claims_deadline is not None
                  and ctx.slot_time >= rec.claims_deadline):
                self._decide(state, ctx, cfg, epoch, events)
        for epoch in keeper.epochs_to_prune(state):  # ascending: so are their prune times
            if ctx.slot_time < prune_time(state, cfg, epoch):
                break
            self.prune(state, epoch, events)

    def _sweep(self, state: State, epoch: int) -> int:
        """Move every pseudonym's spendable balance back to the pool; returns the amount."""
        pool, swept = pool_address(epoch), 0
        for addr in keeper.pseudonyms_of_epoch(state, epoch):
            bal = self.bank.balance(state, addr)
            ps = keeper.get_pseudonym(state, addr)
            assert ps is not None
            if bal:
                self.bank.move(state, addr, pool, bal)
            if bal or ps.final_micro is None:
                keeper.put_pseudonym(state, addr,
                                     replace(ps, final_micro=(ps.final_micro or 0) + bal))
            swept += bal
        return swept

    def _close(self, state: State, ctx: BlockContext, cfg: PrivacyConfig, epoch: int,
               rec: EpochRecord, events: list[dict[str, Any]]) -> None:
        swept = self._sweep(state, epoch)
        deadline = ctx.slot_time + cfg.claim_window_s
        keeper.put_epoch(state, epoch, replace(rec, status="claims", claims_deadline=deadline,
                                               swept_micro=swept))
        events.append({"type": "epoch_closed", "epoch": epoch, "pseudonyms": rec.registered,
                       "pool_micro": self.bank.balance(state, pool_address(epoch)),
                       "claims_deadline": deadline})

    def _decide(self, state: State, ctx: BlockContext, cfg: PrivacyConfig, epoch: int,
                events: list[dict[str, Any]]) -> None:
        """Claims that add up to the pool are paid; any other total freezes the pool and
        records a dispute under which the epoch's pseudonyms are opened."""
        late = self._sweep(state, epoch)  # money that reached a pseudonym during the claims
        rec = keeper.get_epoch(state, epoch)
        if late:
            rec = replace(rec, swept_micro=(rec.swept_micro or 0) + late)
        pool = pool_address(epoch)
        held = self.bank.balance(state, pool)
        claims = keeper.claims_of_epoch(state, epoch)
        total = sum(a for _, a in claims)
        if cfg.payout == "bill":
            self._pay_by_bill(state, epoch, rec, held, claims, events)
            return
        if total == held and len(claims) == rec.members:
            for member, amount in claims:
                if amount:
                    self.bank.move(state, pool, member, amount)
            keeper.put_epoch(state, epoch, replace(rec, status="paid"))
            events.append({"type": "pool_paid", "epoch": epoch, "members": len(claims),
                           "paid_micro": total})
            self.retire(state, epoch, events)
            return
        did = dispute_id_for_pool(epoch)
        keeper.put_dispute(state, did, DisputeRecord("pool", (), epoch=epoch))
        keeper.put_epoch(state, epoch, replace(rec, status="disputed"))
        events.append({"type": "pool_disputed", "epoch": epoch, "dispute": did,
                       "claims_micro": total, "pool_micro": held, "claims": len(claims),
                       "members": rec.members, "pseudonyms": rec.registered})
        self.resolve(state, ctx, cfg, epoch, events)

    def _pay_by_bill(self, state: State, epoch: int, rec: EpochRecord, held: int,
                     claims: list[tuple[bytes, int]], events: list[dict[str, Any]]) -> None:
        """Payout ``bill``: refund the claims (each at most a deposit), and settle the rest of
        the pool — the community's net market result and unclaimed deposits — with the grid
        account, whose holder (the DSO) puts each household's share on its energy bill. The
        ledger carries one community total per epoch, no household's amount."""
        pool, grid = pool_address(epoch), load_params(state).grid_account
        total = sum(a for _, a in claims)
        from_grid = to_grid = 0
        if total > held and grid is not None:  # the households spent more than they earned
            from_grid = min(total - held, self.bank.balance(state, grid))
            if from_grid:
                self.bank.move(state, grid, pool, from_grid)
        paid = 0
        for member, amount in claims:
            amount = min(amount, self.bank.balance(state, pool))
            if amount:
                self.bank.move(state, pool, member, amount)
                paid += amount
        left = self.bank.balance(state, pool)
        if left and grid is not None:
            to_grid = left
            self.bank.move(state, pool, grid, left)
        keeper.put_epoch(state, epoch, replace(rec, status="paid"))
        events.append({"type": "pool_paid", "epoch": epoch, "members": len(claims),
                       "paid_micro": paid})
        events.append({"type": "pool_settled", "epoch": epoch, "payout": "bill",
                       "from_grid_micro": from_grid, "to_grid_micro": to_grid,
                       "left_micro": self.bank.balance(state, pool)})
        self.retire(state, epoch, events)

    def covered(self, state: State, epoch: int) -> list[bytes]:
        """Every pseudonym a pool dispute of ``epoch`` opens: its own and those that carried
        money into its pool."""
        return sorted(set(keeper.pseudonyms_of_epoch(state, epoch))
                      | {p for p, _ in keeper.carried_into(state, epoch)})

    def member_dues(self, state: State, cfg: PrivacyConfig, epoch: int) -> dict[bytes, int] | None:
        """What each member is owed from the pool (None until every covered pseudonym has an
        owner): deposit - allowances its pseudonyms drew + their finals + what its earlier
        pseudonyms carried in."""
        dues = {m: j.tickets * cfg.allowance_micro for m, j in keeper.joined_members(state, epoch)}
        carried = dict(keeper.carried_into(state, epoch))
        for addr in self.covered(state, epoch):
            opening = keeper.get_opening(state, addr)
            if opening is None:
                return None
            owner = opening.identity
            ps = keeper.get_pseudonym(state, addr)
            assert ps is not None
            delta = carried.get(addr, 0)
            if ps.epoch == epoch:
                delta += (ps.final_micro or 0) - cfg.allowance_micro
            dues[owner] = dues.get(owner, 0) + delta
        return dues

    def resolve(self, state: State, ctx: BlockContext, cfg: PrivacyConfig, epoch: int,
                events: list[dict[str, Any]]) -> None:
        """Once every covered pseudonym of a disputed epoch has an owner: pay the true dues and
        sanction every member whose claim was above its due."""
        rec = keeper.get_epoch(state, epoch)
        if rec.status != "disputed":
            return
        dues = self.member_dues(state, cfg, epoch)
        if dues is None:
            return
        pool = pool_address(epoch)
        slot = now_slot(state, ctx.slot_time)
        for member in sorted(dues):  # collect debts first (an owner who drew more than it
            if dues[member] < 0:     # deposited, e.g. through a misbehaving attestation)
                take = min(-dues[member], self.bank.balance(state, member))
                if take:
                    self.bank.move(state, member, pool, take)
        for member in sorted(dues):
            if dues[member] > 0:
                self.bank.move(state, pool, member, min(dues[member],
                                                        self.bank.balance(state, pool)))
        claims = dict(keeper.claims_of_epoch(state, epoch))
        for member in sorted(dues):
            claimed = claims.get(member)
            if (claimed is not None and claimed > dues[member]) or dues[member] < 0:
                events.append({"type": "pool_overclaim", "epoch": epoch, "member": member,
                               "claimed_micro": claimed, "due_micro": dues[member]})
                events.append(self.reputation.adjust(state, member, "dispute_lost", slot))
        keeper.put_epoch(state, epoch, replace(rec, status="paid"))
        events.append({"type": "pool_paid", "epoch": epoch, "members": len(dues),
                       "paid_micro": sum(d for d in dues.values() if d > 0),
                       "left_micro": self.bank.balance(state, pool)})
        self.retire(state, epoch, events)

    # -- retirement ----------------------------------------------------------------------------
    def held_back(self, state: State) -> frozenset[bytes]:
        """Pseudonyms a recorded dispute names that are not opened yet: an opening still
        reads their reading key (meter attribution) and their reputation."""
        return frozenset(p for _, d in keeper.disputes(state) if d.kind != "pool"
                         for p in d.targets if keeper.get_opening(state, p) is None)

    def retire(self, state: State, epoch: int, events: list[dict[str, Any]]) -> None:
        """The epoch has paid out: retire its pseudonyms (``retire_one``), in address order.
        Without it a chain keeps ~12 state keys for every pseudonym it ever registered —
        per-slot rotation registers members x 96 a day."""
        held = self.held_back(state)
        retired = sum(self.retire_one(state, a, held)
                      for a in keeper.pseudonyms_of_epoch(state, epoch))
        events.append({"type": "pseudonyms_retired", "epoch": epoch, "retired": retired,
                       "kept": len(keeper.pseudonyms_of_epoch(state, epoch)) - retired})

    def retire_one(self, state: State, addr: bytes, held: frozenset[bytes]) -> bool:
        """Forget what only a live pseudonym needs — its identity and reading key (registry,
        nonces), its stand-in cp's firmware of record, its reading-key and feeder-slot
        entries, a reputation record without a penalty — once its epoch has paid out, it
        holds no money and no unopened dispute names it. ``pv/ps`` (escrow digest,
        certified key, final) and the epoch index stay: disputes and audits of the closed
        epoch read them, and registration refuses the address again. Returns whether it
        was retired now."""
        ps = keeper.get_pseudonym(state, addr)
        if (ps is None or addr in held or self.bank.balance(state, addr)
                or keeper.get_epoch(state, ps.epoch).status != "paid"
                or not self.registry.retire_pseudonym(state, addr)):
            return False
        if self.firmware is not None:
            self.firmware.forget_meter(state, pseudo_cp(addr))
        self.reputation.forget(state, addr)
        keeper.retire_records(state, addr, ps)
        return True


    # -- pruning -------------------------------------------------------------------------------
    def still_read(self, state: State) -> frozenset[bytes]:
        """Pseudonyms whose full record a rule may still read: named by any recorded dispute
        (escrow, release and attribution check its escrow digest, certified key and reading
        key; a later finding reaches an opened one's owner), or carried money into an epoch
        not paid out yet (that epoch's pool dispute covers it, ``member_dues`` reads it)."""
        named = {p for _, d in keeper.disputes(state) for p in d.targets}
        carried = {p for e in keeper.open_epochs(state) for p, _ in keeper.carried_into(state, e)}
        return frozenset(named | carried)

    def prune(self, state: State, epoch: int, events: list[dict[str, Any]]) -> None:
        """A dispute window after the epoch's claims deadline (``prune_time``): replace each
        retired pseudonym's public record (``pv/ps``, ~1.6 KB with its key) and epoch index
        entry by a used marker (``pv/used``: registration refuses the address for good),
        in address order. Kept in full: a pseudonym not retired (money or an unopened
        dispute holds it), opened, with an escrow or a bogus mark, named by a dispute or
        carried into an open epoch. A pruned pseudonym's reputation record (a penalty kept
        at retirement) goes too (``Reputation.drop``). Without it state grows by a record per
        pseudonym ever registered (issue 17: members x 96 a day). Block event
        ``pseudonyms_pruned``."""
        keep = self.still_read(state)
        pruned = kept = 0
        for addr in keeper.pseudonyms_of_epoch(state, epoch):
            if (addr in keep or self.registry.participant(state, addr) is not None
                    or keeper.get_opening(state, addr) is not None
                    or keeper.get_escrow(state, addr) is not None
                    or keeper.bogus_for(state, addr) is not None):
                kept += 1
                continue
            keeper.prune_pseudonym(state, addr, epoch)
            # its score (kept at retirement only for a penalty an opening would carry): no
            # rule reads a pruned pseudonym's score, it can never be opened
            self.reputation.drop(state, addr)
            pruned += 1
        keeper.take_epoch_to_prune(state, epoch)
        events.append({"type": "pseudonyms_pruned", "epoch": epoch, "pruned": pruned,
                       "kept": kept})


def prune_time(state: State, cfg: PrivacyConfig, epoch: int) -> int:
    """When a paid-out epoch's pseudonyms are pruned (block time, s): its regular claims
    deadline — the last slot's end, settlement window, dispute window (or close delay),
    claim window — plus one more dispute window, in which a decided trade dispute can still
    be turned into an opening (``request_opening``). A pool paid later (disputed) is pruned
    at the first block after its pay-out past this time. Integers only."""
    p = load_params(state)
    last_end = (epoch + 1) * cfg.epoch_slots * p.slot_seconds
    return (last_end + p.settle_window_s + max(cfg.close_delay_s, p.dispute_window_s)
            + cfg.claim_window_s + p.dispute_window_s)


def _verifies(alg: str, pk: bytes, message: bytes, sig: bytes, context: bytes) -> bool:
    try:
        return verify_signature(alg, pk, message, sig, context)
    except CryptoError:
        return False
