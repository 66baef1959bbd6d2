"""The only code that touches ``pv/`` keys."""

from __future__ import annotations

from typing import Any

import cbor2

from gridledger.ledger.modules.privacy.config import PrivacyConfig, parse_config
from gridledger.ledger.modules.privacy.records import (
    AggregateRecord,
    AttestRecord,
    BatchRecord,
    DisputeRecord,
    EpochRecord,
    EscrowRecord,
    JoinRecord,
    OpeningState,
    PartialRecord,
    PseudonymRecord,
    RoamingAuth,
)
from gridledger.ledger.record import read, read_prefix
from gridledger.ledger.state import State
from gridledger.memo import Memo

CONFIG = b"pv/config"
EPOCH = b"pv/ep/"          # + epoch(8) -> EpochRecord
OPEN_EPOCHS = b"pv/open-epochs"  # [epoch] not yet paid out
JOIN = b"pv/join/"         # + epoch(8) + member -> JoinRecord
BATCH = b"pv/batch/"       # + root -> BatchRecord
ATTEST = b"pv/att/"        # + root -> AttestRecord
PSEUDONYM = b"pv/ps/"      # + pseudonym -> PseudonymRecord
BY_EPOCH = b"pv/pe/"       # + epoch(8) + pseudonym -> 1
USED = b"pv/used/"         # + pseudonym -> epoch: pruned (its record is gone, never reused)
TO_PRUNE = b"pv/to-prune"  # [epoch] paid out, records not yet pruned
CLAIM = b"pv/claim/"       # + epoch(8) + member -> amount
CARRY = b"pv/carry/"       # + epoch(8) + pseudonym -> amount carried into the epoch's pool
DISPUTE = b"pv/disp/"      # + dispute id -> DisputeRecord
ESCROW = b"pv/esc/"        # + pseudonym -> EscrowRecord
RELEASE = b"pv/rel/"       # + dispute id + pseudonym + trustee index(1) -> share
BOGUS = b"pv/bogus/"       # + pseudonym -> [dispute id, named address or b""]
OPENED = b"pv/open/"       # + pseudonym -> OpeningState
PARTIAL = b"pv/part/"      # + slot(8) + feeder + 0x00 + position(1) -> PartialRecord
PENDING_AGG = b"pv/pagg"   # [[slot, feeder]] with partials not yet decoded
PENDING_CHECK = b"pv/pchk"  # [[slot, feeder]] decoded, awaiting the settlement deadline
AGGREGATE = b"pv/agg/"     # + slot(8) + feeder -> AggregateRecord
EVIDENCE = b"pv/evid/"     # + slot(8) + feeder + 0x00 + position(1) -> misconduct kind
FEEDER_SLOT = b"pv/fs/"    # + slot(8) + feeder + 0x00 + pseudonym -> 1
ROAM_SEQ = b"pv/rseq/"     # + account -> next roaming authorisation number
ROAM_AUTH = b"pv/rauth/"   # + account + seq(8) -> RoamingAuth
ROAM_OPEN = b"pv/ropen"    # [[expires_at, account, seq]] holding money, sorted
ROAMING_DUE = b"pv/roamdue/"  # + community + 0x00 + dso id -> micro the grid account owes


def e8(n: int) -> bytes:
    return n.to_bytes(8, "big")


_CFG_CACHE: dict[bytes, PrivacyConfig] = {}


def config(state: State) -> PrivacyConfig | None:
    """The genesis privacy config (None: the chain runs without pseudonyms)."""
    raw = state.get(CONFIG)
    if raw is None:
        return None
    hit = _CFG_CACHE.get(raw)
    if hit is None:
        hit = _CFG_CACHE[raw] = parse_config(state.get_obj(CONFIG))
    return hit


def put_config(state: State, cfg: PrivacyConfig) -> None:
    state.set_obj(CONFIG, cfg.to_obj())


# -- epochs, tickets, attestations, batches, pseudonyms -------------------------------------
def get_epoch(state: State, epoch: int) -> EpochRecord:
    rec = read(state, EPOCH + e8(epoch), EpochRecord)
    return EpochRecord() if rec is None else rec


def put_epoch(state: State, epoch: int, rec: EpochRecord) -> None:
    state.set_obj(EPOCH + e8(epoch), rec.to_obj())
    open_ = open_epochs(state)
    if rec.status != "paid" and epoch not in open_:
        state.set_obj(OPEN_EPOCHS, sorted([*open_, epoch]))
    elif rec.status == "paid" and epoch in open_:
        state.set_obj(OPEN_EPOCHS, [e for e in open_ if e != epoch])
        state.set_obj(TO_PRUNE, sorted([*epochs_to_prune(state), epoch]))


