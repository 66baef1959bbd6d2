"""Privacy handlers: pool tickets, batch certificates, pseudonym registration and readings,
claims, identity openings for recorded disputes (aggregation results: ``aggregation.py``)."""

from __future__ import annotations

from typing import Any

from gridledger.crypto.merkle import verify_inclusion
from gridledger.crypto.sig import PQ_SIG_ALGS, PublicKey, address_of, verify_signature
from gridledger.errors import InvalidBody, Unauthorized
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.metering import keeper as metering
from gridledger.ledger.modules.metering.types import (
    FIRMWARE_HASH_LEN,
    MAX_READING_WH,
    Reading,
    reading_window,
)
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.types import (
    MAX_ESCROW_RECORD,
    MAX_LEAVES_PER_TX,
    MAX_PATH,
    MAX_SEALED_SHARE,
    MAX_SHARES_PER_TX,
    PrivacyConfig,
    dispute_id_for_trade,
    pool_address,
    pseudo_cp,
)
from gridledger.ledger.modules.registry.keeper import get_participant, put_participant
from gridledger.ledger.modules.reputation.keeper import adjust, carry_penalty, tier_of
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_bytes, require_int, require_str
from gridledger.privacy.pseudonyms import (
    CTX_BATCH,
    IdentityEscrow,
    batch_message,
    leaf_hash,
    open_escrow,
)

OPENING_SHARE_BYTES = 48  # three Shamir field elements (pseudonyms._CHUNKS)


def require_config(state: State) -> PrivacyConfig:
    cfg = keeper.config(state)
    if cfg is None:
        raise InvalidBody("privacy-disabled: this chain has no privacy section in genesis")
    return cfg


def _exact(body: dict[str, Any], kind: str, names: set[str]) -> None:
    if set(body) != names:
        raise InvalidBody(f"{kind} has exactly the fields {', '.join(sorted(names))}")


def _now_slot(ctx: TxContext, state: State) -> int:
    return ctx.block.slot_time // load_params(state).slot_seconds


def ticket_cap(state: State, cfg: PrivacyConfig, member: bytes) -> int:
    """Reputation follows the member into pseudonymity: fewer tickets on watch, none when
    restricted or suspended (they trade under their own name, with the higher deposits)."""
    tier = tier_of(state, member)
    if tier == "good":
        return cfg.max_tickets
    if tier == "watch":
        return cfg.max_tickets // 2
    return 0


