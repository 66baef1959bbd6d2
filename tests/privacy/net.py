"""A privacy community on the real path: signed transactions admitted by the entry
validator's mempool, ordered, executed by four validators, certified by a quorum.

Every block is checked the way a node would be: all validators reach the same state root,
the block carries a quorum certificate, every invariant holds, and no escrow leaks (the
bank's locks are exactly what the market and the roaming authorisations hold).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.errors import RejectedTx
from gridledger.ledger import codec
from gridledger.ledger.execute import run_invariants
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.state import State
from gridledger.ledger.tx import TX_CONTEXT, decode_tx, sign_tx, signing_bytes
from gridledger.node.admission import QuotaPolicy
from gridledger.node.embedded import EmbeddedNetwork, FinalizedBlock
from gridledger.privacy.aggregation import AggregatorKeys
from gridledger.privacy.pseudonyms import TrusteeInfo, TrusteeKeys, TrusteeSet
from gridledger.sim.keys import sim_key

CHAIN = "privacy-net"
COMMUNITY = "net-community"
S, GATE, REVEAL, SETTLE = 900, 300, 150, 900
FW = bytes(32)
EPOCH_SLOTS = 4
ALLOWANCE = 2_000_000
USER_BALANCE = 10_000_000
FEEDER = "f1"


def _kem(*tag: object) -> KemKey:
    return KemKey(hashlib.sha3_512(repr(("net-kem", *tag)).encode()).digest())


@dataclass
class Outcome:
    """What one submitted transaction came to: admission refusal or its receipt."""

    rule: str | None          # None: succeeded
    detail: str = ""
    events: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return self.rule is None


@dataclass
class PrivacyNet:
    net: EmbeddedNetwork
    dso: SigningKey
    users: list[SigningKey]
    meters: list[SigningKey]
    trustee_keys: list[TrusteeKeys]
    trustee_set: TrusteeSet
    aggregators: list[AggregatorKeys]
    nonces: dict[bytes, int] = field(default_factory=dict)
    blocks: list[FinalizedBlock] = field(default_factory=list)
    now: int = 0

    # -- transactions ---------------------------------------------------------------------
    def tx(self, key: SigningKey, kind: str, body: dict[str, Any],
           sender: bytes | None = None) -> bytes:
        """A signed transaction; ``sender`` is the identity when ``key`` is a rotated key."""
        if sender is None or sender == key.address:
            n = self.nonces.get(key.address, 0)
            self.nonces[key.address] = n + 1
            return sign_tx(key, CHAIN, n, kind, body)
        n = self.nonces.get(sender, 0)
        self.nonces[sender] = n + 1
        msg = signing_bytes(CHAIN, sender, n, kind, body, key.alg)
        return codec.encode({"alg": key.alg, "body": body, "chain_id": CHAIN, "kind": kind,
                             "nonce": n, "sender": sender, "sig": key.sign(msg, TX_CONTEXT)})

    def run(self, txs: list[bytes], at: int) -> list[Outcome]:
        """Submit ``txs`` and close a block at ``at``: one outcome per transaction."""
        if at <= self.now:
            raise ValueError("block times must increase")
        self.now = at
        admitted: dict[bytes, int] = {}
        out: list[Outcome | None] = [None] * len(txs)
        for i, raw in enumerate(txs):
            try:
                tx = self.net.submit(raw, now_s=float(at))
                # receipts name a transaction by its id (or the wire hash if undecodable)
                admitted[tx.id] = admitted[tx.hash] = i
            except RejectedTx as exc:
                out[i] = Outcome(exc.rule, exc.detail)
                # a refused transaction does not consume its nonce
                sender = decode_tx(raw).sender
                self.nonces[sender] = self.nonces[sender] - 1
        for fb in self.net.tick(at):
            self._check(fb)
            self.blocks.append(fb)
            for r in fb.result.receipts:
                if r.tx_hash in admitted:
                    out[admitted[r.tx_hash]] = Outcome(None if r.ok else r.rule, r.detail,
                                                       tuple(r.events))
        missing = [i for i, o in enumerate(out) if o is None]
        assert not missing, f"transactions {missing} were neither refused nor executed"
        return [o for o in out if o is not None]

    def ok(self, txs: list[bytes], at: int) -> list[Outcome]:
        out = self.run(txs, at)
        bad = [o for o in out if not o.ok]
        assert not bad, bad
        return out

    def _check(self, fb: FinalizedBlock) -> None:
        roots = set(self.net.state_roots())
        assert len(roots) == 1, "validators disagree on the state root"
        assert fb.cert is not None and fb.cert.header_hash == fb.header.hash
        assert fb.header.state_root in roots
        run_invariants(self.state, self.net.entry.app.modules)

    # -- queries --------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.net.entry.app.state

    def bal(self, addr: bytes) -> int:
        return bank.balance(self.state, addr)

    def money(self) -> int:
        st = self.state
        return (sum(int(v) for _, v in st.items_with_prefix(bank.BAL))
                + sum(int(v) for _, v in st.items_with_prefix(bank.LOCK)))

    def events(self, type_: str) -> list[dict[str, Any]]:
        out = []
        for fb in self.blocks:
            out += [e for e in fb.result.block_events if e["type"] == type_]
            for rc in fb.result.receipts:
                out += [e for e in rc.events if e["type"] == type_]
        return out


def make_net(tmp: Path, *, n_users: int = 6, threshold: int = 2, aggregators: int = 7,
             privacy: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
             sections: dict[str, Any] | None = None, seed: int = 31) -> PrivacyNet:
    """Four validators, a DSO (grid account), ``n_users`` members with meters on feeder f1,
    three trustees (k = ``threshold``), ``aggregators`` aggregators (t = 3); ``sections``:
    further genesis sections (e.g. ``firmware``)."""
    vs = [sim_key(seed, "validator", i) for i in range(4)]
    dso = sim_key(seed, "dso", 0)
    users = [sim_key(seed, "user", i) for i in range(n_users)]
    meters = [sim_key(seed, "meter", i, alg="ml-dsa-44") for i in range(n_users)]
    tks = [TrusteeKeys(f"t{j}", sim_key(seed, "trustee", j, alg="ml-dsa-44"), _kem("t", j))
           for j in range(3)]
    aks = [AggregatorKeys(f"a{j}", sim_key(seed, "aggregator", j, alg="ml-dsa-44"),
                          _kem("a", j)) for j in range(aggregators)]
    parts: list[dict[str, Any]] = [
        {"alg": v.alg, "pk": v.public_key.raw, "roles": ["validator"], "name": f"v{i}"}
        for i, v in enumerate(vs)]
    parts.append({"alg": dso.alg, "pk": dso.public_key.raw, "roles": ["dso"], "name": "dso",
                  "balance_micro": 10**9})
    for i, (u, m) in enumerate(zip(users, meters, strict=True)):
        parts.append({"alg": u.alg, "pk": u.public_key.raw, "roles": ["prosumer"],
                      "name": f"u{i}", "cp": f"cp{i}", "balance_micro": USER_BALANCE})
        parts.append({"alg": m.alg, "pk": m.public_key.raw, "roles": ["meter"],
                      "name": f"m{i}", "meter_of": f"cp{i}"})
    for t in tks:
        k = t.signing_key
        parts.append({"alg": k.alg, "pk": k.public_key.raw, "roles": ["trustee"],
                      "name": t.trustee_id})
    for a in aks:
        k = a.signing_key
        parts.append({"alg": k.alg, "pk": k.public_key.raw, "roles": ["aggregator"],
                      "name": a.aggregator_id})
    section = {
        "community": COMMUNITY, "threshold": threshold,
        "trustees": [{"id": t.trustee_id, "addr": t.signing_key.address,
                      "kem_pk": t.kem_key.public_key} for t in tks],
        "allowance_micro": ALLOWANCE, "max_tickets": 8, "epoch_slots": EPOCH_SLOTS,
        "close_delay_s": 900, "claim_window_s": 900,
        "aggregators": [{"id": a.aggregator_id, "addr": a.signing_key.address,
                         "kem_pk": a.kem_key.public_key} for a in aks],
        "aggregator_threshold": 3, "aggregate_min_contributors": 5,
        "feeders": [[FEEDER, [f"cp{i}" for i in range(n_users)]]],
        "aggregate_tolerance_wh": 0, **(privacy or {})}
    base = {"slot_seconds": S, "gate_closure_s": GATE, "reveal_window_s": REVEAL,
            "settle_window_s": SETTLE, **(params or {})}
    genesis = make_genesis(CHAIN, parts, base, sections={"privacy": section, **(sections or {})})
    ts = TrusteeSet(COMMUNITY, threshold, tuple(TrusteeInfo(t.trustee_id,
                                                            t.signing_key.public_key,
                                                            t.kem_key.public_key)
                                                for t in tks))
    # generous quotas: these tests are about execution, not admission control
    net = EmbeddedNetwork(genesis, vs, tmp, quota=QuotaPolicy(rate_per_s=1000.0, burst=1000.0))
    return PrivacyNet(net, dso, users, meters, tks, ts, aks)


# ------------------------------------------------------------------ pseudonymous epochs
DISPUTE_WINDOW = 1800
"""``dispute_window_s`` the pool tests run with (the default is a day)."""


def t_order(slot: int) -> int:
    """A block time when orders for ``slot`` are open."""
    return slot * S - GATE - 100


def t_clear(slot: int) -> int:
    return slot * S - GATE + REVEAL


def t_read(slot: int) -> int:
    return (slot + 1) * S + 10


def epoch_close_time(epoch: int) -> int:
    """Block time at which ``epoch`` closes: its last slot's settlement deadline, then its
    dispute window (longer than ``close_delay_s`` here)."""
    last = (epoch + 1) * EPOCH_SLOTS - 1
    return (last + 1) * S + SETTLE + DISPUTE_WINDOW


@dataclass
class Issued:
    """An epoch's pseudonyms as their owners, meters and the DSO know them."""

    own: dict[int, list[Any]]                 # user -> [OwnPseudonym]
    reading: dict[bytes, SigningKey]          # pseudonym -> the reading key its meter holds
    statements: dict[int, Any]                # user -> its meter's MeterStatement
    batch: Any
    attestation: Any

    def reading_key(self, ps: Any) -> SigningKey:
        return self.reading[ps.address]