def epochs_to_prune(state: State) -> list[int]:
    """Epochs paid out whose pseudonyms' records are not pruned yet (``Pool.prune``)."""
    return list(state.get_obj(TO_PRUNE, []))


def take_epoch_to_prune(state: State, epoch: int) -> None:
    left = [e for e in epochs_to_prune(state) if e != epoch]
    if left:
        state.set_obj(TO_PRUNE, left)
    else:
        state.delete(TO_PRUNE)


def open_epochs(state: State) -> list[int]:
    return list(state.get_obj(OPEN_EPOCHS, []))


def get_join(state: State, epoch: int, member: bytes) -> JoinRecord | None:
    return read(state, JOIN + e8(epoch) + member, JoinRecord)


def put_join(state: State, epoch: int, member: bytes, rec: JoinRecord) -> None:
    state.set_obj(JOIN + e8(epoch) + member, rec.to_obj())


def joined_members(state: State, epoch: int) -> list[tuple[bytes, JoinRecord]]:
    return read_prefix(state, JOIN + e8(epoch), JoinRecord)


def get_batch(state: State, root: bytes) -> BatchRecord | None:
    return read(state, BATCH + root, BatchRecord)


def put_batch(state: State, root: bytes, rec: BatchRecord) -> None:
    state.set_obj(BATCH + root, rec.to_obj())


def get_attestation(state: State, root: bytes) -> AttestRecord | None:
    return read(state, ATTEST + root, AttestRecord)


def put_attestation(state: State, root: bytes, rec: AttestRecord) -> None:
    state.set_obj(ATTEST + root, rec.to_obj())


_DECODED_MAX = 4096
_DECODED: Memo[bytes, PseudonymRecord] = Memo(_DECODED_MAX)  # aged by block time
"""~3 KB an entry (the certified key, decoded, and the raw record, kept alive after pruning
drops it from state): an epoch's pseudonyms at 30 members (2,880) fit, which the sweep, the
pay-out and retirement read in turn; 16,384 took ~6 days to fill at 30 members (issue 17).
"""


def get_pseudonym(state: State, addr: bytes) -> PseudonymRecord | None:
    # a pure function of the stored bytes (records are immutable), so decoded once: the
    # sweep, the pay-out and retirement each read every pseudonym of the epoch
    raw = state.get(PSEUDONYM + addr)
    if raw is None:
        return None
    rec = _DECODED.get(raw)
    if rec is None:
        rec = PseudonymRecord.from_obj(cbor2.loads(raw))
        _DECODED.put(raw, rec)
    return rec


def put_pseudonym(state: State, addr: bytes, rec: PseudonymRecord) -> None:
    """Write a pseudonym's record; a new one is also indexed under its epoch (an update —
    its final at the sweep — rewrites the record only)."""
    if state.get(PSEUDONYM + addr) is None:
        state.set_int(BY_EPOCH + e8(rec.epoch) + addr, 1)
    state.set_obj(PSEUDONYM + addr, rec.to_obj())


def prune_pseudonym(state: State, addr: bytes, epoch: int) -> None:
    """Replace a retired pseudonym's public record and epoch index entry by its ``used``
    marker (the epoch, a few bytes): registration still refuses the address."""
    state.delete(PSEUDONYM + addr)
    state.delete(BY_EPOCH + e8(epoch) + addr)
    state.set_obj(USED + addr, epoch)   # set_obj: epoch 0 is a value, not a deletion


def pruned_epoch(state: State, addr: bytes) -> int | None:
    """The epoch of a pruned pseudonym (None: never registered, or its record is still in
    state)."""
    v = state.get_obj(USED + addr)
    return None if v is None else int(v)


def retire_records(state: State, addr: bytes, rec: PseudonymRecord) -> None:
    """Drop a retired pseudonym's feeder-slot index entries (``pv/ps`` and the epoch index
    stay: the public record of the epoch)."""
    for s in range(rec.first_slot, rec.last_slot + 1):
        state.delete(FEEDER_SLOT + e8(s) + rec.feeder.encode() + b"\x00" + addr)


def disputes(state: State) -> list[tuple[bytes, DisputeRecord]]:
    """Every recorded dispute, by id."""
    return read_prefix(state, DISPUTE, DisputeRecord)


