"""Identity openings, only for disputes recorded on the ledger.

* ``privacy/request_opening {slot, trade, claim}``: a decided trade dispute whose loser is a
  pseudonym becomes a recorded dispute. Pool disputes (claims that do not add up) and feeder
  disputes (an aggregate mismatch) are recorded by the end-of-block steps.
* ``privacy/escrow {dispute, pseudonym, record, shares, commitments}``: anyone (trustees keep
  every escrow) posts a disputed pseudonym's escrow; it must hash to the certified digest.
* ``privacy/release {dispute, shares: [[pseudonym, share, blind]]}`` by a trustee: its escrow
  share, which must match its commitment in the certified escrow (rule
  ``share-commitment``). So a trustee cannot release a wrong share unnoticed, and cannot be
  framed: every share that counts is the owner's own.
* k released shares open the escrow. The identity it names must be a member who joined the
  pseudonym's epoch, recognised by the key it held when it joined (or holds now): a member
  that rotates its key later is still found. If k committed shares open no well-formed
  record, or one naming somebody else, the escrow is bogus — the owner's doing — and
* ``privacy/attribute {dispute, pseudonym, cp, ...}`` (the DSO, which holds its meters'
  statements) shows the meter's device-signed binding of the pseudonym's reading key: the
  pseudonym is then its household's, and the owner is sanctioned for the bogus escrow.

Every opening is an event naming the dispute and how the owner was established.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridledger.crypto.merkle import verify_inclusion
from gridledger.crypto.sig import PublicKey
from gridledger.errors import CryptoError
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.config import PrivacyConfig
from gridledger.ledger.modules.privacy.errors import (
    AlreadyReleased,
    BadAttribution,
    EscrowMismatch,
    EscrowNotPosted,
    EscrowPosted,
    NoDecision,
    NoDispute,
    NotBogus,
    NotDisputed,
    NotPseudonymous,
    NotTrustee,
    OpeningRequested,
    PseudonymPruned,
    ShareCommitment,
)
from gridledger.ledger.modules.privacy.expected import Disputes, Registry, Reputation
from gridledger.ledger.modules.privacy.pool import Pool, now_slot, require_config
from gridledger.ledger.modules.privacy.records import (
    DisputeRecord,
    EscrowRecord,
    OpeningState,
    PseudonymRecord,
    dispute_id_for_trade,
    key_digest,
)
from gridledger.ledger.modules.privacy.types import (
    Attribute,
    PostEscrow,
    Release,
    RequestOpening,
)
from gridledger.ledger.state import State
from gridledger.privacy.meter_keys import (
    CTX_METER_BINDINGS,
    bindings_message,
    reading_leaf,
)
from gridledger.privacy.pseudonyms import Identity, IdentityEscrow, open_escrow


@dataclass
class Openings:
    """Handlers of recorded disputes and identity openings."""

    registry: Registry
    reputation: Reputation
    disputes: Disputes
    pool: Pool

    def request_opening(self, state: State, ctx: TxContext, msg: RequestOpening) -> None:
        """A decided trade dispute whose loser is a pseudonym becomes a recorded dispute."""
        require_config(state)
        decision = self.disputes.get_decision(state, msg.slot, msg.trade, msg.claim)
        if decision is None:
            raise NoDecision(f"no decided {msg.claim} dispute on slot {msg.slot} trade "
                             f"{msg.trade}")
        if decision["outcome"] == "upheld":
            target, reason = decision["respondent"], "non_delivery"
        else:
            target, reason = decision["claimant"], "dispute_lost"
        if keeper.get_pseudonym(state, target) is None:
            pruned = keeper.pruned_epoch(state, target)
            if pruned is not None:
                raise PseudonymPruned(f"epoch {pruned}'s pseudonyms were pruned: too late to "
                                      "open")
            raise NotPseudonymous("the party at fault trades under its own name")
        did = dispute_id_for_trade(msg.slot, msg.trade, msg.claim)
        if keeper.get_dispute(state, did) is not None:
            raise OpeningRequested("this dispute is already recorded")
        keeper.put_dispute(state, did, DisputeRecord("trade", (target,), reason=reason,
                                                     slot=msg.slot, trade=msg.trade,
                                                     claim=msg.claim))
        ctx.emit("opening_requested", dispute=did, kind="trade", pseudonyms=[target],
                 slot=msg.slot, trade=msg.trade, claim=msg.claim)

    def _dispute_about(self, state: State, did: bytes,
                       pseudonym: bytes) -> tuple[DisputeRecord, PseudonymRecord]:
        dispute = keeper.get_dispute(state, did)
        if dispute is None:
            raise NoDispute("identities are opened only for a dispute on the ledger")
        ps = keeper.get_pseudonym(state, pseudonym)
        covered = (pseudonym in self.pool.covered(state, dispute.epoch)
                   if dispute.kind == "pool" and dispute.epoch is not None
                   else pseudonym in dispute.targets)
        if ps is None or not covered:
            raise NotDisputed("the dispute does not name this pseudonym")
        return dispute, ps

    def escrow(self, state: State, ctx: TxContext, msg: PostEscrow) -> None:
        """Post a disputed pseudonym's escrow (it must hash to the certified digest)."""
        cfg = require_config(state)
        dispute, ps = self._dispute_about(state, msg.dispute, msg.pseudonym)
        if keeper.get_escrow(state, msg.pseudonym) is not None:
            raise EscrowPosted("this pseudonym's escrow is already on the ledger")
        escrow = _escrow(cfg, ps, msg.record, msg.shares, msg.commitments)
        if len(msg.shares) != len(cfg.trustees) or escrow.digest() != ps.escrow_digest:
            raise EscrowMismatch("the escrow does not hash to the certified digest")
        keeper.put_escrow(state, msg.pseudonym, EscrowRecord(msg.record, msg.shares,
                                                             msg.commitments))
        ctx.emit("escrow_posted", dispute=msg.dispute, pseudonym=msg.pseudonym)
        self.try_open(state, ctx.block, cfg, msg.dispute, dispute, msg.pseudonym, ctx.events)

    def release(self, state: State, ctx: TxContext, msg: Release) -> None:
        """A trustee's committed escrow shares for pseudonyms a recorded dispute names."""
        cfg = require_config(state)
        trustee = cfg.trustee_index(ctx.sender)
        if trustee is None:
            raise NotTrustee("only trustees release escrow shares")
        checked: list[tuple[bytes, DisputeRecord]] = []
        for pseudonym, share, blind in msg.shares:
            dispute, ps = self._dispute_about(state, msg.dispute, pseudonym)
            esc = keeper.get_escrow(state, pseudonym)
            if esc is None:
                raise EscrowNotPosted("post the escrow first: the commitments are in it")
            escrow = _escrow(cfg, ps, esc.record, esc.shares, esc.commitments)
            if not escrow.share_matches(trustee, share, blind):
                raise ShareCommitment(f"trustee {cfg.trustees[trustee].id}'s share does not "
                                      "match its commitment in the certified escrow")
            if trustee in keeper.releases(state, msg.dispute, pseudonym):
                raise AlreadyReleased("one share per trustee, dispute and pseudonym")
            keeper.put_release(state, msg.dispute, pseudonym, trustee, share)
            checked.append((pseudonym, dispute))
        ctx.emit("shares_released", dispute=msg.dispute, trustee=cfg.trustees[trustee].id,
                 pseudonyms=[p for p, _, _ in msg.shares])
        for pseudonym, dispute in checked:
            self.try_open(state, ctx.block, cfg, msg.dispute, dispute, pseudonym, ctx.events)

    def attribute(self, state: State, ctx: TxContext, msg: Attribute) -> None:
        """The meter evidence for a pseudonym whose escrow proved bogus: the device key of
        ``cp``'s meter signed the binding of the pseudonym's reading key."""
        cfg = require_config(state)
        dispute, ps = self._dispute_about(state, msg.dispute, msg.pseudonym)
        bogus = keeper.bogus_for(state, msg.pseudonym)
        if keeper.get_opening(state, msg.pseudonym) is not None or bogus is None:
            raise NotBogus("only a pseudonym whose escrow opened to nobody is attributed")
        meter_addr = self.registry.meter_of_cp(state, msg.cp)
        meter = None if meter_addr is None else self.registry.participant(state, meter_addr)
        reading = self.registry.participant(state, ps.reading)
        owner = self.registry.cp_holder(state, msg.cp)
        if meter is None or reading is None or owner is None:
            raise BadAttribution(f"{msg.cp!r} has no meter or holder, or the pseudonym no "
                                 "reading key")
        leaf = reading_leaf(cfg.community, ps.epoch, msg.pseudonym,
                            PublicKey(reading.alg, reading.pk), ps.reading_firmware,
                            sealed=bool(ps.reading_sealed))
        signed = bindings_message(cfg.community, ps.epoch, msg.cp, msg.root, msg.count)
        if (msg.index >= msg.count
                or not verify_inclusion(msg.root, leaf, msg.index, msg.count, list(msg.path))
                or not _verifies(meter, signed, msg.device_sig)):
            raise BadAttribution("the meter's signed bindings do not include this pseudonym")
        slot = now_slot(state, ctx.block.slot_time)
        keeper.put_opening(state, msg.pseudonym, OpeningState(owner, msg.dispute, "meter", ()))
        ctx.emit("identity_opened", dispute=msg.dispute, kind=dispute.kind,
                 pseudonym=msg.pseudonym, identity=owner, via="meter", trustees=[])
        if bogus[1] != owner:
            # the owner dealt an escrow that names nobody, or somebody else: its misconduct
            # (an escrow naming the owner under a key it no longer holds is not)
            ctx.events.append(self.reputation.adjust(state, owner, "dispute_lost", slot))
        self._after_opening(state, ctx.block, cfg, dispute, msg.pseudonym, owner, ctx.events)

    def try_open(self, state: State, block: BlockContext, cfg: PrivacyConfig, did: bytes,
                 dispute: DisputeRecord, pseudonym: bytes,
                 events: list[dict[str, Any]]) -> None:
        """Open ``pseudonym`` once its escrow and k committed shares for ``did`` are in."""
        if keeper.get_opening(state, pseudonym) is not None:
            return
        esc = keeper.get_escrow(state, pseudonym)
        ps = keeper.get_pseudonym(state, pseudonym)
        if esc is None or ps is None:
            return
        escrow = _escrow(cfg, ps, esc.record, esc.shares, esc.commitments)
        opened = open_escrow(escrow, keeper.releases(state, did, pseudonym), cfg.threshold)
        if opened is None:
            return
        identity = opened.identity
        if identity is None or not self.is_owner(state, identity, ps.epoch):
            # k committed shares open nothing, or somebody who is not a member of the epoch
            if keeper.bogus_for(state, pseudonym) is None:
                keeper.mark_bogus(state, pseudonym, did,
                                  None if identity is None else identity.address)
                events.append({"type": "escrow_bogus", "dispute": did, "pseudonym": pseudonym,
                               "named": None if identity is None else identity.address})
            return
        used = [cfg.trustees[i].id for i in opened.used]
        keeper.put_opening(state, pseudonym, OpeningState(identity.address, did, "escrow",
                                                          tuple(used)))
        events.append({"type": "identity_opened", "dispute": did, "kind": dispute.kind,
                       "pseudonym": pseudonym, "identity": identity.address,
                       "via": "escrow", "trustees": used})
        if dispute.kind == "trade" and dispute.reason is not None:
            events.append(self.reputation.adjust(state, identity.address, dispute.reason,
                                                 now_slot(state, block.slot_time)))
        self._after_opening(state, block, cfg, dispute, pseudonym, identity.address, events)

    def is_owner(self, state: State, identity: Identity, epoch: int) -> bool:
        """Whether an escrow's identity is a member that joined ``epoch`` with this key, or
        holds it now: a key rotated after the join still recognises its owner."""
        member = self.registry.participant(state, identity.address)
        if member is None or "pseudonym" in member.roles:
            return False
        join = keeper.get_join(state, epoch, identity.address)
        digest = key_digest(identity.key.alg, identity.key.raw)
        if join is not None and join.key_digest == digest:
            return True
        return (identity.key.alg, identity.key.raw) == (member.alg, member.pk)

    def _after_opening(self, state: State, block: BlockContext, cfg: PrivacyConfig,
                       dispute: DisputeRecord, pseudonym: bytes, owner: bytes,
                       events: list[dict[str, Any]]) -> None:
        ev = self.reputation.carry_penalty(state, owner, pseudonym,
                                           now_slot(state, block.slot_time))
        if ev is not None:
            events.append(ev)
        if dispute.kind == "pool" and dispute.epoch is not None:
            self.pool.resolve(state, block, cfg, dispute.epoch, events)
        # opened after its epoch paid out (its dispute held it back): retire it now
        self.pool.retire_one(state, pseudonym, self.pool.held_back(state))


def _escrow(cfg: PrivacyConfig, ps: PseudonymRecord, record: bytes, shares: tuple[bytes, ...],
            commitments: tuple[bytes, ...]) -> IdentityEscrow:
    # the key the batch certified, not the registry's current one: a pseudonym that rotates
    # its key does not make its own escrow unverifiable
    return IdentityEscrow(cfg.community, ps.epoch, "trade", ps.certified_key, record, shares,
                          commitments)


def _verifies(signer: Any, message: bytes, sig: bytes) -> bool:
    try:
        return PublicKey(signer.alg, signer.pk).verify(message, sig, CTX_METER_BINDINGS)
    except CryptoError:
        return False
