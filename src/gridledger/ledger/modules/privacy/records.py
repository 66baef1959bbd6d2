"""Privacy state records (canonical CBOR maps the keeper stores, ``ledger.record.Record``)
and the addresses and ids derived from them."""

from __future__ import annotations

from dataclasses import dataclass

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.sig import PublicKey
from gridledger.ledger.modules.registry.types import pseudonym_cp
from gridledger.ledger.record import Record, optional


# ------------------------------------------------------------------------------ derived ids
def pool_address(epoch: int) -> bytes:
    """The epoch pool's account: not a key anyone holds, only this module moves its money."""
    return tagged_hash("gl/privacy/pool", epoch.to_bytes(8, "big"))


def pseudo_cp(addr: bytes) -> str:
    """The pseudonym's stand-in connection point (its readings and bills are keyed by it):
    ``ps:`` + its address in base64url (``registry.types.pseudonym_cp``)."""
    return pseudonym_cp(addr)


def hold_address(account: bytes, seq: int) -> bytes:
    """The account holding one roaming booking's money: no key controls it."""
    return tagged_hash("gl/privacy/roaming-hold", account, seq.to_bytes(8, "big"))


def key_digest(alg: str, pk: bytes) -> bytes:
    """What a join records of the member's key (the key its escrows may be signed with)."""
    return tagged_hash("gl/privacy/member-key", alg.encode(), pk)


def dispute_id_for_trade(slot: int, trade: int, claim: str) -> bytes:
    """Id of a decided trade dispute (disputes module), as trustees cite it."""
    return tagged_hash("gl/privacy/dispute/trade", slot.to_bytes(8, "big"),
                       trade.to_bytes(4, "big"), claim.encode())


def dispute_id_for_pool(epoch: int) -> bytes:
    """Id of an epoch pool's over-claim dispute."""
    return tagged_hash("gl/privacy/dispute/pool", epoch.to_bytes(8, "big"))


def dispute_id_for_finding(finding: int) -> bytes:
    """Id of a surveillance finding's dispute (its pseudonyms may be opened)."""
    return tagged_hash("gl/privacy/dispute/market", finding.to_bytes(8, "big"))


def dispute_id_for_flex(request: bytes, offer: bytes) -> bytes:
    """Id of a flexibility offer's non-delivery dispute (its pseudonym may be opened)."""
    return tagged_hash("gl/privacy/dispute/flex", request, offer)


def dispute_id_for_feeder(feeder: str, slot: int) -> bytes:
    """Id of a feeder slot whose pseudonymous readings disagree with the secure aggregate."""
    return tagged_hash("gl/privacy/dispute/feeder", feeder.encode(), slot.to_bytes(8, "big"))


# ---------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class EpochRecord(Record):
    """``pv/ep/<epoch>``: the pool of one epoch, from joins to pay-out."""

    tickets: int = 0
    certified: int = 0
    attested: int = 0
    registered: int = 0
    members: int = 0
    status: str = "open"          # open | claims | disputed | paid
    pool_in_micro: int = 0        # deposits + money carried in
    claims_micro: int = 0
    claims_deadline: int | None = optional()
    swept_micro: int | None = optional()


@dataclass(frozen=True)
class JoinRecord(Record):
    """``pv/join/<epoch><member>``: tickets bought and the key the member held then."""

    tickets: int
    key_digest: bytes


@dataclass(frozen=True)
class BatchRecord(Record):
    """``pv/batch/<root>``: a certified batch of pseudonyms."""

    epoch: int
    count: int
    registered: int
    trustees: tuple[int, ...]


@dataclass(frozen=True)
class AttestRecord(Record):
    """``pv/att/<root>``: a DSO-attested root of meter reading keys."""

    epoch: int
    count: int
    registered: int


@dataclass(frozen=True)
class PseudonymRecord(Record):
    """``pv/ps/<addr>``: a registered pseudonym, the key it was certified with and the
    reading key its meter holds for it."""

    epoch: int
    first_slot: int
    last_slot: int
    feeder: str
    escrow_digest: bytes
    root: bytes
    alg: str
    pk: bytes
    reading: bytes
    final_micro: int | None = optional()
    reading_firmware: bytes | None = optional()
    """The image hash bound into the meter's attested leaf at registration (issue 19), or
    the salted commitment to it when ``reading_sealed``."""
    reading_sealed: bool | None = optional()

    @property
    def certified_key(self) -> PublicKey:
        """The key the batch certified (a later key rotation does not change the escrow)."""
        return PublicKey(self.alg, self.pk)


@dataclass(frozen=True)
class DisputeRecord(Record):
    """``pv/disp/<id>``: a recorded dispute under which identities may be opened."""

    kind: str                     # trade | pool | feeder | market | flex
    targets: tuple[bytes, ...]
    reason: str | None = optional()
    epoch: int | None = optional()
    slot: int | None = optional()
    trade: int | None = optional()
    claim: str | None = optional()
    feeder: str | None = optional()
    finding: int | None = optional()  # market: the surveillance finding's id
    request: bytes | None = optional()  # flex: the request, the offer and what settled
    offer: bytes | None = optional()
    shortfall_wh: int | None = optional()
    penalty_micro: int | None = optional()
    faults: int | None = optional()


@dataclass(frozen=True)
class EscrowRecord(Record):
    """``pv/esc/<pseudonym>``: a disputed pseudonym's escrow, as certified."""

    record: bytes
    shares: tuple[bytes, ...]
    commitments: tuple[bytes, ...]


@dataclass(frozen=True)
class OpeningState(Record):
    """``pv/open/<pseudonym>``: who a pseudonym belongs to, for which dispute, and how it
    was established (``escrow``: k trustees; ``meter``: its meter's signed binding)."""

    identity: bytes
    dispute: bytes
    via: str
    trustees: tuple[str, ...]


@dataclass(frozen=True)
class PartialRecord(Record):
    """``pv/part/<slot><feeder>\\0<position>``: an aggregator's signed partial sum."""

    epoch: int
    inclusion: bytes
    meters: int
    value: int
    sig: bytes


@dataclass(frozen=True)
class AggregateRecord(Record):
    """``pv/agg/<slot><feeder>``: a decoded (and later checked) secure-aggregation round."""

    slot: int
    feeder: str
    inclusion: bytes
    meters: int
    status: str                   # decoded | failed | ok | mismatch
    total_wh: int | None = optional()
    used: tuple[str, ...] | None = optional()
    left_out: tuple[tuple[str, str], ...] | None = optional()
    reported_wh: int | None = optional()
    checked: bool | None = optional()
    clipped_wh: int | None = optional()
    """What the meters' clip bound took off the feeder's readings (``reported_wh`` is the
    clamped sum the total is compared with); absent when the committee sets no bound."""


@dataclass(frozen=True)
class RoamingAuth(Record):
    """``pv/rauth/<account><seq>``: a booked roaming authorisation and what became of it."""

    max_energy_wh: int
    price_cap_micro_per_kwh: int
    held_micro: int
    expires_at: int
    status: str                   # held | charged | released
    energy_wh: int | None = optional()
    price_micro_per_kwh: int | None = optional()
    amount_micro: int | None = optional()
    foreign_community: str | None = optional()
    foreign_dso: str | None = optional()
