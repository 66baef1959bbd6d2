"""Privacy mode (issue 19; docs/threat-model.md rows 3 and 5): households trade, meter, settle and
dispute under per-slot pseudonyms; epoch pools pay the owners.

What each household's software, its meter, the DSO, the trustees and a relay do, over the
ledger's privacy module (``ledger/modules/privacy``, ``privacy.ledger_io``):

* **Issuance**, once per epoch (a day): the member joins the epoch pool with one ticket per
  pseudonym (``privacy/join``) and makes one pseudonym per slot (``make_pseudonyms``: one
  owner signature over the batch); its meter makes a reading key per pseudonym and signs the
  bindings with its device key; the DSO checks them against its meter registry and the
  tickets and posts ``privacy/attest``; the trustees check every request and certify the
  batch root (``privacy/certify``); relays register the leaves (``privacy/register``, sorted
  by leaf hash, so nothing groups one household's pseudonyms). The first epoch is filled in
  three blocks before the run's first slot; each later one at ``ISSUE_SLOT_OF_DAY`` of the
  day before.
* **Trading and metering**: ``PseudonymIdentities`` (the ``ctx.identities`` seam) hands the
  trading feature the slot's pseudonym key, the metering feature the slot's reading key and
  the DSO the slot's stand-in cp, so every order, reading, envelope, flag, trade and bill
  names the pseudonym only.
* **The DSO's meter data**: each meter seals its connection point's measurement of the slot
  (and the firmware image it attests) to the DSO's ML-KEM-768 key (``crypto.kem.seal``, AAD
  = slot and cp); the DSO opens them and runs state estimation and false-data detection on
  what it opened. Nothing of it goes to the ledger — except, one slot ahead of a pseudonym's
  orders, the DSO's ``privacy/meter_image`` for it when its meter's image no longer matches
  the one bound (flashed mid-epoch: the commitment the meter now attests), or when the bound
  image got advised (an opening: image and salt).
* **Sealed images** (``SEAL_IMAGES``): the meter binds a salted commitment to its firmware
  image into each pseudonym's leaf and attests it in each reading, so the ledger sees no
  image (an image would cut the pseudonym's anonymity set to its meter cohort); the salt is
  in the meter's statement to the DSO, off the ledger.
* **Accountability**: a household whose pseudonym was sold energy it never got claims
  non-delivery under that pseudonym (``disputes/claim``); when a trade dispute is decided
  against a pseudonym, the wronged party asks for an opening (``privacy/request_opening``),
  a trustee posts the escrow and k trustees release their committed shares: the ledger
  opens exactly that identity, logs it, and carries the pseudonym's sanction to its owner.
* **Pay-out**: after an epoch's last dispute window its pseudonyms' balances return to the
  pool; each member claims its deposit less the allowances drawn plus its pseudonyms'
  finals. At the end of the run the ledger is driven on (empty blocks, later block times)
  until every epoch has paid its owners.

With ``--privacy off`` (``Scenario.privacy`` False) the feature does nothing and members act
under their own identities (``sim.identity.OwnKeys``).
"""

from __future__ import annotations

import base64
from collections.abc import Container, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from gridledger.crypto import kem
from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.grid import SlotMeasurements
from gridledger.ledger import codec
from gridledger.ledger.modules.firmware.types import image_commitment
from gridledger.ledger.modules.privacy.records import dispute_id_for_trade, pseudo_cp
from gridledger.ledger.modules.registry.types import PSEUDO_CP
from gridledger.ledger.tx import TxSigner
from gridledger.node.embedded import FinalizedBlock
from gridledger.privacy.errors import EndorsementRefused
from gridledger.privacy.ledger_io import (
    OwnPseudonym,
    attest_body,
    certify_checked,
    check_part,
    claim_amount,
    escrow_body,
    iter_register_bodies,
    make_pseudonyms,
    release_body,
)
from gridledger.privacy.meter_keys import MeterStatement, attest_readings, issue_reading_keys
from gridledger.privacy.pseudonyms import IdentityEscrow, TrusteeKeys, TrusteeSet
from gridledger.privacy.pseudonyms.batch import BatchEntry
from gridledger.privacy.rng import DeterministicRandom
from gridledger.sim.clock import SLOT_S, T_ORDERS, Step
from gridledger.sim.community import (
    EPOCH_SLOTS,
    FEEDER,
    POOL_ALLOWANCE_MICRO,
    POOL_MAX_TICKETS,
    Member,
    PrivacyKeys,
)
from gridledger.sim.context import MEMBER_QUOTA, PendingTxs, SimContext
from gridledger.sim.feature import Feature
from gridledger.sim.privacy_view import count_clear, count_clear_started
from gridledger.sim.records import BlobMap, ByteMap, Delivered, SlotLog

ISSUE_SLOT_OF_DAY = 72
"""Slot of the day (18:00) at which the next epoch's pseudonyms are issued: join in block A,
attestation and certificate in block B, registrations in block C."""
RELAYS = 3
"""Relays that register a day's pseudonyms (the trustees' nodes relay them)."""
REGISTER_SIGN_TXS = 96
"""Registrations sent to the signing pool at a time while the rest of their bodies are made
(the default day's 960 in ten batches)."""
CTX_DSO_READING = b"gl/sim/dso-reading/v1"
SEAL_IMAGES = True
"""Each pseudonym's leaf and readings carry a salted commitment to its meter's firmware
image, not the image (issue 19 item 4: an image cuts a pseudonym's anonymity set to its
cohort). False: images in clear (the defence removed)."""