def pseudonyms_of_epoch(state: State, epoch: int) -> list[bytes]:
    prefix = BY_EPOCH + e8(epoch)
    return [k[len(prefix):] for k in state.keys_with_prefix(prefix)]


def index_feeder_slot(state: State, slot: int, feeder: str, pseudonym: bytes) -> None:
    state.set_int(FEEDER_SLOT + e8(slot) + feeder.encode() + b"\x00" + pseudonym, 1)


def pseudonyms_of_feeder_slot(state: State, slot: int, feeder: str) -> list[bytes]:
    prefix = FEEDER_SLOT + e8(slot) + feeder.encode() + b"\x00"
    return [k[len(prefix):] for k in state.keys_with_prefix(prefix)]


# -- claims and carried money ------------------------------------------------------------------
def get_claim(state: State, epoch: int, member: bytes) -> int | None:
    v = state.get(CLAIM + e8(epoch) + member)
    return None if v is None else state.get_int(CLAIM + e8(epoch) + member)


def put_claim(state: State, epoch: int, member: bytes, amount: int) -> None:
    state.set_int(CLAIM + e8(epoch) + member, amount)


def claims_of_epoch(state: State, epoch: int) -> list[tuple[bytes, int]]:
    prefix = CLAIM + e8(epoch)
    return [(k[len(prefix):], int(v)) for k, v in state.items_with_prefix(prefix)]


def add_carry(state: State, epoch: int, pseudonym: bytes, amount: int) -> None:
    key = CARRY + e8(epoch) + pseudonym
    state.set_int(key, state.get_int(key) + amount)


def carried_into(state: State, epoch: int) -> list[tuple[bytes, int]]:
    """(pseudonym of an earlier epoch, micro-units it carried into ``epoch``'s pool)."""
    prefix = CARRY + e8(epoch)
    return [(k[len(prefix):], int(v)) for k, v in state.items_with_prefix(prefix)]


# -- disputes, escrows, openings --------------------------------------------------------------
def get_dispute(state: State, dispute_id: bytes) -> DisputeRecord | None:
    return read(state, DISPUTE + dispute_id, DisputeRecord)


def put_dispute(state: State, dispute_id: bytes, rec: DisputeRecord) -> None:
    state.set_obj(DISPUTE + dispute_id, rec.to_obj())


def get_escrow(state: State, pseudonym: bytes) -> EscrowRecord | None:
    return read(state, ESCROW + pseudonym, EscrowRecord)


def put_escrow(state: State, pseudonym: bytes, rec: EscrowRecord) -> None:
    state.set_obj(ESCROW + pseudonym, rec.to_obj())


def put_release(state: State, dispute_id: bytes, pseudonym: bytes, trustee: int,
                share: bytes) -> None:
    state.set_obj(RELEASE + dispute_id + pseudonym + bytes([trustee]), share)


def releases(state: State, dispute_id: bytes, pseudonym: bytes) -> dict[int, bytes]:
    prefix = RELEASE + dispute_id + pseudonym
    return {k[-1]: v for k, v in state.items_with_prefix(prefix)}


def mark_bogus(state: State, pseudonym: bytes, dispute_id: bytes, named: bytes | None) -> None:
    """The pseudonym's escrow opened to nobody (``named`` None) or to a non-owner."""
    state.set_obj(BOGUS + pseudonym, [dispute_id, named or b""])


def bogus_for(state: State, pseudonym: bytes) -> tuple[bytes, bytes | None] | None:
    """(dispute id, the address the bogus escrow named, if any)."""
    v = state.get_obj(BOGUS + pseudonym)
    return None if v is None else (bytes(v[0]), bytes(v[1]) or None)


def get_opening(state: State, pseudonym: bytes) -> OpeningState | None:
    return read(state, OPENED + pseudonym, OpeningState)


def put_opening(state: State, pseudonym: bytes, rec: OpeningState) -> None:
    state.set_obj(OPENED + pseudonym, rec.to_obj())


# -- secure aggregation -----------------------------------------------------------------------
def _part_prefix(slot: int, feeder: str) -> bytes:
    return PARTIAL + e8(slot) + feeder.encode() + b"\x00"


def get_partial(state: State, slot: int, feeder: str, position: int) -> PartialRecord | None:
    return read(state, _part_prefix(slot, feeder) + bytes([position]), PartialRecord)


def put_partial(state: State, slot: int, feeder: str, position: int,
                rec: PartialRecord) -> None:
    state.set_obj(_part_prefix(slot, feeder) + bytes([position]), rec.to_obj())
    pending = pending_aggregates(state)
    if [slot, feeder] not in pending:
        state.set_obj(PENDING_AGG, sorted([*pending, [slot, feeder]]))