def pool_net(tmp: Path, **kw: Any) -> PrivacyNet:
    """A privacy net whose dispute window lets epochs close within a test."""
    params = {"dispute_window_s": DISPUTE_WINDOW, **kw.pop("params", {})}
    return make_net(tmp, params=params, **kw)


def issue(w: PrivacyNet, epoch: int, plan: dict[int, list[int | tuple[int, int]]], at: int, *,
          tickets: dict[int, int] | None = None,
          firmware: dict[int, bytes] | None = None, seal: bool = False,
          random_bytes: Any = None) -> Issued:
    """Users join with one ticket per planned slot (or ``tickets``), make per-slot pseudonyms
    (a ``(first, last)`` entry: one pseudonym for those slots); their meters make reading
    keys and sign the bindings (with ``firmware[user]``, the image hash the meter runs, when
    given; ``seal``: as a salted commitment per pseudonym, privacy mode's sealed images);
    the DSO attests; the trustees certify; a relay registers. Three blocks: ``at`` (joins),
    ``at + 1``, ``at + 2``. ``random_bytes``: the pseudonyms' randomness (default
    ``os.urandom``)."""
    from gridledger.privacy.ledger_io import (
        attest_body,
        certify_batch,
        make_pseudonyms,
        register_bodies,
    )
    from gridledger.privacy.meter_keys import attest_readings, issue_reading_keys

    tickets = tickets or {i: len(slots) for i, slots in plan.items()}
    w.ok([w.tx(w.users[i], "privacy/join", {"epoch": epoch, "tickets": n})
          for i, n in tickets.items()], at)
    rnd = {} if random_bytes is None else {"random_bytes": random_bytes}
    own = {i: make_pseudonyms(w.users[i], w.trustee_set, epoch,
                              [s if isinstance(s, tuple) else (s, s) for s in slots], FEEDER,
                              **rnd)
           for i, slots in plan.items()}
    reading: dict[bytes, SigningKey] = {}
    statements = {}
    for i, ps in own.items():
        keys, st = issue_reading_keys(w.meters[i], COMMUNITY, f"cp{i}", epoch,
                                      [p.address for p in ps],
                                      firmware=(firmware or {}).get(i), seal=seal)
        reading.update(keys)
        statements[i] = st
    att = attest_readings(COMMUNITY, epoch, list(statements.values()),
                          {f"cp{i}": m.public_key for i, m in enumerate(w.meters)},
                          {f"cp{i}": n for i, n in tickets.items()})
    batch = certify_batch(w.trustee_keys, w.trustee_set,
                          [p.entry for ps in own.values() for p in ps], epoch, EPOCH_SLOTS)
    w.ok([w.tx(w.dso, "privacy/attest", attest_body(att)),
          w.tx(w.trustee_keys[0].signing_key, "privacy/certify", batch.certify_body)], at + 1)
    attested = {p.address: statements[i].attested(j) for i, ps in own.items()
                for j, p in enumerate(ps)}
    # a block fills fairly across senders, so the relay's registrations go in the next one
    w.ok([w.tx(w.trustee_keys[1].signing_key, "privacy/register", b)
          for b in register_bodies(w.trustee_set, batch, att,
                                   {a: k.public_key for a, k in reading.items()},
                                   {a: fw for a, fw in attested.items() if fw is not None},
                                   {p.address for ps in own.values() for p in ps} if seal
                                   else ())], at + 2)
    return Issued(own, reading, statements, batch, att)