@dataclass(frozen=True)
class MemberIssue:
    """What one household's software and meter need to make an epoch's pseudonyms."""

    key: SigningKey           # the member's identity key (signs the escrows)
    meter: SigningKey         # its meter's device key (signs the reading-key bindings)
    cp: str
    trustees: TrusteeSet
    epoch: int
    ranges: tuple[tuple[int, int], ...]
    seed: int                 # the scenario's
    image: bytes | None       # the firmware image its meter runs
    check_with: tuple[TrusteeKeys, ...] = ()
    """Trustees who check the household's requests as soon as they are made
    (``member_issue_checked``)."""


Issued = tuple[list[OwnPseudonym], dict[bytes, SigningKey], MeterStatement]


def member_issue_checked(job: MemberIssue) -> tuple[Issued, list[list[bytes]] | None]:
    """``member_issue``, then each of ``job.check_with``'s checks of its requests
    (``ledger_io.check_part``: the trustees' part of the batch certificate, entry by entry;
    None if one refuses, to be named by the whole batch's check). The signing pool runs one
    per household: the trustees' checks follow each issuance on the same worker instead of
    three whole-batch jobs after all of them (issue 19: two processes, three jobs — one
    core idled through the third; ~1-2 s of a privacy day's set-up)."""
    issued = member_issue(job)
    try:
        leaves = check_part(job.check_with, job.trustees, [p.entry for p in issued[0]],
                            job.epoch, EPOCH_SLOTS)
    except EndorsementRefused:
        return issued, None
    return issued, leaves


def member_issue(job: MemberIssue) -> Issued:
    """One household's issuance (pure, picklable: the signing pool runs it): its pseudonyms
    (``make_pseudonyms``) and its meter's reading keys and signed statement."""
    # seeded in the simulator (same --seed, same run), OS randomness in a meter
    rng = DeterministicRandom(tagged_hash("gl/sim-pseudonyms", str(job.seed).encode(),
                                          str(job.epoch).encode(), job.cp.encode()))
    own = make_pseudonyms(job.key, job.trustees, job.epoch, job.ranges, FEEDER,
                          random_bytes=rng)
    # the meter binds the image it runs into every binding: the pseudonym's firmware of
    # record from registration on (orders precede its first reading); sealed: with a fresh
    # salt per pseudonym, which only the meter and (in its statement, off the ledger) the
    # DSO hold
    rk, st = issue_reading_keys(job.meter, job.trustees.community, job.cp, job.epoch,
                                [p.address for p in own], firmware=job.image,
                                seal=SEAL_IMAGES, random_bytes=rng)
    return own, rk, st


def _registered(entry: BatchEntry) -> BatchEntry:
    """``entry`` as the batch's root and the registrations read it: its slots, feeder,
    pseudonym key and escrow digest. The escrow itself goes to the trustees' store and the
    proof of possession was checked (``check_part``): neither is kept in the batch
    (issue 17: ~14 KB of an entry's ~16 KB)."""
    e = entry.request.escrow
    digest = e.digest()
    bare = replace(e, record_ciphertext=b"", sealed_shares=(), share_commitments=())
    bare.__dict__["_digest"] = digest  # the digest of the escrow the trustees keep
    return replace(entry, request=replace(entry.request, escrow=bare, pop_signature=b""))


@dataclass(frozen=True)
class Held:
    """One pseudonym as its owner and its meter use it (made from its ``Kept`` record when
    asked for: ``PseudonymIdentities.of``, ``live``)."""

    member: Member
    own: OwnPseudonym
    reading_key: SigningKey
    first_slot: int
    last_slot: int
    image: bytes | None = None
    """The firmware image its meter bound into the pseudonym's attested leaf."""
    salt: bytes | None = None
    """The secret salt of the leaf's sealed image (``SEAL_IMAGES``): the leaf and the
    readings carry ``image_commitment(image, salt)``; the meter and the DSO hold it."""

    @property
    def address(self) -> bytes:
        return self.own.address

    @property
    def cp(self) -> str:
        return pseudo_cp(self.own.address)


@dataclass(frozen=True, slots=True)
class Kept:
    """One pseudonym as the simulator keeps it between its uses: its two keys' seeds and
    addresses, its slots and its meter's image and salt — ~0.5 KB. Its escrow is the
    trustees' (``PrivacyMode.escrows``, on the run's side file) and its request's proof of
    possession was for the trustees' check only, so a ``Held`` made from this has neither
    (issue 17: a ``Held`` as issued, with both and its keys' public keys, is ~16 KB; an
    epoch at 1,000 members has 96,000)."""

    member: int
    address: bytes
    alg: str
    seed: bytes
    reading_address: bytes
    reading_alg: str
    reading_seed: bytes
    first_slot: int
    last_slot: int
    image: bytes | None
    salt: bytes | None

    @staticmethod
    def of(h: Held) -> Kept:
        k, r = h.own.key, h.reading_key
        return Kept(h.member.index, k.address, k.alg, k.seed, r.address, r.alg, r.seed,
                    h.first_slot, h.last_slot, h.image, h.salt)

    def held(self, m: Member) -> Held:
        # no escrow: only an opening reads it, from the trustees' store
        own = OwnPseudonym(SigningKey.known(self.alg, self.seed, self.address), None)  # type: ignore[arg-type]
        return Held(m, own, SigningKey.known(self.reading_alg, self.reading_seed,
                                             self.reading_address),
                    self.first_slot, self.last_slot, self.image, self.salt)


