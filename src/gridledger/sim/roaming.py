"""``ev-roaming`` (docs/threat-model.md row 13): a member's EV charges in a foreign community, the
charge is settled on the home ledger, and the curious foreign DSO learns no identity.

On some evenings of the run the EV plugs in at ``foreign-town``. Each session runs the whole
protocol of ``privacy/roaming.py``:

1. home, before leaving: a fresh ``roaming`` pseudonym certified by k of the home trustees,
   and a billing token sealed to the home DSO's billing key authorising at most
   ``limits`` for this session; the home DSO books it (``privacy/roaming_authorise``: the
   member's signature is checked and the limit's worth held) and, once that block is
   certified, signs a guarantee for the certificate and session;
2. abroad (the next slot): the EV's signed request, ``admit_roaming_ev`` against the pinned
   home trustee set and home DSO key — before any energy flows — the metered energy at the
   foreign tariff, the EV's receipt, the foreign DSO's claim;
3. home: ``settle_roaming_claim`` with the foreign DSO keys the home ledger's genesis pins,
   then ``privacy/roaming_charge`` naming the booked authorisation.

Every secret (pseudonym key, salt, session id, ML-KEM randomness) comes from the OS, as on a
real EV; the energy drawn is the scenario's (seeded). The attacker is the foreign DSO,
passive and curious: everything it receives (request, certificate, guarantee, billing token,
receipt) is kept and searched for the member's address and public key; the home ledger's
roaming transactions are checked for anything that ties them to a session it saw (the
certificate, pseudonym, session or claim, or the member's signature over one of them).
Without the defence (a test makes ``ev_key`` return the member's own key) the foreign side
sees the identity key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridledger.crypto.sig import SigningKey
from gridledger.grid import SLOTS_PER_DAY
from gridledger.ledger import codec
from gridledger.ledger.tx import decode_tx
from gridledger.privacy.errors import PrivacyError
from gridledger.privacy.pseudonyms import (
    PseudonymCertificate,
    assemble_certificate,
    create_pseudonym,
    endorse_pseudonym,
)
from gridledger.privacy.roaming import (
    CTX_BILL,
    BillingAuthorisation,
    ChargingReceipt,
    ChargingRequest,
    RoamingLimits,
    admit_roaming_ev,
    authorisation_message,
    authorise_body,
    charge_body,
    issue_guarantee,
    make_claim,
    new_session_id,
    open_billing_token,
    request_charging,
    seal_billing_token,
    settle_roaming_claim,
    sign_receipt,
)
from gridledger.sim.attack_base import Attack

if TYPE_CHECKING:
    from gridledger.node.embedded import FinalizedBlock
    from gridledger.sim.community import Member

FOREIGN_COMMUNITY = "foreign-town"
FOREIGN_DSO = "foreign-dso"
HOME_DSO_ID = "dso"
STATION = "foreign-town/fast-charger-1"


@dataclass
class Visit:
    """One charging session abroad, as the simulator knows it (ground truth)."""

    slot: int
    pseudonym: bytes
    energy_wh: int
    amount_micro: int
    foreign_view: bytes                 # every byte the foreign side received
    certificate_digest: bytes
    claim_digest: bytes
    session_id: bytes
    seq: int | None = None              # the booked authorisation, once settled at home
    authorise_body: dict[str, Any] | None = None  # the public ledger transactions
    charge_body: dict[str, Any] | None = None
    home_refusal: str | None = None     # why the home DSO did not settle it


@dataclass
class Pending:
    """A session booked at home, waiting for its certified booking before the EV leaves."""

    slot: int
    key: SigningKey
    cert: PseudonymCertificate
    token: bytes
    auth: BillingAuthorisation
    tx_id: bytes
    booked: bool = False


def foreign_view(request: ChargingRequest, receipt: ChargingReceipt) -> bytes:
    """Everything the foreign DSO receives in a session, serialised."""
    c, g = request.certificate, request.guarantee
    return codec.encode({
        "request": {"foreign_community": request.foreign_community,
                    "station_id": request.station_id, "session_id": request.session_id,
                    "slot": request.slot, "billing_token": request.billing_token,
                    "signature": request.signature},
        "certificate": {"community": c.community, "epoch": c.epoch, "scope": c.scope,
                        "alg": c.pseudonym_key.alg, "pk": c.pseudonym_key.raw,
                        "escrow_digest": c.escrow_digest,
                        "endorsements": [[e.trustee_index, e.signature]
                                         for e in c.endorsements]},
        "guarantee": {"community": g.home_community, "dso": g.home_dso_id,
                      "certificate": g.certificate_digest, "session_id": g.session_id,
                      "max_energy_wh": g.limits.max_energy_wh,
                      "price_cap": g.limits.price_cap_micro_per_kwh,
                      "valid_until_slot": g.valid_until_slot, "signature": g.signature},
        "receipt": {"session_id": receipt.session_id, "energy_wh": receipt.energy_wh,
                    "price_micro_per_kwh": receipt.price_micro_per_kwh,
                    "amount_micro": receipt.amount_micro, "ev_signature": receipt.ev_signature}})


class EvRoaming(Attack):
    name = "ev-roaming"
    threat = "13 EV roaming"
    defence = ("a fresh roaming pseudonym per session certified by k home trustees, billing "
               "token sealed to the home DSO; the member's signed limits are booked and held "
               "on the home ledger before charging, the foreign DSO checks the home DSO's "
               "guarantee, and the charge is checked against the limits")
    windows = ((0.76, 0.77), (0.84, 0.85))   # evening sessions: ~18:15 and ~20:15
    price_micro_per_kwh = 450_000            # the foreign charge point's tariff
    session_wh = (4_000, 22_000)             # 15-60 min at 11-22 kW
    price_cap_micro_per_kwh = 600_000        # what the member authorises at most

    def setup(self) -> None:
        keys = getattr(self.eng.community, "privacy_keys", None)
        if keys is None:
            raise RuntimeError("ev-roaming needs community.privacy_keys (trustee_keys, "
                               "trustee_set, billing_kem, foreign_dso_key)")
        self.keys = keys
        # guarantees are off-ledger, checked by foreign DSOs: one key, not the committee
        roaming_key = getattr(self.eng.community, "dso_roaming_key", None)
        if roaming_key is None:
            raise RuntimeError("ev-roaming needs community.dso_roaming_key (the home DSO's "
                               "guarantee key)")
        self.dso_roaming_key: SigningKey = roaming_key
        self.owner: Member = self.pick(lambda m: "ev" in m.der)
        self.visits: list[Visit] = []
        self.pending: list[Pending] = []
        self.authorised: list[dict[str, Any]] = []  # roaming_authorised events for the owner
        self.charged: list[dict[str, Any]] = []     # roaming_charged events for the owner
        self.tx_ids: set[bytes] = set()
        self.refused: dict[str, int] = {}            # ledger rule -> count

    # -- the EV's credential (the defence's seam) -------------------------------------------
    def ev_key(self, n: int) -> SigningKey:
        """The key the EV presents abroad in session ``n``: a fresh one from the OS."""
        return SigningKey.generate(self.owner.key.alg)

    def credential(self, n: int, epoch: int) -> tuple[SigningKey, PseudonymCertificate]:
        """``ev_key(n)`` certified by k home trustees for roaming, identity escrowed."""
        key = self.ev_key(n)
        first: list[bytes] = [key.seed]

        def random_bytes(k: int) -> bytes:
            # create_pseudonym draws the pseudonym key's seed first: hand it ev_key's
            return first.pop() if first else os.urandom(k)

        ts = self.keys.trustee_set
        _, req = create_pseudonym(self.owner.key, ts, epoch, "roaming",
                                  pseudonym_alg=key.alg, random_bytes=random_bytes)
        if req.pseudonym_key != key.public_key:
            raise RuntimeError("create_pseudonym no longer draws the key seed first")
        tks = self.keys.trustee_keys
        signers = [tks[(n + j) % len(tks)] for j in range(ts.threshold)]
        cert = assemble_certificate(req, [endorse_pseudonym(t, ts, req, epoch) for t in signers])
        return key, cert

    def limits(self) -> RoamingLimits:
        """What the member authorises for a session: the charger's largest session, capped."""
        return RoamingLimits(self.session_wh[1], self.price_cap_micro_per_kwh)

    # -- one session, at home: book it --------------------------------------------------------
    def _book(self, slot: int) -> list[bytes]:
        eng = self.eng
        epoch = slot // SLOTS_PER_DAY
        n = len(self.visits) + len(self.pending)
        key, cert = self.credential(n, epoch)
        seq = eng.ledger.roaming_seq(self.owner.address) + sum(
            1 for p in self.pending if not p.booked)
        token = seal_billing_token(self.owner.key, self.owner.address, seq, cert,
                                   new_session_id(), self.limits(),
                                   self.keys.billing_kem.public_key)
        # the home DSO opens the token and books the authorisation on its ledger
        auth = open_billing_token(token, cert, self.keys.billing_kem)
        raw = eng.tx(eng.community.dso, "privacy/roaming_authorise", authorise_body(auth))
        self.tx_ids.add(decode_tx(raw).id)
        self.pending.append(Pending(slot, key, cert, token, auth, decode_tx(raw).id))
        return [raw]

    # -- abroad, once the booking is certified: charge, claim, settle at home -----------------
    def _charge(self, p: Pending, slot: int) -> list[bytes]:
        eng = self.eng
        epoch = p.slot // SLOTS_PER_DAY
        home = self.keys.trustee_set
        foreign_key: SigningKey = self.keys.foreign_dso_key
        guarantee = issue_guarantee(self.dso_roaming_key, HOME_DSO_ID, p.cert, p.auth, slot + 4)
        request = request_charging(p.key, p.cert, guarantee, p.token, FOREIGN_COMMUNITY,
                                   STATION, slot)
        home_dso = {(home.community, HOME_DSO_ID): self.dso_roaming_key.public_key}
        session = admit_roaming_ev(request, FOREIGN_COMMUNITY, {home.community: home},
                                   home_dso, epoch)
        energy_wh = self.rng.randint(*self.session_wh)
        receipt = sign_receipt(p.key, session, energy_wh, self.price_micro_per_kwh)
        claim = make_claim(foreign_key, FOREIGN_DSO, session, request, receipt)
        visit = Visit(slot, session.pseudonym_address, energy_wh, receipt.amount_micro,
                      foreign_view(request, receipt), p.cert.digest(), claim.digest(),
                      session.session_id, authorise_body=authorise_body(p.auth))
        self.visits.append(visit)
        partners = eng.ledger.roaming_partners()
        try:
            bill = settle_roaming_claim(claim, home_trustees=home, foreign_dso_keys=partners,
                                        billing_key=self.keys.billing_kem)
        except PrivacyError as exc:
            visit.home_refusal = str(exc)
            return []
        visit.seq = bill.seq
        visit.charge_body = charge_body(bill)
        raw = eng.tx(eng.community.dso, "privacy/roaming_charge", visit.charge_body)
        self.tx_ids.add(decode_tx(raw).id)
        return [raw]

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        if not trading:
            return []
        out: list[bytes] = []
        for p in [p for p in self.pending if p.booked]:
            self.pending.remove(p)
            out += self._charge(p, slot)
        if any(self.eng.in_window(slot, *w) for w in self.windows):
            out += self._book(slot)
        return out

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        mine = [e for e in events if e.get("account") == self.owner.address]
        self.authorised += [e for e in mine if e.get("type") == "roaming_authorised"]
        self.charged += [e for e in mine if e.get("type") == "roaming_charged"]
        booked = {e["seq"] for e in mine if e.get("type") == "roaming_authorised"}
        for p in self.pending:
            p.booked = p.booked or p.auth.seq in booked
        for r in fb.result.receipts:
            if r.tx_hash in self.tx_ids and not r.ok:
                self.refused[r.rule] = self.refused.get(r.rule, 0) + 1

    # -- what the foreign side learned --------------------------------------------------------
    def _names_owner(self, blob: bytes) -> bool:
        return self.owner.address in blob or self.owner.key.public_key.raw in blob

    def _ledger_links(self, v: Visit) -> bool:
        """Can the foreign DSO tie the home ledger's roaming transactions to this session?"""
        bodies = [b for b in (v.authorise_body, v.charge_body) if b is not None]
        if not bodies:
            return False
        public = b"".join(codec.encode(b) for b in bodies)
        known = (v.certificate_digest, v.claim_digest, v.pseudonym, v.session_id)
        if any(x in public for x in known):
            return True
        auth = v.authorise_body
        if auth is None:
            return False
        limits = RoamingLimits(auth["max_energy_wh"], auth["price_cap_micro_per_kwh"])
        community = self.keys.trustee_set.community
        return any(self.owner.key.public_key.verify(
            authorisation_message(community, auth["account"], auth["seq"], x, limits),
            auth["billing_sig"], CTX_BILL) for x in known)

    def result(self) -> dict[str, Any]:
        n = len(self.visits)
        if n == 0:
            return self.record(0, 0, True, 0, passive=True,
                               note="run too short: no evening session")
        by_seq = {v.seq: v for v in self.visits if v.seq is not None}
        expected = sum(v.amount_micro for v in self.visits)
        charged = sum(int(e["amount_micro"]) for e in self.charged)
        # loss: money moved other than energy x price for a session the member had
        loss, seen = 0, set()
        for e in self.charged:
            v = by_seq.get(e["seq"])
            if v is None or e["seq"] in seen:
                loss += int(e["amount_micro"])
            else:
                loss += abs(int(e["amount_micro"]) - v.amount_micro)
                seen.add(e["seq"])
        identity_learned = any(self._names_owner(v.foreign_view) for v in self.visits)
        links = sum(1 for v in self.visits if self._ledger_links(v))
        settled = len(seen)
        distinct = len({v.pseudonym for v in self.visits})
        amounts = [int(e["amount_micro"]) for e in self.charged]
        by_amount = sum(1 for v in self.visits if amounts.count(v.amount_micro) == 1)
        ok = settled == n and not identity_learned and links == 0 and loss == 0
        return self.record(
            n, 0, ok, loss, passive=True, ev_owner=self.owner.name, sessions=n, settled=settled,
            authorised=len(self.authorised), identity_learned=identity_learned,
            ledger_links=links, distinct_pseudonyms=distinct,
            energy_wh=sum(v.energy_wh for v in self.visits),
            expected_micro=expected, charged_micro=charged,
            home_refusals=[v.home_refusal for v in self.visits if v.home_refusal],
            ledger_refusals=dict(sorted(self.refused.items())),
            sessions_matchable_by_amount=by_amount,
            note="the foreign DSO is passive: nothing to detect. identity_learned: its "
                 "request, certificate, guarantee, token and receipt hold the member's "
                 "address or key; ledger_links: the home ledger's roaming transactions name "
                 "a value it knows or the member signed one. Residual: if it can read the "
                 "home ledger it can still match amounts and times "
                 "(sessions_matchable_by_amount)")