def read(w: PrivacyNet, iss: Issued, ps: Any, slot: int, import_wh: int,
         export_wh: int) -> bytes:
    """The pseudonym's reading, signed by the reading key its meter holds."""
    return w.tx(iss.reading_key(ps), "metering/reading",
                {"slot": slot, "import_wh": import_wh, "export_wh": export_wh, "firmware": FW})


def order(w: PrivacyNet, ps: Any, slot: int, side: str, wh: int, price: int) -> bytes:
    return w.tx(ps.key, "market/order", {"slot": slot, "side": side, "energy_wh": wh,
                                         "price_micro_per_kwh": price})


def firmware_net(tmp: Path, seed: int = 31) -> tuple[PrivacyNet, Any, Any]:
    """A privacy pool net with a ``firmware`` section: vendor ``acme`` (model AM-1) with an
    old (1.0.0) and a new (1.1.0) release, both approved by genesis. Returns (net, old, new)
    ``SignedRelease`` s."""
    from gridledger.meter import VendorSigner

    acme = VendorSigner("acme", sim_key(seed, "vendor", 0, alg="ml-dsa-87"), ("AM-1",))
    old = acme.sign("AM-1", "1.0.0", b"image:am1-1.0.0", "0.0.0")
    new = acme.sign("AM-1", "1.1.0", b"image:am1-1.1.0", "1.0.0")
    section = {"vendors": [acme.genesis_entry()],
               "releases": [old.genesis_entry(), new.genesis_entry()]}
    return pool_net(tmp, sections={"firmware": section}), old, new