class PseudonymIdentities:
    """``sim.identity.Identities`` under privacy mode: the slot's pseudonym, its reading key
    and stand-in cp; a member without a pseudonym for a slot (no ticket) acts under its own
    identity, as the ledger's rules make it (``ticket-cap``).

    Each pseudonym is kept as a ``Kept`` record (seeds and addresses) and made into a
    ``Held`` with its keys when asked for. Pseudonyms of epochs whose pool has paid out are
    retired (``retire``): a run makes one a member and slot, so what the live ones take
    must not grow with the run (issue 17). A retired pseudonym is still found (``of``,
    ``owner``, ``owner_of_cp``): who owns it on the side file, its record in a
    ``SlotLog``."""

    def __init__(self, members: Sequence[Member]) -> None:
        self._members = {m.address: m for m in members}
        self._by_index = {m.index: m for m in members}
        self._by_cp = {m.cp: m for m in members}
        self._slot: dict[tuple[int, int], Kept] = {}      # (member index, slot) -> pseudonym
        self.held: dict[bytes, Kept] = {}                 # pseudonym address -> pseudonym
        """The pseudonyms not retired (their epoch not paid out, or in an opening)."""
        self._owners = ByteMap()                          # every pseudonym -> member index
        self._retired: SlotLog[dict[int, Kept]] = SlotLog()  # slot -> member index -> ...
        self.count = 0
        """Pseudonyms taken into use in the run (retired ones included)."""

    def add(self, h: Held | Kept) -> None:
        k = h if isinstance(h, Kept) else Kept.of(h)
        self.held[k.address] = k
        self._owners[k.address] = k.member
        self.count += 1
        for s in range(k.first_slot, k.last_slot + 1):
            self._slot[(k.member, s)] = k

    def live(self, addr: bytes) -> Held | None:
        """The live (not retired) pseudonym at ``addr``, with its keys."""
        k = self.held.get(addr)
        return None if k is None else k.held(self._by_index[k.member])

    def retire(self, held: Iterable[Held | Kept], keep: Container[bytes] = ()) -> list[bytes]:
        """Forget ``held``'s pseudonyms (but those in ``keep``) but for what finds them
        again; returns the addresses retired."""
        out = []
        for h in held:
            addr = h.address
            k = self.held.get(addr)
            if addr in keep or k is None:
                continue
            del self.held[addr]
            for s in range(k.first_slot, k.last_slot + 1):
                if self._slot.get((k.member, s)) is k:
                    del self._slot[(k.member, s)]
                    self._retired.setdefault(s, {})[k.member] = k
            out.append(addr)
        return out

    def _kept(self, m: Member, slot: int) -> Kept | None:
        """``m``'s pseudonym for ``slot``, live or retired, as kept."""
        k = self._slot.get((m.index, slot))
        if k is None and slot in self._retired:
            k = self._retired[slot].get(m.index)
        return k

    def of(self, m: Member, slot: int) -> Held | None:
        k = self._kept(m, slot)
        return None if k is None else k.held(m)

    def trading_key(self, m: Member, slot: int) -> SigningKey:
        h = self.of(m, slot)
        return m.key if h is None else h.own.key

    def meter_key(self, m: Member, slot: int) -> SigningKey:
        h = self.of(m, slot)
        return m.meter if h is None else h.reading_key

    def owner(self, addr: bytes) -> Member | None:
        k = self.held.get(addr)
        if k is not None:
            return self._by_index[k.member]
        m = self._members.get(addr)
        if m is not None:
            return m
        i = self._owners.get(addr)
        return None if i is None else self._by_index[i]

    def member(self, addr: bytes) -> Member:
        """``owner`` of a pseudonym that has one (``KeyError`` if none)."""
        m = self.owner(addr)
        if m is None:
            raise KeyError(addr.hex())
        return m

    def ledger_cp(self, m: Member, slot: int) -> str:
        k = self._kept(m, slot)   # its address names its cp: no keys made
        return m.cp if k is None else pseudo_cp(k.address)

    def owner_of_cp(self, cp: str) -> Member | None:
        m = self._by_cp.get(cp)
        if m is not None or not cp.startswith(PSEUDO_CP):
            return m
        try:  # a pseudonym's stand-in cp names its address (``pseudo_cp``)
            addr = base64.urlsafe_b64decode(cp[len(PSEUDO_CP):] + "==")
        except ValueError:
            return None
        return self.owner(addr) if pseudo_cp(addr) == cp else None

    def image_opening(self, m: Member, slot: int) -> tuple[bytes, bytes] | None:
        k = self._kept(m, slot)
        if k is None or k.image is None or k.salt is None:
            return None
        return k.image, k.salt


@dataclass
class EpochIssue:
    """One epoch's issuance as the parties hold it (the trustees keep every escrow)."""

    epoch: int
    tickets: dict[int, int]                       # member index -> tickets bought
    left_out: dict[int, str] = field(default_factory=dict)
    """Member index -> its reputation tier, for members the ticket cap kept out."""
    held: list[Kept] = field(default_factory=list)
    """Its pseudonyms, until the pool has paid out (then retired: ``PseudonymIdentities``)."""
    pseudonyms: int = 0
    """How many pseudonyms the epoch issued (``held``'s length before it was retired)."""
    claimed: bool = False
    paid: bool = False
    bill_micro: dict[int, int] = field(default_factory=dict)
    """Member index -> its market result the DSO puts on its energy bill (off the ledger)."""
    settled: dict[str, int] = field(default_factory=dict)
    """The ledger's ``pool_settled``: from_grid_micro / to_grid_micro."""


