"""k-of-n committee senders (issue 14.3): a DSO run by three nodes, k = 2.

Every rejection names its rule and leaves state untouched; admission runs the same check.
"""

from __future__ import annotations

import cbor2
import pytest

from gridledger.committee import (
    CommitteeNode,
    CommitteeSigner,
    CommitteeUnavailable,
    assemble,
    committee_of,
    genesis_entry,
    member_signature,
    unsigned_tx,
)
from gridledger.errors import ConfigError, RejectedTx
from gridledger.ledger import codec
from gridledger.ledger.app import Application
from gridledger.ledger.committee import COMMITTEE_ALG, encode_signatures, parse_committee
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.tx import TX_CONTEXT, decode_tx, sign_tx, signing_bytes
from gridledger.node.admission import Mempool
from gridledger.sim.keys import sim_key
from tests.conftest import CHAIN, apply

DSO_BALANCE = 5_000_000


@pytest.fixture(scope="module")
def setup():
    validators = [sim_key(3, "validator", i) for i in range(4)]
    users = [sim_key(3, "user", i) for i in range(2)]
    dso_keys = [sim_key(3, "dso-node", i) for i in range(3)]
    committee = committee_of(2, dso_keys)
    parts = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"v{i}"}
             for i, k in enumerate(validators)]
    parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "name": f"u{i}",
               "cp": f"cp{i}", "balance_micro": 1_000_000} for i, k in enumerate(users)]
    parts.append(genesis_entry(committee, "dso", ["dso"], DSO_BALANCE))
    return make_genesis(CHAIN, parts), validators, users, dso_keys, committee


@pytest.fixture
def world(setup):
    genesis, validators, users, dso_keys, committee = setup
    nodes = [CommitteeNode(f"dso-{i}", k) for i, k in enumerate(dso_keys)]
    return Application(genesis), users, dso_keys, committee, nodes


def _pay(committee, nonce, to, amount=1000):
    return unsigned_tx(committee, CHAIN, nonce, "bank/transfer", {"to": to, "amount_micro": amount})


def _balance(app, addr):
    return app.query(f"bank/account/{addr.hex()}")["balance_micro"]


def test_k_of_n_signed_duty_applies(world):
    app, users, _keys, committee, nodes = world
    signer = CommitteeSigner(committee, nodes)
    raw = sign_tx(signer, CHAIN, 0, "bank/transfer", {"to": users[0].address, "amount_micro": 700})
    _, result = apply(app, [raw])
    assert result.receipts[0].ok, result.receipts[0]
    assert _balance(app, committee.address) == DSO_BALANCE - 700
    assert app.next_nonce(committee.address) == 1
    view = app.query(f"registry/committee/{committee.address.hex()}")
    assert view["threshold"] == 2 and [m["index"] for m in view["members"]] == [0, 1, 2]


def test_one_node_crashed_the_others_still_sign(world):
    app, users, _keys, committee, nodes = world
    signer = CommitteeSigner(committee, nodes)
    nodes[0].stop()
    raw = sign_tx(signer, CHAIN, 0, "bank/transfer", {"to": users[0].address, "amount_micro": 5})
    assert [i for i, _s in cbor2.loads(cbor2.loads(raw)["sig"])] == [1, 2]
    _, result = apply(app, [raw])
    assert result.receipts[0].ok
    nodes[1].stop()
    with pytest.raises(CommitteeUnavailable, match="1 of 2"):
        sign_tx(signer, CHAIN, 1, "bank/transfer", {"to": users[0].address, "amount_micro": 5})
    nodes[0].start()
    assert sign_tx(signer, CHAIN, 1, "bank/transfer", {"to": users[0].address, "amount_micro": 5})


def test_a_node_refusing_by_policy_is_skipped(world):
    _app, users, keys, committee, _nodes = world
    nodes = [CommitteeNode("dso-0", keys[0], approve=lambda kind, body: body["amount_micro"] < 10),
             CommitteeNode("dso-1", keys[1]), CommitteeNode("dso-2", keys[2])]
    raw = sign_tx(CommitteeSigner(committee, nodes), CHAIN, 0, "bank/transfer",
                  {"to": users[0].address, "amount_micro": 50})
    assert [i for i, _s in cbor2.loads(cbor2.loads(raw)["sig"])] == [1, 2]
    assert nodes[0].refused == 1