def handle_join(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/join {epoch, tickets}``: lock tickets x allowance in the epoch pool."""
    _exact(body, "privacy/join", {"epoch", "tickets"})
    cfg = require_config(state)
    epoch = require_int(body, "epoch", maximum=2**40)
    tickets = require_int(body, "tickets", minimum=1, maximum=10_000)
    member = get_participant(state, ctx.sender)
    if member is None or not member.get("cp") or "pseudonym" in member["roles"]:
        raise Unauthorized("join-needs-member: only members holding a connection point join")
    now_epoch = _now_slot(ctx, state) // cfg.epoch_slots
    if not now_epoch <= epoch <= now_epoch + 1:
        raise InvalidBody(f"join-epoch: join epoch {now_epoch} or {now_epoch + 1}, not {epoch}")
    rec = keeper.get_epoch(state, epoch)
    if rec["status"] != "open":
        raise InvalidBody(f"epoch-closed: epoch {epoch} is {rec['status']}")
    if keeper.tickets_of(state, epoch, ctx.sender):
        raise InvalidBody(f"already-joined: one join per member and epoch ({epoch})")
    cap = ticket_cap(state, cfg, ctx.sender)
    if tickets > cap:
        raise Unauthorized(f"ticket-cap: reputation tier {tier_of(state, ctx.sender)} allows "
                           f"{cap} pseudonyms per epoch")
    amount = tickets * cfg.allowance_micro
    bank.move(state, ctx.sender, pool_address(epoch), amount)
    keeper.set_tickets(state, epoch, ctx.sender, tickets)
    keeper.put_epoch(state, epoch, {**rec, "tickets": rec["tickets"] + tickets,
                                    "members": rec["members"] + 1,
                                    "pool_in_micro": rec["pool_in_micro"] + amount})
    ctx.emit("pool_joined", epoch=epoch, member=ctx.sender, tickets=tickets, locked_micro=amount)


def handle_certify(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/certify {epoch, root, count, endorsements: [[trustee index, sig], ...]}``:
    a trustee posts the epoch batch certificate (k trustees signed the Merkle root)."""
    _exact(body, "privacy/certify", {"epoch", "root", "count", "endorsements"})
    cfg = require_config(state)
    if cfg.trustee_index(ctx.sender) is None:
        raise Unauthorized("not-trustee: batch certificates are posted by a trustee")
    epoch = require_int(body, "epoch", maximum=2**40)
    root = require_bytes(body, "root", exact=32)
    count = require_int(body, "count", minimum=1, maximum=10**6)
    ends = body["endorsements"]
    if not isinstance(ends, list) or len(ends) > len(cfg.trustees):
        raise InvalidBody("field 'endorsements' must be a list of at most n [index, sig]")
    rec = keeper.get_epoch(state, epoch)
    if rec["status"] != "open":
        raise InvalidBody(f"epoch-closed: epoch {epoch} is {rec['status']}")
    if keeper.get_batch(state, root) is not None:
        raise InvalidBody("batch-exists: this root is already certified")
    if rec["certified"] + count > rec["tickets"]:
        raise InvalidBody(f"tickets-exceeded: epoch {epoch} sold {rec['tickets']} tickets, "
                          f"{rec['certified']} certified, batch asks {count}")
    msg = batch_message(cfg.community, epoch, root, count)
    good: set[int] = set()
    for e in ends:
        if (not isinstance(e, list) or len(e) != 2 or not isinstance(e[0], int)
                or not isinstance(e[1], bytes) or not 0 <= e[0] < len(cfg.trustees)):
            raise InvalidBody("each endorsement is [trustee index, signature]")
        t = get_participant(state, cfg.trustees[e[0]].addr)
        if t is not None and verify_signature(t["alg"], t["pk"], msg, e[1], CTX_BATCH):
            good.add(e[0])
    if len(good) < cfg.threshold:
        raise InvalidBody(f"batch-endorsements: {len(good)} valid distinct trustee signatures; "
                          f"need {cfg.threshold}")
    keeper.put_batch(state, root, {"epoch": epoch, "count": count, "registered": 0,
                                   "trustees": sorted(good)})
    keeper.put_epoch(state, epoch, {**rec, "certified": rec["certified"] + count})
    ctx.emit("batch_certified", epoch=epoch, root=root, count=count,
             trustees=[cfg.trustees[i].id for i in sorted(good)])


def handle_register(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/register {root, leaves: [{alg, pk, escrow_digest, first_slot, last_slot,
    feeder, index, path}]}``: anyone relays pseudonyms of a certified batch onto the ledger
    (the owner does not send it: that would link them). Each pseudonym gets the allowance
    from the epoch pool and may trade and report readings in its slots only."""
    _exact(body, "privacy/register", {"root", "leaves"})
    cfg = require_config(state)
    root = require_bytes(body, "root", exact=32)
    batch = keeper.get_batch(state, root)
    if batch is None:
        raise InvalidBody("no-batch: no certified batch with this root")
    leaves = body["leaves"]
    if not isinstance(leaves, list) or not 1 <= len(leaves) <= MAX_LEAVES_PER_TX:
        raise InvalidBody(f"field 'leaves' must hold 1..{MAX_LEAVES_PER_TX} pseudonyms")
    epoch = batch["epoch"]
    first_ok, last_ok = epoch * cfg.epoch_slots, (epoch + 1) * cfg.epoch_slots - 1
    pool = pool_address(epoch)
    for leaf in leaves:
        if not isinstance(leaf, dict) or set(leaf) != {"alg", "pk", "escrow_digest", "first_slot",
                                                       "last_slot", "feeder", "index", "path"}:
            raise InvalidBody("each leaf has exactly alg, pk, escrow_digest, first_slot, "
                              "last_slot, feeder, index, path")
        alg = require_str(leaf, "alg", choices=tuple(sorted(PQ_SIG_ALGS)))
        pk = require_bytes(leaf, "pk", max_len=4096)
        digest = require_bytes(leaf, "escrow_digest", exact=32)
        first = require_int(leaf, "first_slot", maximum=2**40)
        last = require_int(leaf, "last_slot", maximum=2**40)
        feeder = require_str(leaf, "feeder", max_len=64)
        index = require_int(leaf, "index", maximum=10**6)
        path = leaf["path"]
        if (not isinstance(path, list) or len(path) > MAX_PATH
                or not all(isinstance(h, bytes) and len(h) == 32 for h in path)):
            raise InvalidBody("field 'path' must be a list of 32-byte hashes")
        if not first_ok <= first <= last <= last_ok:
            raise InvalidBody(f"pseudonym-slots: slots must lie in epoch {epoch} "
                              f"({first_ok}..{last_ok})")
        if cfg.feeder_cps(feeder) is None:
            raise InvalidBody(f"unknown-feeder: {feeder!r}")
        if index >= batch["count"] or not verify_inclusion(
                root, leaf_hash(cfg.community, epoch, first, last, feeder, alg, pk, digest),
                index, batch["count"], path):
            raise InvalidBody("not-certified: the leaf is not in the certified batch")
        addr = address_of(alg, pk)
        if get_participant(state, addr) is not None:
            raise InvalidBody("pseudonym-registered: this key is already on the ledger")
        put_participant(state, addr, {"alg": alg, "pk": pk,
                                      "roles": ["consumer", "prosumer", "pseudonym"],
                                      "cp": pseudo_cp(addr), "name": "", "status": "active",
                                      "valid_slots": [first, last]})
        keeper.put_pseudonym(state, addr, {"epoch": epoch, "first_slot": first, "last_slot": last,
                                           "feeder": feeder, "escrow_digest": digest,
                                           "root": root, "final_micro": None})
        for s in range(first, last + 1):
            keeper.index_feeder_slot(state, s, feeder, addr)
        bank.move(state, pool, addr, cfg.allowance_micro)
        batch = {**batch, "registered": batch["registered"] + 1}
        ctx.emit("pseudonym_registered", pseudonym=addr, epoch=epoch, first_slot=first,
                 last_slot=last, feeder=feeder, allowance_micro=cfg.allowance_micro)
    keeper.put_batch(state, root, batch)
    rec = keeper.get_epoch(state, epoch)
    keeper.put_epoch(state, epoch, {**rec, "registered": rec["registered"] + len(leaves)})


def handle_reading(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/reading {slot, import_wh, export_wh, firmware}`` signed by the pseudonym
    (its key lives in the household's meter gateway). Settlement uses it like a meter
    reading; the feeder's secure aggregate checks it (``hooks.combine_aggregate``)."""
    _exact(body, "privacy/reading", {"slot", "import_wh", "export_wh", "firmware"})
    slot = require_int(body, "slot", maximum=2**40)
    import_wh = require_int(body, "import_wh", maximum=MAX_READING_WH)
    export_wh = require_int(body, "export_wh", maximum=MAX_READING_WH)
    firmware = require_bytes(body, "firmware", exact=FIRMWARE_HASH_LEN)
    ps = keeper.get_pseudonym(state, ctx.sender)
    if ps is None:
        raise Unauthorized("not-pseudonym: privacy/reading is sent by a registered pseudonym")
    if not ps["first_slot"] <= slot <= ps["last_slot"]:
        raise InvalidBody(f"pseudonym-slot: this pseudonym covers slots "
                          f"{ps['first_slot']}..{ps['last_slot']}")
    p = load_params(state)
    first, last = reading_window(slot, p.slot_seconds, p.settle_window_s)
    now = ctx.block.slot_time
    if not first <= now < last:
        raise InvalidBody(f"reading-window: readings for slot {slot} are accepted in [{first}, {last})")
    cp = pseudo_cp(ctx.sender)
    if metering.reading_of(state, slot, cp) is not None:
        raise InvalidBody(f"one-reading-per-slot: pseudonym already reported slot {slot}")
    metering.record_reading(state, Reading(slot, cp, import_wh, export_wh, firmware, ctx.sender))
    ctx.emit("reading", slot=slot, cp=cp, import_wh=import_wh, export_wh=export_wh,
             firmware=firmware)


def handle_claim(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/claim {epoch, amount_micro}``: what a member says its pseudonyms left it
    (deposit - allowances drawn + their final balances). Paid at the deadline if all
    claims add up to the pool; otherwise the pool is frozen and opened (``hooks``)."""
    _exact(body, "privacy/claim", {"epoch", "amount_micro"})
    epoch = require_int(body, "epoch", maximum=2**40)
    amount = require_int(body, "amount_micro", maximum=10**15)
    require_config(state)
    if not keeper.tickets_of(state, epoch, ctx.sender):
        raise Unauthorized(f"not-in-pool: the sender did not join epoch {epoch}")
    rec = keeper.get_epoch(state, epoch)
    if rec["status"] != "claims":
        raise InvalidBody(f"claims-closed: epoch {epoch} is {rec['status']}, not taking claims")
    if keeper.get_claim(state, epoch, ctx.sender) is not None:
        raise InvalidBody("already-claimed: one claim per member and epoch")
    keeper.put_claim(state, epoch, ctx.sender, amount)
    keeper.put_epoch(state, epoch, {**rec, "claims_micro": rec["claims_micro"] + amount})
    ctx.emit("pool_claim", epoch=epoch, member=ctx.sender, amount_micro=amount)


def handle_request_opening(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/request_opening {slot, trade, claim}``: a decided trade dispute whose loser
    is a pseudonym becomes a recorded opening request the trustees may act on."""
    from gridledger.ledger.modules.disputes.keeper import get_decision
    from gridledger.ledger.modules.disputes.types import CLAIMS

    _exact(body, "privacy/request_opening", {"slot", "trade", "claim"})
    require_config(state)
    slot = require_int(body, "slot", maximum=2**40)
    trade = require_int(body, "trade", maximum=2**32 - 1)
    claim = require_str(body, "claim", choices=CLAIMS)
    decision = get_decision(state, slot, trade, claim)
    if decision is None:
        raise InvalidBody(f"no-decision: no decided {claim} dispute on slot {slot} trade {trade}")
    if decision["outcome"] == "upheld":
        target, reason = decision["respondent"], "non_delivery"
    else:
        target, reason = decision["claimant"], "dispute_lost"
    if keeper.get_pseudonym(state, target) is None:
        raise InvalidBody("not-pseudonymous: the party at fault trades under its own name")
    did = dispute_id_for_trade(slot, trade, claim)
    if keeper.get_dispute(state, did) is not None:
        raise InvalidBody("opening-requested: this dispute is already recorded")
    keeper.put_dispute(state, did, {"kind": "trade", "targets": [target], "reason": reason,
                                    "slot": slot, "trade": trade, "claim": claim})
    ctx.emit("opening_requested", dispute=did, kind="trade", pseudonyms=[target],
             slot=slot, trade=trade, claim=claim)


def _target_of(state: State, dispute: dict[str, Any], pseudonym: bytes) -> bool:
    if dispute["kind"] == "pool":
        ps = keeper.get_pseudonym(state, pseudonym)
        return ps is not None and ps["epoch"] == dispute["epoch"]
    return pseudonym in dispute["targets"]


def _require_dispute(state: State, body: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    did = require_bytes(body, "dispute", exact=32)
    dispute = keeper.get_dispute(state, did)
    if dispute is None:
        raise InvalidBody("no-dispute: identities are opened only for a dispute on the ledger")
    return did, dispute


def handle_escrow(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/escrow {dispute, pseudonym, record, shares}``: anyone (a trustee keeps them)
    posts a disputed pseudonym's escrow; it must hash to the certified escrow digest."""
    _exact(body, "privacy/escrow", {"dispute", "pseudonym", "record", "shares"})
    cfg = require_config(state)
    did, dispute = _require_dispute(state, body)
    pseudonym = require_bytes(body, "pseudonym", exact=32)
    if not _target_of(state, dispute, pseudonym):
        raise InvalidBody("not-disputed: the dispute does not name this pseudonym")
    record = require_bytes(body, "record", max_len=MAX_ESCROW_RECORD)
    shares = body["shares"]
    if (not isinstance(shares, list) or len(shares) != len(cfg.trustees)
            or not all(isinstance(s, bytes) and len(s) <= MAX_SEALED_SHARE for s in shares)):
        raise InvalidBody("field 'shares' must hold one sealed share per trustee")
    if keeper.get_escrow(state, pseudonym) is not None:
        raise InvalidBody("escrow-posted: this pseudonym's escrow is already on the ledger")
    ps = keeper.get_pseudonym(state, pseudonym)
    escrow = _escrow(state, cfg, pseudonym, ps, record, shares)
    if escrow.digest() != ps["escrow_digest"]:
        raise InvalidBody("escrow-mismatch: the escrow does not hash to the certified digest")
    keeper.put_escrow(state, pseudonym, {"record": record, "shares": shares})
    ctx.emit("escrow_posted", dispute=did, pseudonym=pseudonym)
    try_open(state, ctx, cfg, did, dispute, pseudonym)


def _escrow(state: State, cfg: PrivacyConfig, pseudonym: bytes, ps: dict[str, Any],
            record: bytes, shares: list[bytes]) -> IdentityEscrow:
    p = get_participant(state, pseudonym)
    assert p is not None
    return IdentityEscrow(cfg.community, ps["epoch"], "trade", PublicKey(p["alg"], p["pk"]),
                          record, tuple(shares))


def handle_release(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/release {dispute, shares: [[pseudonym, share], ...]}`` by a trustee: its
    escrow shares for pseudonyms a recorded dispute names. The envelope signature is the
    trustee's; k releases open the identity, and the opening is an event naming the
    dispute and the trustees."""
    _exact(body, "privacy/release", {"dispute", "shares"})
    cfg = require_config(state)
    trustee = cfg.trustee_index(ctx.sender)
    if trustee is None:
        raise Unauthorized("not-trustee: only trustees release escrow shares")
    did, dispute = _require_dispute(state, body)
    items = body["shares"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_SHARES_PER_TX:
        raise InvalidBody(f"field 'shares' must hold 1..{MAX_SHARES_PER_TX} [pseudonym, share]")
    for it in items:
        if (not isinstance(it, list) or len(it) != 2 or not isinstance(it[0], bytes)
                or not isinstance(it[1], bytes) or len(it[1]) != OPENING_SHARE_BYTES):
            raise InvalidBody(f"each share is [pseudonym, {OPENING_SHARE_BYTES}-byte share]")
        if not _target_of(state, dispute, it[0]):
            raise InvalidBody("not-disputed: the dispute does not name this pseudonym")
        if trustee in keeper.releases(state, did, it[0]):
            raise InvalidBody("already-released: one share per trustee, dispute and pseudonym")
        keeper.put_release(state, did, it[0], trustee, it[1])
    ctx.emit("shares_released", dispute=did, trustee=cfg.trustees[trustee].id,
             pseudonyms=[it[0] for it in items])
    for it in items:
        try_open(state, ctx, cfg, did, dispute, it[0])


def try_open(state: State, ctx: TxContext, cfg: PrivacyConfig, did: bytes,
             dispute: dict[str, Any], pseudonym: bytes) -> None:
    """Open ``pseudonym`` once its escrow and k shares for ``did`` are on the ledger."""
    if keeper.get_opening(state, pseudonym) is not None:
        return
    esc = keeper.get_escrow(state, pseudonym)
    shares = keeper.releases(state, did, pseudonym)
    if esc is None or len(shares) < cfg.threshold:
        return
    ps = keeper.get_pseudonym(state, pseudonym)
    escrow = _escrow(state, cfg, pseudonym, ps, esc["record"], esc["shares"])
    opened = open_escrow(escrow, shares, cfg.threshold)
    if opened is None:
        if len(shares) == len(cfg.trustees):
            ctx.emit("escrow_bogus", dispute=did, pseudonym=pseudonym)
        return
    identity, used, faulty = opened
    owner = get_participant(state, identity.address)
    if owner is None or owner["pk"] != identity.raw or "pseudonym" in owner["roles"]:
        ctx.emit("escrow_bogus", dispute=did, pseudonym=pseudonym, identity=identity.address)
        return
    slot = _now_slot(ctx, state)
    keeper.put_opening(state, pseudonym, {"identity": identity.address, "dispute": did,
                                          "trustees": [cfg.trustees[i].id for i in used]})
    ctx.emit("identity_opened", dispute=did, kind=dispute["kind"], pseudonym=pseudonym,
             identity=identity.address, trustees=[cfg.trustees[i].id for i in used],
             faulty_trustees=[cfg.trustees[i].id for i in faulty])
    if dispute["kind"] == "trade":
        ctx.events.append(adjust(state, identity.address, dispute["reason"], slot))
    ev = carry_penalty(state, identity.address, pseudonym, slot)
    if ev is not None:
        ctx.events.append(ev)
    if dispute["kind"] == "pool":
        from gridledger.ledger.modules.privacy.hooks import resolve_pool_if_opened

        resolve_pool_if_opened(state, ctx.block, cfg, dispute["epoch"], ctx.events)