@dataclass
class Opening:
    """A dispute against a pseudonym on its way to an opening: a trade dispute decided
    against it (the wronged party requests the recorded dispute), or a surveillance finding
    or a flexibility non-delivery naming it (the ledger records that dispute itself, kind
    ``market`` or ``flex``)."""

    pseudonym: bytes
    dispute: bytes
    kind: str = "trade"
    stage: str = "request"        # request -> escrow -> posting -> release -> released -> done


LEDGER_RECORDED = frozenset({"market", "flex"})
"""Dispute kinds the ledger records by itself (a surveillance finding, a flexibility
non-delivery): the trustees open them with nobody asking."""


class PrivacyMode(Feature):
    name: ClassVar[str] = "privacy"
    threat_rows: ClassVar[tuple[str, ...]] = ("3", "5")
    rotation_slots: ClassVar[int] = 1
    """Slots per pseudonym: 1 = a new pseudonym every slot, ``EPOCH_SLOTS`` = one a day."""

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.on = ctx.sc.privacy
        self.epochs: dict[int, EpochIssue] = {}
        self.openings: dict[bytes, Opening] = {}       # pseudonym -> its opening
        self.claimed_nd: set[tuple[int, int]] = set()  # (slot, trade) non-delivery claimed
        self.sealed_readings = 0
        self._attest: tuple[dict[str, Any], list[bytes]] | None = None
        self._registers: list[bytes] = []
        self._pending: int | None = None    # epoch registered in this step's block C
        self.dso_images: dict[str, bytes] = {}
        self._counted: Future[dict[str, Any]] | None = None  # count_clear, after the run
        """cp -> the firmware image its meter's latest sealed report attested (the DSO's)."""
        if not self.on:
            return
        keys = ctx.community.privacy_keys
        if keys is None:
            raise ValueError("privacy mode needs the community's privacy keys")
        self.keys: PrivacyKeys = keys
        self.ids = PseudonymIdentities(ctx.members)
        self.escrows: BlobMap[IdentityEscrow] = BlobMap()
        """The trustees' escrow of every live pseudonym (pseudonym address -> escrow), on
        the run's side file: read for an opening only, dropped when the pseudonym retires."""
        ctx.use_identities(self.ids)
        first = ctx.first
        t0 = SLOT_S * first + T_ORDERS - 300  # before the first slot's orders
        epoch = first // EPOCH_SLOTS
        joins, attest, certify, registers = self._issue(epoch)
        for k, raws in enumerate((joins, self._attest_txs(attest, certify), registers)):
            ctx.submit(raws, t0 + 100 * k)
            for fb in ctx.tick(t0 + 100 * k):
                self._absorb(fb)
        self._take_pseudonyms(epoch)
        # the DSO reviews the registered sealed records in a later block, before the first
        # orders (a sealed record trades only under its vouch: firmware/vouch)
        vouch = self._vouch(first)
        if vouch:
            ctx.submit(vouch, t0 + 250)
            for fb in ctx.tick(t0 + 250):
                self._absorb(fb)

    # -- issuance ----------------------------------------------------------------------------
    def _slots_of(self, epoch: int) -> list[int]:
        """The run's trading slots inside ``epoch``."""
        run = self.ctx.trading_slots()
        return [s for s in range(epoch * EPOCH_SLOTS, (epoch + 1) * EPOCH_SLOTS) if s in run]

    def _ranges(self, slots: list[int]) -> list[tuple[int, int]]:
        r = self.rotation_slots
        return [(slots[i], slots[min(i + r, len(slots)) - 1]) for i in range(0, len(slots), r)]

    def _issue(self, epoch: int
               ) -> tuple[list[bytes], dict[str, Any], list[bytes], list[bytes]]:
        """The epoch's three rounds of transactions: joins; the DSO's attestation (its body:
        signed in block B, ``_attest_txs``) and the batch certificate; the relays'
        registrations. Members whose reputation allows no tickets stay out (they act under
        their own identity)."""
        ctx, keys = self.ctx, self.keys
        ranges = self._ranges(self._slots_of(epoch))
        cap = {"good": POOL_MAX_TICKETS, "watch": POOL_MAX_TICKETS // 2}  # the ledger's rule
        tickets = {m.index: len(ranges) for m in ctx.members
                   if len(ranges) <= cap.get(ctx.ledger.tier(m.address), 0)}
        issue = EpochIssue(epoch, tickets, {m.index: ctx.ledger.tier(m.address)
                                            for m in ctx.members if m.index not in tickets})
        self.epochs[epoch] = issue
        joins = [ctx.tx(m.key, "privacy/join", {"epoch": epoch, "tickets": tickets[m.index]})
                 for m in ctx.members if m.index in tickets]
        with ctx.timed("privacy_issue_s"):
            statements = []
            reading: dict[bytes, PublicKey] = {}   # pseudonym -> its meter's reading key
            attested: dict[bytes, bytes] = {}      # pseudonym -> what its leaf binds
            sealed: set[bytes] = set()
            parts: list[tuple[list[BatchEntry], list[list[bytes]]]] = []
            fleet = ctx.community.fleet
            joining = [m for m in ctx.members if m.index in tickets]
            # each household's software and meter do their part on their own device: here on
            # the signing pool's processes, side by side (the first epoch's is the run's setup)
            # and the trustees check each household's requests as they come (their checks,
            # entry by entry, on the pool too). Each household's result is taken as it comes
            # (issue 17: all of them at once were ~16 KB a pseudonym, 1.5 GB at 1,000
            # members): the households keep their seeds (``Kept``), the trustees the escrows
            # (on the side file), the batch what its root and the registrations need.
            checked = ctx.sig_pool.imap(member_issue_checked, [MemberIssue(
                m.key, m.meter, m.cp, keys.trustee_set, epoch, tuple(ranges), ctx.sc.seed,
                fleet.meters[m.cp].firmware if fleet is not None else None,
                tuple(keys.trustee_keys)) for m in joining])
            for m, ((mine, rk, st), leaves) in zip(joining, checked, strict=True):
                if leaves is None:  # a trustee refused: its check here names the entry
                    check_part(keys.trustee_keys, keys.trustee_set, [p.entry for p in mine],
                               epoch, EPOCH_SLOTS)
                    raise EndorsementRefused(f"a trustee refused {m.name}'s requests")
                image = fleet.meters[m.cp].firmware if fleet is not None else None
                statements.append(st)
                salts: dict[bytes, bytes] = {}
                for j, (addr, _k) in enumerate(st.bindings):
                    if (fw := st.attested(j)) is not None:
                        attested[addr] = fw
                    if st.salts is not None:
                        salts[addr] = st.salts[j]
                sealed.update(salts)
                for p, (first, last) in zip(mine, ranges, strict=True):
                    r = rk[p.address]
                    reading[p.address] = r.public_key
                    issue.held.append(Kept(m.index, p.address, p.key.alg, p.key.seed, r.address,
                                           r.alg, r.seed, first, last,
                                           image, salts.get(p.address)))
                self.escrows.put((p.address, p.escrow) for p in mine)
                parts.append(([_registered(p.entry) for p in mine], leaves))
            by_index = {m.index: m for m in ctx.members}
            att = attest_readings(keys.trustee_set.community, epoch, statements,
                                  {by_index[i].cp: by_index[i].meter.public_key
                                   for i in tickets},
                                  {by_index[i].cp: n for i, n in tickets.items()})
            del statements
            batch = certify_checked(keys.trustee_keys, keys.trustee_set, parts, epoch)
            del parts
            # the DSO's attestation is signed when it is submitted (block B): the DSO signs
            # its block-A transactions in between, and a nonce signed ahead made the next one
            # a nonce gap (the slot's envelope refused) and, after the resync, its first
            # opening a replayed nonce (a privacy week: 6 envelopes and 6 openings lost, one
            # a day). The trustee's certificate keeps its place before the registrations it
            # relays.
            attest = attest_body(att)
            certify = [ctx.tx(keys.trustee_keys[0].signing_key, "privacy/certify",
                              batch.certify_body)]
            relays = [t.signing_key for t in keys.trustee_keys[:RELAYS]]
            # the relays' registrations, signed on the pool a batch at a time as their bodies
            # are made: the same nonces and order as one batch, the pool signing the first
            # ones while this process makes the rest (issue 17: ~0.4 s of bodies, then
            # ~0.6 s of signatures, one after the other, in the default day's setup)
            signing: list[PendingTxs] = []
            items: list[tuple[TxSigner, str, dict[str, Any]]] = []
            n = 0
            for body in iter_register_bodies(keys.trustee_set, batch, att, reading, attested,
                                              sealed):
                items.append((relays[n % len(relays)], "privacy/register", body))
                n += 1
                if len(items) == REGISTER_SIGN_TXS:
                    signing.append(ctx.txs_ahead(items))
                    items = []
            if items:
                signing.append(ctx.txs_ahead(items))
            del att, batch, reading, attested, sealed   # in the bodies now
        issue.pseudonyms = len(issue.held)
        for r in relays:  # the relays' quota covers a day's registrations in one block
            ctx.grant_quota(r.address, 500 * (-(-n // len(relays) // MEMBER_QUOTA) + 1))
        registers = [raw for batch_txs in signing for raw in batch_txs]
        return joins, attest, certify, registers

    def _attest_txs(self, body: dict[str, Any], certify: list[bytes]) -> list[bytes]:
        """Block B of an issuance: the DSO's attestation, signed now, and the certificate."""
        return [self.ctx.tx(self.ctx.community.dso, "privacy/attest", body), *certify]

    def _take_pseudonyms(self, epoch: int) -> None:
        """Use the epoch's pseudonyms the ledger registered (all of them, unless a relay's
        transaction failed: a member then acts under its own identity in those slots)."""
        for k in self.epochs[epoch].held:
            if self.ctx.ledger.pseudonym(k.address) is not None:
                self.ids.add(k)

    def _next_epoch(self, step: Step) -> int | None:
        """The epoch to issue at this step, if any (the next one, while the run reaches it)."""
        if not (self.on and step.trading and step.slot % EPOCH_SLOTS == ISSUE_SLOT_OF_DAY):
            return None
        nxt = step.slot // EPOCH_SLOTS + 1
        return nxt if self._slots_of(nxt) and nxt not in self.epochs else None

    def txs_a(self, step: Step) -> list[bytes]:
        nxt = self._next_epoch(step)
        if nxt is None:
            return []
        joins, attest, certify, self._registers = self._issue(nxt)
        self._attest = (attest, certify)
        self._pending = nxt
        return joins

    def txs_b(self, step: Step) -> list[bytes]:
        if self._attest is None:
            return []
        (body, certify), self._attest = self._attest, None
        return self._attest_txs(body, certify)

    def txs_c(self, step: Step) -> list[bytes]:
        out, self._registers = self._registers, []
        # openings for this slot's pseudonyms too: their reading of the slot is still to come
        # (a sealed record an advisory made stale would take it unquarantined)
        images = self._meter_images(step.slot, flashes=False) + self._meter_images(step.slot + 1)
        return out + images + self._vouch(step.slot + 1)

    def _vouch(self, through: int) -> list[bytes]:
        """The DSO's ``firmware/vouch`` through ``through``, signed after its openings and
        reports for those slots (lower nonces: executed first): under sealed images the
        ledger lets a pseudonym trade only once a vouch made after its registration and
        after the latest advisory covers its slot."""
        ctx = self.ctx
        if not (self.on and SEAL_IMAGES and ctx.community.fleet is not None
                and through in ctx.trading_slots()):
            return []
        return [ctx.tx(ctx.community.dso, "firmware/vouch", {"through_slot": through})]

    def _meter_images(self, slot: int, *, flashes: bool = True) -> list[bytes]:
        """The DSO's reports on the firmware of each member's pseudonym of ``slot``, one slot
        ahead of its orders (``privacy/meter_image``):

        * **an opening** of a sealed record whose bound image has a problem now (an
          advisory came into force, or it was not approved when attested) while the meter
          still runs it: image and salt, so the ledger quarantines exactly this pseudonym
          (linkable then only inside the advised cohort, which is quarantined anyway);
        * **a flash**: the meter's sealed report showed another image than the one bound
          (flashed mid-epoch; an honestly patched meter patched that record itself): what
          the meter now attests for the pseudonym — the commitment under a sealed record,
          no image on the ledger — a firmware mismatch, quarantined before the slot's
          orders, as a household's own cp would be (not with ``flashes`` False).

        Called at block C of slot s for the pseudonyms of s + 1 and, openings only, of s
        (their reading of s comes in the next block C). What is sent is decided from the
        ledger's records, not from what the DSO sent before: an opening lost on the way is
        sent again one block C later, before the vouch that covers its pseudonym."""
        ctx = self.ctx
        if not self.on or slot not in ctx.trading_slots():
            return []
        out = []
        problems: dict[bytes, str | None] = {}
        for m in ctx.members:
            image, h = self.dso_images.get(m.cp), self.ids.of(m, slot)
            if h is None or h.image is None:
                continue
            if image in (None, h.image):
                if h.salt is None:
                    continue    # in clear: the registry sees the image itself
                if h.image not in problems:
                    problems[h.image] = ctx.ledger.image_problem(h.image)
                if problems[h.image] is None or not ctx.ledger.firmware_of(h.cp).get("sealed"):
                    continue    # fine, or opened already (by a patch)
                out.append(ctx.tx(ctx.community.dso, "privacy/meter_image",
                                  {"pseudonym": h.address, "firmware": h.image, "salt": h.salt}))
                continue
            if not flashes:
                continue
            attests = image if h.salt is None else image_commitment(image, h.salt)
            rec = ctx.ledger.firmware_of(h.cp)
            if rec.get("firmware") in (None, image, attests) or rec.get("mismatch") == attests:
                continue
            out.append(ctx.tx(ctx.community.dso, "privacy/meter_image",
                              {"pseudonym": h.address, "firmware": attests}))
        return out

    def after_readings(self, step: Step) -> None:
        if self._pending is not None:       # registered in this step's block C
            self._take_pseudonyms(self._pending)
            self._pending = None

    # -- the DSO's sealed meter data ---------------------------------------------------------
    def after_delivery(self, step: Step, delivered: Delivered) -> None:
        """Every meter seals its cp's measurement to the DSO; the DSO estimates the grid's
        state from what it opens (ML-KEM-768 + HKDF + AES-256-GCM, ``crypto.kem``)."""
        if not self.on:
            return
        ctx, slot, meas = self.ctx, step.slot, delivered.measurements
        dso_kem = self.keys.dso_kem
        with ctx.timed("privacy_s"):
            sealed = []
            fleet = ctx.community.fleet
            for m in ctx.members:
                image = fleet.meters[m.cp].firmware if fleet is not None else b""
                msg = codec.encode([slot, m.cp, int(meas.reported_wh_by_cp[m.cp]),
                                    int(meas.reported_varh_by_cp.get(m.cp, 0)),
                                    str(meas.vm_pu_by_cp.get(m.cp, "")), image])
                aad = codec.encode([slot, m.cp])
                sealed.append((m.cp, aad, kem.seal(dso_kem.public_key, msg, CTX_DSO_READING + aad)))
            opened = {}
            for cp, aad, ct in sealed:
                s, c, wh, varh, vm, image = codec.decode(dso_kem.open(ct, CTX_DSO_READING + aad))
                if (s, c) != (slot, cp):
                    raise ValueError(f"sealed reading of {cp} opened to another slot or cp")
                opened[c] = (wh, varh, vm)
                if image:
                    self.dso_images[c] = bytes(image)
            self.sealed_readings += len(sealed)
        ctx.data.delivered[slot] = Delivered(slot, delivered.actual_wh_by_cp, _dso_view(meas, opened))

    # -- disputes, openings, claims ----------------------------------------------------------
    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        if self.on:
            self._absorb(fb, events)

    def _absorb(self, fb: FinalizedBlock, events: list[dict[str, Any]] | None = None) -> None:
        ctx, ids = self.ctx, self.ids
        if events is None:
            events = list(fb.result.block_events)
            for r in fb.result.receipts:
                events += list(r.events)
        txs: list[bytes] = []
        for e in events:
            t = e.get("type")
            if t == "non_delivery" and (m := ids.owner(e["buyer"])) is not None and m.honest \
                    and ids.owner(e["seller"]) is not m \
                    and (e["slot"], e["trade"]) not in self.claimed_nd \
                    and (buyer := ids.live(e["buyer"])) is not None:
                # the household's software claims under the pseudonym that bought
                self.claimed_nd.add((e["slot"], e["trade"]))
                txs.append(ctx.tx(buyer.own.key, "disputes/claim",
                                  {"slot": e["slot"], "trade": e["trade"],
                                   "claim": "non-delivery"}))
            elif t == "dispute_decided":
                txs += self._on_decision(e)
            elif t == "opening_requested":
                for p in e["pseudonyms"]:
                    o = self.openings.get(p)
                    if o is None and e["kind"] in LEDGER_RECORDED and p in ids.held:
                        self.openings[p] = Opening(p, e["dispute"], e["kind"], "escrow")
                    elif o is not None and o.stage == "request" and o.dispute == e["dispute"]:
                        o.stage = "escrow"
            elif t == "escrow_posted" and (o := self.openings.get(e["pseudonym"])) is not None \
                    and o.stage == "posting":
                o.stage = "release"   # the commitments are on the ledger: shares may follow
            elif t == "identity_opened" and e["pseudonym"] in self.openings:
                self.openings[e["pseudonym"]].stage = "done"
            elif t == "epoch_closed" and e["epoch"] in self.epochs:
                txs += self._claims(e["epoch"])
            elif t == "pool_paid" and e["epoch"] in self.epochs:
                self.epochs[e["epoch"]].paid = True
                self._retire(e["epoch"])
            elif t == "pool_settled" and e["epoch"] in self.epochs:
                self.epochs[e["epoch"]].settled = {k: int(e[k]) for k in
                                                   ("from_grid_micro", "to_grid_micro")}
        txs += self._trustees()
        if txs:
            ctx.defer(txs)

    def _retire(self, epoch: int) -> None:
        """The epoch's pool has paid out (after its last slot's dispute window): its
        pseudonyms are done but for an opening under way (issue 17: memory flat over days)."""
        issue = self.epochs[epoch]
        keep = set(self.openings)
        retired = self.ids.retire(issue.held, keep)
        # every escrow of the epoch but an opening's (those never registered too)
        self.escrows.discard(k.address for k in issue.held if k.address not in keep)
        gone = set(retired)
        self.ctx.forget_nonces([a for k in issue.held if k.address in gone
                                for a in (k.address, k.reading_address)])
        issue.held = [k for k in issue.held if k.address in keep]

    def _on_decision(self, e: dict[str, Any]) -> list[bytes]:
        """A decided trade dispute against a pseudonym: the wronged party asks to open it."""
        ids = self.ids
        if e["outcome"] == "upheld":
            at_fault, wronged = e["respondent"], e["claimant"]
        else:
            at_fault, wronged = e["claimant"], e["respondent"]
        claimant = ids.live(wronged)
        if at_fault not in ids.held or at_fault in self.openings or claimant is None:
            return []
        did = dispute_id_for_trade(e["slot"], e["trade"], e["claim"])
        self.openings[at_fault] = Opening(at_fault, did)
        return [self.ctx.tx(claimant.own.key, "privacy/request_opening",
                            {"slot": e["slot"], "trade": e["trade"], "claim": e["claim"]})]

    def _trustees(self) -> list[bytes]:
        """The trustees' part of each recorded dispute: one posts the escrow, then k release
        their committed shares (a stage per block: the commitments are in the escrow)."""
        out: list[bytes] = []
        keys = self.keys
        for p, o in sorted(self.openings.items()):
            did = o.dispute
            if o.stage not in ("escrow", "release"):
                continue
            escrow = self.escrows.get(p)    # the trustees keep every escrow
            if escrow is None:
                raise ValueError(f"no escrow kept for pseudonym {p.hex()} in an opening")
            if o.stage == "escrow":
                out.append(self.ctx.tx(keys.trustee_keys[0].signing_key, "privacy/escrow",
                                       escrow_body(did, escrow)))
                # the shares go once the escrow is on the ledger (``escrow_posted``): a
                # release in a block before it would be refused ``escrow-not-posted``
                o.stage = "posting"
            elif o.stage == "release":
                out += [self.ctx.tx(t.signing_key, "privacy/release",
                                    release_body(t, keys.trustee_set, did, [escrow]))
                        for t in keys.trustee_keys[:keys.trustee_set.threshold]]
                o.stage = "released"
        return out

    def _claims(self, epoch: int) -> list[bytes]:
        """Each member claims its deposit back (payout ``bill``); the DSO, which knows whose
        pseudonyms are whose from its attestations, works out each household's market
        result (its pseudonyms' finals less the allowances drawn) for its energy bill."""
        issue, ctx = self.epochs[epoch], self.ctx
        if issue.claimed:
            return []
        issue.claimed = True
        finals: dict[int, list[int]] = {i: [] for i in issue.tickets}
        for k in issue.held:
            rec = ctx.ledger.pseudonym(k.address)
            if rec is not None:
                finals[k.member].append(int(rec.get("final_micro") or 0))
        issue.bill_micro = {i: claim_amount(n, POOL_ALLOWANCE_MICRO, finals[i])
                            - n * POOL_ALLOWANCE_MICRO for i, n in issue.tickets.items()}
        by_index = {m.index: m for m in ctx.members}
        return [ctx.tx(by_index[i].key, "privacy/claim", {
            "epoch": epoch, "amount_micro": n * POOL_ALLOWANCE_MICRO})
            for i, n in sorted(issue.tickets.items())]

    def finish(self) -> None:
        """Drive the ledger on until every dispute is opened and every epoch has paid its
        owners: empty blocks at later times (the run's slots are over)."""
        if not self.on:
            return
        ctx = self.ctx
        p = ctx.params
        t = SLOT_S * (ctx.first + ctx.clock.slots + 4)
        for _ in range(8):                          # openings: a stage per block
            if all(o.stage == "done" for o in self.openings.values()):
                break
            t += 60
            ctx.submit(ctx.take_deferred(), t)
            ctx.tick(t)
        for epoch in sorted(self.epochs):
            last = (epoch + 1) * EPOCH_SLOTS - 1
            close = (last + 1) * SLOT_S + p.settle_window_s + max(1800, p.dispute_window_s)
            for _ in range(4):                      # close, claims, their deadline
                if self.epochs[epoch].paid:
                    break
                t = max(t + 60, close)
                ctx.submit(ctx.take_deferred(), t)
                ctx.tick(t)
                close = t + 1800

    # -- summary -----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        ctx = self.ctx
        out: dict[str, Any] = {"mode": "on" if self.on else "off"}
        if self.on:
            out.update({
                "rotation": "per-slot" if self.rotation_slots == 1 else
                f"every {self.rotation_slots} slots",
                "pseudonyms": self.ids.count,
                "epochs": {str(e): self._epoch_summary(i) for e, i in sorted(self.epochs.items())},
                "sealed_readings_to_dso": self.sealed_readings,
                "identities_opened": sum(1 for o in self.openings.values()
                                         if o.stage == "done"),
                "identities_opened_for_market_abuse": sum(
                    1 for o in self.openings.values() if o.stage == "done" and o.kind == "market"),
                "identities_opened_for_flexibility": sum(
                    1 for o in self.openings.values() if o.stage == "done" and o.kind == "flex"),
                "opened_for_flexibility": sorted({
                    self.ids.member(p).name for p, o in self.openings.items()
                    if o.stage == "done" and o.kind == "flex"}),
                "out_of_pool": self._out_of_pool(),
            })
        out.update(self._counted.result() if self._counted is not None
                   else count_clear(ctx, self._left_out()))
        # the ledger's aggregates stay exact (public already); what only the DSO meters is
        # released with differential privacy (features.publication, both modes)
        out.update(ctx.data.dp_release)
        return {"privacy": out}

    def after_run(self) -> None:
        # the scan of every store for household readings/orders runs on the other core
        # while the attacks' analyses run here (summary reads it)
        self._counted = count_clear_started(self.ctx, self._left_out())

    def _left_out(self) -> dict[int, frozenset[str]] | None:
        """Epoch -> cps of the members its pool left out (privacy mode; ``count_clear``)."""
        if not self.on:
            return None
        cp_of = {m.index: m.cp for m in self.ctx.members}
        return {e: frozenset(cp_of[j] for j in i.left_out) for e, i in self.epochs.items()}

    def _out_of_pool(self) -> dict[str, Any]:
        """Members the ledger's ticket cap kept out of an epoch's pool (a sanction: a member
        restricted or suspended trades under its own identity, where the sanction applies)."""
        by_index = {m.index: m for m in self.ctx.members}
        members: dict[str, list[int]] = {}
        tiers: dict[str, int] = {}
        for e, i in sorted(self.epochs.items()):
            for idx, tier in sorted(i.left_out.items()):
                members.setdefault(by_index[idx].name, []).append(e)
                tiers[tier] = tiers.get(tier, 0) + 1
        return {"member_epochs": sum(len(v) for v in members.values()),
                "members": members, "tiers": dict(sorted(tiers.items())),
                "honest_members": sorted(n for n in members
                                         if next(m for m in self.ctx.members if m.name == n).honest),
                "rule": "Pool.ticket_cap: no tickets while restricted or suspended"}

    @staticmethod
    def _epoch_summary(i: EpochIssue) -> dict[str, Any]:
        """One epoch's pool: members, pseudonyms, pay-out, and whether the community total the
        ledger settled with the grid account equals the sum of the households' market
        results the DSO bills (off the ledger)."""
        net = i.settled.get("to_grid_micro", 0) - i.settled.get("from_grid_micro", 0)
        return {"members": len(i.tickets), "pseudonyms": i.pseudonyms, "paid": i.paid,
                "payout": "bill", "community_result_micro": net,
                "household_bills_micro": sum(i.bill_micro.values()),
                "bills_match_pool": i.paid and sum(i.bill_micro.values()) == net}

    def detections(self) -> dict[str, int]:
        return {"identities_opened": sum(1 for o in self.openings.values() if o.stage == "done")}


def _dso_view(meas: SlotMeasurements, opened: dict[str, tuple[int, int, str]]) -> SlotMeasurements:
    """The measurements as the DSO holds them: its own sensors, the meters' sealed reports."""
    return replace(meas.with_reported({cp: v[0] for cp, v in opened.items()}),
                   reported_varh_by_cp={**meas.reported_varh_by_cp,
                                        **{cp: v[1] for cp, v in opened.items()}},
                   vm_pu_by_cp={**meas.vm_pu_by_cp,
                                **{cp: float(v[2]) for cp, v in opened.items() if v[2]}})