def _forged(committee, keys, users, case):
    msg = _pay(committee, 0, users[0].address)
    sigs = [member_signature(k, committee, msg) for k in keys]
    if case == "one-node-alone":  # a compromised DSO node signs on its own
        return assemble(msg, sigs[:1])
    if case == "duplicate":
        return codec.encode({**cbor2.loads(msg), "sig": codec.encode([list(sigs[0]), list(sigs[0])])})
    if case == "unknown-member":
        return assemble(msg, [sigs[0], (7, sigs[1][1])])
    if case == "bad-member-sig":
        bad = bytes([sigs[1][1][0] ^ 1]) + sigs[1][1][1:]
        return assemble(msg, [sigs[0], (1, bad)])
    if case == "malformed":
        return codec.encode({**cbor2.loads(msg), "sig": b"\x01\x02"})
    if case == "out-of-order":
        return codec.encode({**cbor2.loads(msg),
                             "sig": codec.encode([list(sigs[1]), list(sigs[0])])})
    if case == "single-key-alg":  # a member signs the envelope as if it were the committee
        fields = {**cbor2.loads(msg), "alg": keys[0].alg}
        m = signing_bytes(CHAIN, committee.address, 0, "bank/transfer", fields["body"], keys[0].alg)
        return codec.encode({**fields, "sig": keys[0].sign(m, TX_CONTEXT)})
    if case == "replaced-body":  # k valid signatures, then the body altered
        raw = assemble(msg, sigs[:2])
        obj = cbor2.loads(raw)
        obj["body"]["amount_micro"] = 999_999
        return codec.encode(obj)
    raise AssertionError(case)


CASES = [("one-node-alone", "committee-threshold"), ("duplicate", "duplicate-signer"),
         ("unknown-member", "unknown-member"), ("bad-member-sig", "bad-signature"),
         ("malformed", "committee-signature"), ("out-of-order", "committee-signature"),
         ("single-key-alg", "bad-signature"), ("replaced-body", "bad-signature")]


@pytest.mark.parametrize("case, rule", CASES)
def test_forged_committee_transactions_are_refused_in_execution(world, case, rule):
    app, users, keys, committee, _nodes = world
    raw = _forged(committee, keys, users, case)
    before = app.state.root()
    _, result = apply(app, [raw])
    r = result.receipts[0]
    assert not r.ok and r.rule == rule, r
    assert app.state.root() == before  # envelope failure: not even the nonce moved
    assert app.next_nonce(committee.address) == 0
    assert _balance(app, users[0].address) == 1_000_000


@pytest.mark.parametrize("case, rule", CASES)
def test_admission_refuses_the_same(world, case, rule):
    app, users, keys, committee, _nodes = world
    pool = Mempool(app)
    with pytest.raises(RejectedTx) as exc:
        pool.admit(_forged(committee, keys, users, case), 0.0)
    assert exc.value.rule == rule
    assert len(pool) == 0


def test_admission_accepts_a_valid_committee_transaction(world):
    app, users, _keys, committee, nodes = world
    pool = Mempool(app)
    raw = sign_tx(CommitteeSigner(committee, nodes), CHAIN, 0, "bank/transfer",
                  {"to": users[0].address, "amount_micro": 1})
    assert pool.admit(raw, 0.0).sender == committee.address
    assert pool.expected_nonce(committee.address) == 1


