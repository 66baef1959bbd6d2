"""``ev-roaming`` (THREATS.md row 13): a member's EV charges in a foreign community, the
charge is settled on the home ledger, and the curious foreign DSO learns no identity.

On some evenings of the run the EV plugs in at ``foreign-town``. Each session runs the whole
protocol of ``privacy/roaming.py``:

1. home: a fresh ``roaming`` pseudonym certified by k of the home trustees, and a billing
   token sealed to the home DSO's billing key (``ev_key`` / ``credential``);
2. abroad: the EV's signed request, ``admit_roaming_ev`` against the pinned home trustee
   set, the metered energy at the foreign tariff, the EV's receipt, the foreign DSO's claim;
3. home: ``settle_roaming_claim`` with the foreign DSO keys the home ledger's genesis pins,
   then ``privacy/roaming_charge`` submitted by the home DSO to the running ledger.

The attacker is the foreign DSO, passive and curious: everything it receives (request,
certificate, billing token, receipt) is kept and searched for the member's address and
public key; the home ledger's charge transactions are checked for anything that ties them
to a session it saw (the certificate, pseudonym or claim, or the member's signature over
one of them). Without the defence (a test makes ``ev_key`` return the member's own key)
the foreign side sees the identity key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridledger.crypto.sig import SigningKey
from gridledger.grid import SLOTS_PER_DAY
from gridledger.ledger import codec
from gridledger.ledger.modules.privacy import keeper as privacy_keeper
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
    ChargingReceipt,
    ChargingRequest,
    admit_roaming_ev,
    charge_body,
    make_claim,
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
    commitment: bytes | None = None     # the billing authorisation, once settled at home
    charge_body: dict[str, Any] | None = None  # the public ledger transaction
    home_refusal: str | None = None     # why the home DSO did not settle it


def foreign_view(request: ChargingRequest, receipt: ChargingReceipt) -> bytes:
    """Everything the foreign DSO receives in a session, serialised."""
    c = request.certificate
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
        "receipt": {"session_id": receipt.session_id, "energy_wh": receipt.energy_wh,
                    "price_micro_per_kwh": receipt.price_micro_per_kwh,
                    "amount_micro": receipt.amount_micro, "ev_signature": receipt.ev_signature}})


class EvRoaming(Attack):
    name = "ev-roaming"
    threat = "13 EV roaming"
    defence = ("a fresh roaming pseudonym per session certified by k home trustees, billing "
               "token sealed to the home DSO; the foreign DSO bills the home community, whose "
               "ledger debits the member on its signature over a salted commitment")
    windows = ((0.76, 0.77), (0.84, 0.85))   # evening sessions: ~18:15 and ~20:15
    price_micro_per_kwh = 450_000            # the foreign charge point's tariff
    session_wh = (4_000, 22_000)             # 15-60 min at 11-22 kW

    def setup(self) -> None:
        keys = getattr(self.eng.community, "privacy_keys", None)
        if keys is None:
            raise RuntimeError("ev-roaming needs community.privacy_keys (trustee_keys, "
                               "trustee_set, billing_kem, foreign_dso_key)")
        self.keys = keys
        self.owner: Member = self.pick(lambda m: "ev" in m.der)
        self.visits: list[Visit] = []
        self.charged: list[dict[str, Any]] = []     # roaming_charged events for the owner
        self.tx_ids: set[bytes] = set()
        self.refused: dict[str, int] = {}            # ledger rule -> count

    # -- the EV's credential (the defence's seam) -------------------------------------------
    def ev_key(self, n: int) -> SigningKey:
        """The key the EV presents abroad in session ``n``: a fresh one each time."""
        return SigningKey.from_seed(self.owner.key.alg, self.rng.randbytes(32))

    def credential(self, n: int, epoch: int) -> tuple[SigningKey, PseudonymCertificate]:
        """``ev_key(n)`` certified by k home trustees for roaming, identity escrowed."""
        key = self.ev_key(n)
        first: list[bytes] = [key.seed]

        def random_bytes(k: int) -> bytes:
            # create_pseudonym draws the pseudonym key's seed first: hand it ev_key's
            return first.pop() if first else self.rng.randbytes(k)

        ts = self.keys.trustee_set
        _, req = create_pseudonym(self.owner.key, ts, epoch, "roaming",
                                  pseudonym_alg=key.alg, random_bytes=random_bytes)
        if req.pseudonym_key != key.public_key:
            raise RuntimeError("create_pseudonym no longer draws the key seed first")
        tks = self.keys.trustee_keys
        signers = [tks[(n + j) % len(tks)] for j in range(ts.threshold)]
        cert = assemble_certificate(req, [endorse_pseudonym(t, ts, req, epoch) for t in signers])
        return key, cert

    # -- one session --------------------------------------------------------------------------
    def _session(self, slot: int) -> list[bytes]:
        eng, n = self.eng, len(self.visits)
        epoch = slot // SLOTS_PER_DAY
        home = self.keys.trustee_set
        foreign_key: SigningKey = self.keys.foreign_dso_key
        # home, before leaving: credential and a billing token for this session
        key, cert = self.credential(n, epoch)
        token = seal_billing_token(self.owner.key, cert, self.keys.billing_kem.public_key,
                                   random_bytes=self.rng.randbytes)
        # abroad
        request = request_charging(key, cert, token, FOREIGN_COMMUNITY, STATION,
                                   self.rng.randbytes(16), slot)
        session = admit_roaming_ev(request, FOREIGN_COMMUNITY, {home.community: home}, epoch)
        energy_wh = self.rng.randint(*self.session_wh)
        receipt = sign_receipt(key, session, energy_wh, self.price_micro_per_kwh)
        claim = make_claim(foreign_key, FOREIGN_DSO, session, request, receipt)
        visit = Visit(slot, session.pseudonym_address, energy_wh, receipt.amount_micro,
                      foreign_view(request, receipt), cert.digest(), claim.digest())
        self.visits.append(visit)
        # home: the DSO checks the claim against the partners its ledger pins, then books it
        cfg = privacy_keeper.config(eng.net.entry.app.state)
        partners = cfg.roaming_dso_keys() if cfg is not None else {}
        try:
            bill = settle_roaming_claim(claim, home_trustees=home, foreign_dso_keys=partners,
                                        billing_key=self.keys.billing_kem)
        except PrivacyError as exc:
            visit.home_refusal = str(exc)
            return []
        visit.commitment = bill.commitment
        visit.charge_body = charge_body(bill)
        raw = eng.tx(eng.community.dso, "privacy/roaming_charge", visit.charge_body)
        self.tx_ids.add(decode_tx(raw).id)
        return [raw]

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        if not trading or not any(self.eng.in_window(slot, *w) for w in self.windows):
            return []
        return self._session(slot)

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        self.charged += [e for e in events if e.get("type") == "roaming_charged"
                         and e["account"] == self.owner.address]
        for r in fb.result.receipts:
            if r.tx_hash in self.tx_ids and not r.ok:
                self.refused[r.rule] = self.refused.get(r.rule, 0) + 1

    # -- what the foreign side learned --------------------------------------------------------
    def _names_owner(self, blob: bytes) -> bool:
        return self.owner.address in blob or self.owner.key.public_key.raw in blob

    def _ledger_links(self, v: Visit) -> bool:
        """Can the foreign DSO tie the home ledger's charge to this session it served?"""
        if v.charge_body is None:
            return False
        public = codec.encode(v.charge_body)
        sig = v.charge_body["billing_sig"]
        known = (v.certificate_digest, v.claim_digest, v.pseudonym)
        return (any(x in public for x in known)
                or any(self.owner.key.public_key.verify(x, sig, CTX_BILL) for x in known))

    def result(self) -> dict[str, Any]:
        n = len(self.visits)
        if n == 0:
            return self.record(0, 0, True, 0, passive=True,
                               note="run too short: no evening session")
        by_commitment = {v.commitment: v for v in self.visits if v.commitment is not None}
        expected = sum(v.amount_micro for v in self.visits)
        charged = sum(int(e["amount_micro"]) for e in self.charged)
        # loss: money moved other than energy x price for a session the member had
        loss, seen = 0, set()
        for e in self.charged:
            v = by_commitment.get(e["commitment"])
            if v is None or e["commitment"] in seen:
                loss += int(e["amount_micro"])
            else:
                loss += abs(int(e["amount_micro"]) - v.amount_micro)
                seen.add(e["commitment"])
        identity_learned = any(self._names_owner(v.foreign_view) for v in self.visits)
        links = sum(1 for v in self.visits if self._ledger_links(v))
        settled = len(seen)
        distinct = len({v.pseudonym for v in self.visits})
        amounts = [int(e["amount_micro"]) for e in self.charged]
        by_amount = sum(1 for v in self.visits if amounts.count(v.amount_micro) == 1)
        ok = settled == n and not identity_learned and links == 0 and loss == 0
        return self.record(
            n, 0, ok, loss, passive=True, ev_owner=self.owner.name, sessions=n, settled=settled,
            identity_learned=identity_learned, ledger_links=links,
            distinct_pseudonyms=distinct, energy_wh=sum(v.energy_wh for v in self.visits),
            expected_micro=expected, charged_micro=charged,
            home_refusals=[v.home_refusal for v in self.visits if v.home_refusal],
            ledger_refusals=dict(sorted(self.refused.items())),
            sessions_matchable_by_amount=by_amount,
            note="the foreign DSO is passive: nothing to detect. identity_learned: its "
                 "request, certificate, token and receipt hold the member's address or key; "
                 "ledger_links: the home ledger's charge names a digest it knows. Residual: "
                 "if it can read the home ledger it can still match amounts and times "
                 "(sessions_matchable_by_amount)")