def partials(state: State, slot: int, feeder: str) -> dict[int, PartialRecord]:
    return {rest[-1]: rec for rest, rec in
            read_prefix(state, _part_prefix(slot, feeder), PartialRecord)}


def take_partials(state: State, slot: int, feeder: str) -> None:
    for k in state.keys_with_prefix(_part_prefix(slot, feeder)):
        state.delete(k)
    state.set_obj(PENDING_AGG, [x for x in pending_aggregates(state) if x != [slot, feeder]])


def pending_aggregates(state: State) -> list[list[Any]]:
    return [list(x) for x in state.get_obj(PENDING_AGG, [])]


def add_pending_check(state: State, slot: int, feeder: str) -> None:
    pending = pending_checks(state)
    if [slot, feeder] not in pending:
        state.set_obj(PENDING_CHECK, sorted([*pending, [slot, feeder]]))


def take_pending_check(state: State, slot: int, feeder: str) -> None:
    state.set_obj(PENDING_CHECK, [x for x in pending_checks(state) if x != [slot, feeder]])


def pending_checks(state: State) -> list[list[Any]]:
    return [list(x) for x in state.get_obj(PENDING_CHECK, [])]


def get_aggregate(state: State, slot: int, feeder: str) -> AggregateRecord | None:
    return read(state, AGGREGATE + e8(slot) + feeder.encode(), AggregateRecord)


def put_aggregate(state: State, slot: int, feeder: str, rec: AggregateRecord) -> None:
    state.set_obj(AGGREGATE + e8(slot) + feeder.encode(), rec.to_obj())


def prune_aggregates(state: State, before_slot: int) -> int:
    """Drop every round's record of a slot below ``before_slot`` (key order is slot order);
    returns how many."""
    n = 0
    for k in state.keys_with_prefix(AGGREGATE):
        if int.from_bytes(k[len(AGGREGATE):len(AGGREGATE) + 8], "big") >= before_slot:
            break
        state.delete(k)
        n += 1
    return n


def _evidence_key(feeder: str, slot: int, position: int) -> bytes:
    return EVIDENCE + e8(slot) + feeder.encode() + b"\x00" + bytes([position])


def get_evidence(state: State, feeder: str, slot: int, position: int) -> str | None:
    v: str | None = state.get_obj(_evidence_key(feeder, slot, position))
    return v


def put_evidence(state: State, feeder: str, slot: int, position: int, kind: str) -> None:
    state.set_obj(_evidence_key(feeder, slot, position), kind)


# -- EV roaming -------------------------------------------------------------------------------
def next_roaming_seq(state: State, account: bytes) -> int:
    return state.get_int(ROAM_SEQ + account)


def set_next_roaming_seq(state: State, account: bytes, seq: int) -> None:
    state.set_int(ROAM_SEQ + account, seq)


def get_roaming_auth(state: State, account: bytes, seq: int) -> RoamingAuth | None:
    return read(state, ROAM_AUTH + account + e8(seq), RoamingAuth)


def put_roaming_auth(state: State, account: bytes, seq: int, rec: RoamingAuth) -> None:
    state.set_obj(ROAM_AUTH + account + e8(seq), rec.to_obj())


def open_roaming(state: State) -> list[tuple[int, bytes, int]]:
    return [(int(e), bytes(a), int(s)) for e, a, s in state.get_obj(ROAM_OPEN, [])]


def add_open_roaming(state: State, expires_at: int, account: bytes, seq: int) -> None:
    state.set_obj(ROAM_OPEN, sorted([list(x) for x in open_roaming(state)]
                                    + [[expires_at, account, seq]]))


def take_open_roaming(state: State, expires_at: int, account: bytes, seq: int) -> None:
    state.set_obj(ROAM_OPEN, [list(x) for x in open_roaming(state)
                              if x != (expires_at, account, seq)])


def _due_key(community: str, dso_id: str) -> bytes:
    return ROAMING_DUE + community.encode() + b"\x00" + dso_id.encode()


def roaming_due(state: State, community: str, dso_id: str) -> int:
    """Micro-units the grid account owes a foreign community's DSO for roaming charges."""
    return state.get_int(_due_key(community, dso_id))


def add_roaming_due(state: State, community: str, dso_id: str, amount: int) -> None:
    state.set_int(_due_key(community, dso_id), roaming_due(state, community, dso_id) + amount)