def test_committee_rotates_members_and_keeps_its_identity(world):
    app, users, keys, committee, nodes = world
    signer = CommitteeSigner(committee, nodes)
    replacement = sim_key(3, "dso-node", 9)
    new = committee_of(2, [keys[0], keys[1], replacement])
    raw = sign_tx(signer, CHAIN, 0, "registry/rotate_key",
                  {"alg": COMMITTEE_ALG, "pk": new.encode(), "pop": b""})
    _, result = apply(app, [raw])
    assert result.receipts[0].ok, result.receipts[0]
    # the old committee's node 2 no longer counts; the replacement does
    assert new.address != committee.address  # the descriptor changed, the identity did not
    msg = _pay(committee, 1, users[0].address, 3)
    old = assemble(msg, [member_signature(keys[0], committee, msg),
                         (1, member_signature(keys[2], committee, msg)[1])])
    _, result = apply(app, [old])
    assert result.receipts[0].rule == "bad-signature"
    good = assemble(msg, [member_signature(keys[0], new, msg),
                          member_signature(replacement, new, msg)])
    _, result = apply(app, [good])
    assert result.receipts[0].ok
    assert app.query(f"registry/committee/{committee.address.hex()}")["members"][2]["pk"] \
        == replacement.public_key.raw


def test_bad_descriptor_and_single_key_roles_are_refused(world, setup):
    app, users, keys, committee, nodes = world
    signer = CommitteeSigner(committee, nodes)
    bad = codec.encode({"members": [[keys[0].alg, keys[0].public_key.raw]], "threshold": 2})
    before = app.state.root()
    _, result = apply(app, [sign_tx(signer, CHAIN, 0, "registry/rotate_key",
                                    {"alg": COMMITTEE_ALG, "pk": bad, "pop": b""})])
    assert result.receipts[0].rule == "bad-committee"
    assert app.query(f"registry/participant/{committee.address.hex()}")["pk"] == committee.encode()
    assert app.state.root() != before  # the nonce is consumed, nothing else
    validator = setup[1][0]
    _, result = apply(app, [sign_tx(validator, CHAIN, 0, "registry/rotate_key",
                                    {"alg": COMMITTEE_ALG, "pk": committee.encode(), "pop": b""})])
    assert result.receipts[0].rule == "committee-role"
    assert app.signer(validator.address).alg == validator.alg


def test_genesis_checks_committees():
    keys = [sim_key(3, "dso-node", i) for i in range(3)]
    v = sim_key(3, "validator", 0)
    base = [{"alg": v.alg, "pk": v.public_key.raw, "roles": ["validator"], "name": "v"}]
    bad = {"alg": COMMITTEE_ALG, "pk": codec.encode({"members": [[k.alg, k.public_key.raw]
                                                                 for k in keys], "threshold": 4}),
           "roles": ["dso"], "name": "dso"}
    with pytest.raises(ConfigError, match="threshold"):
        Application(make_genesis(CHAIN, [*base, bad]))
    as_validator = genesis_entry(committee_of(2, keys), "dso", ["dso", "validator"])
    with pytest.raises(ConfigError, match="one key"):
        Application(make_genesis(CHAIN, [*base, as_validator]))


def test_descriptor_round_trip_and_signature_encoding():
    keys = [sim_key(3, "dso-node", i) for i in range(3)]
    c = committee_of(2, keys)
    assert parse_committee(c.encode()) == c
    assert cbor2.loads(encode_signatures([(2, b"b"), (0, b"a")])) == [[0, b"a"], [2, b"b"]]


def test_every_validator_checks_each_member_signature_itself(world, setup, monkeypatch):
    """Issue 17 (sixteenth session): two validators in one process — the demo runs two in
    its own and two in the validator host — each verify a committee transaction's member
    signatures; a process-wide memo of the members' checks let the second reuse the first's
    (every validator must verify every signature itself)."""
    from gridledger.ledger import committee as committee_mod

    app, users, dso_keys, committee, nodes = world
    raw = sign_tx(CommitteeSigner(committee, nodes), CHAIN, 0, "bank/transfer",
                  {"to": users[0].address, "amount_micro": 700})
    seen: list[bytes] = []
    real = committee_mod.verify_signature

    def counted(alg, pk, message, sig, context):  # type: ignore[no-untyped-def]
        seen.append(sig)
        return real(alg, pk, message, sig, context)

    monkeypatch.setattr(committee_mod, "verify_signature", counted)
    second = Application(setup[0])
    for validator in (app, second):
        _, result = apply(validator, [raw])
        assert result.receipts[0].ok, result.receipts[0]
    members = len(committee_mod.decode_signatures(decode_tx(raw).sig))
    assert members >= committee.threshold
    assert len(seen) == 2 * members and len(set(seen)) == members, seen
