"""docs/threat-model.md row 2: admission order, quotas, fair mempool."""

import cbor2
import pytest

from gridledger.errors import RejectedTx
from gridledger.ledger import codec
from gridledger.node.admission import QuotaPolicy
from gridledger.node.embedded import EmbeddedNetwork
from tests.conftest import make_chain


@pytest.fixture
def net(tmp_path):
    chain = make_chain(n_validators=1)
    n = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path,
                        quota=QuotaPolicy(rate_per_s=2.0, burst=5.0), mempool_capacity=40)
    yield chain, n
    n.close()


def test_admission_rejects_with_named_rules(net):
    chain, n = net
    with pytest.raises(RejectedTx, match="oversize"):
        n.submit(b"\x00" * 20_000)
    with pytest.raises(RejectedTx, match="malformed-encoding"):
        n.submit(b"\xff")
    obj = cbor2.loads(chain.transfer(0, 1, 1))
    obj["sig"] = obj["sig"][:100] + bytes([obj["sig"][100] ^ 1]) + obj["sig"][101:]
    with pytest.raises(RejectedTx, match="bad-signature"):
        n.submit(codec.encode(obj))
    chain.nonces.clear()
    n.submit(chain.transfer(0, 1, 1))
    with pytest.raises(RejectedTx, match="replayed-nonce"):
        n.submit(chain.transfer(0, 1, 1, nonce=0))
    with pytest.raises(RejectedTx, match="nonce-gap"):
        n.submit(chain.transfer(0, 1, 1, nonce=7))
    assert n.mempool.rejected["bad-signature"] == 1


def test_flood_is_capped_by_quota_and_honest_txs_all_clear(net):
    chain, n = net
    admitted = rejected = 0
    for _k in range(100 * 5):  # 100x the attacker's burst, all at t=0
        try:
            n.submit(chain.transfer(0, 1, 1), now_s=0.0)
            admitted += 1
        except RejectedTx as exc:
            assert exc.rule == "quota-exceeded"
            chain.nonces[chain.users[0].address] -= 1
            rejected += 1
    assert admitted == 5 and rejected == 495
    honest = [n.submit(chain.transfer(i, (i + 1) % 6, 1), now_s=0.0) for i in range(1, 6)]
    fbs = n.tick(900, max_txs=6)
    receipts = {r.tx_hash: r for fb in fbs for r in fb.result.receipts}
    # round-robin drain: every honest sender got a slot in the first block despite the flood
    assert all(receipts[t.id].ok for t in honest)
    # the quota refills with time
    n.submit(chain.transfer(0, 1, 1), now_s=10.0)


def test_full_mempool_evicts_the_heaviest_sender(tmp_path):
    chain = make_chain(n_validators=1)
    n = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path,
                        quota=QuotaPolicy(rate_per_s=1000, burst=1000), mempool_capacity=10)
    for _ in range(10):
        n.submit(chain.transfer(0, 1, 1))
    n.submit(chain.transfer(2, 1, 1))  # evicts user 0's newest
    assert len(n.mempool) == 10 and n.mempool.rejected["evicted"] == 1
    with pytest.raises(RejectedTx, match="mempool-full"):
        for _ in range(10):
            n.submit(chain.transfer(2, 1, 1))
    n.close()


@pytest.mark.parametrize("lane", [True, False])
def test_validators_go_first_and_a_flood_of_many_senders_cannot_keep_them_out(
        tmp_path, monkeypatch, lane):
    """A full mempool of many senders with one transaction each: a validator's transaction
    (a governance vote) still gets in, evicting a non-validator's, and is taken first
    whatever its address. ``lane=False``: the defence removed (no validator is known to the
    mempool) — the vote is refused ``mempool-full``."""
    from gridledger.node.admission import Mempool

    if not lane:
        monkeypatch.setattr(Mempool, "validator_addresses", lambda self: frozenset())
    chain = make_chain(n_validators=1, n_users=12)
    n = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path,
                        quota=QuotaPolicy(rate_per_s=1000, burst=1000), mempool_capacity=10)
    try:
        for i in range(10):
            n.submit(chain.transfer(i, (i + 1) % 12, 1))
        v = chain.validators[0]
        vote = chain.tx(v, "bank/transfer", {"to": chain.users[0].address, "amount_micro": 1})
        if not lane:
            with pytest.raises(RejectedTx, match="mempool-full"):
                n.submit(vote)
            return
        n.submit(vote)
        assert len(n.mempool) == 10 and n.mempool.rejected["evicted"] == 1
        assert min(u.address for u in chain.users[:10]) < v.address  # not first by address
        first = n.mempool.take(1)[0]
        assert first.sender == v.address
    finally:
        n.close()


def test_rejected_transactions_cost_reputation_and_quota(tmp_path):
    from gridledger.ledger.modules.reputation.keeper import reputation_of

    chain = make_chain(n_validators=1)
    n = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    who = chain.users[0].address
    before = reputation_of(n.entry.app.state, who)
    scale_before = n.mempool.quota.scale(who)
    for _ in range(20):  # authenticated but failing in execution: insufficient funds
        n.submit(chain.transfer(0, 1, 10**12))
    n.tick(900)
    after = reputation_of(n.entry.app.state, who)
    assert after < before and n.mempool.quota.scale(who) < scale_before
    n.close()


# -- one admission path (issue 18.3) and unknown algorithm names (issue 21.2) ----------------

from gridledger.crypto.sig import SigningKey  # noqa: E402
from gridledger.ledger.genesis import make_genesis  # noqa: E402
from gridledger.ledger.tx import TX_CONTEXT, signing_bytes  # noqa: E402
from gridledger.node.orderer import Entry  # noqa: E402
from gridledger.sim.keys import sim_key  # noqa: E402
from tests.conftest import CHAIN  # noqa: E402


def _receipts(fbs):
    return {r.tx_hash: r for fb in fbs for r in fb.result.receipts}


def test_unknown_kind_is_refused_at_admission_and_the_nonce_stays_usable(net):
    chain, n = net
    with pytest.raises(RejectedTx, match="unknown-kind"):
        n.submit(chain.tx(chain.users[0], "bank/mint", {"amount_micro": 10**9}))
    assert n.mempool.expected_nonce(chain.users[0].address) == 0
    ok = n.submit(chain.transfer(0, 1, 5, nonce=0))
    assert _receipts(n.tick(900))[ok.id].ok


@pytest.mark.parametrize("amount", [-2**64, 2**4000, 0, True, "5"])
def test_out_of_range_amounts_are_refused_at_admission_naming_the_rule(net, amount):
    chain, n = net
    with pytest.raises(RejectedTx) as err:
        n.submit(chain.tx(chain.users[0], "bank/transfer",
                          {"to": chain.users[1].address, "amount_micro": amount}))
    assert err.value.rule == "invalid-body" and "amount_micro" in err.value.detail
    assert len(err.value.detail) < 200  # a 4000-bit integer is not echoed
    assert len(n.mempool) == 0 and n.mempool.expected_nonce(chain.users[0].address) == 0


def test_mempool_nonce_view_returns_to_the_chain_after_an_envelope_failure(tmp_path):
    """A transaction admitted under the old key fails in execution as bad-signature once the
    same block rotated the key; its nonce is not consumed, and the mempool must not keep
    expecting the next one (the sender would be locked out for good)."""
    chain = make_chain(n_validators=1)
    n = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    user = chain.users[0]
    new = sim_key(5, "rotated", 0)
    rot = n.submit(chain.tx(user, "registry/rotate_key",
                            {"alg": new.alg, "pk": new.public_key.raw,
                             "pop": new.sign(user.address, b"gl/rotate")}))
    stale = n.submit(chain.transfer(0, 1, 5))  # nonce 1, old key: admitted
    assert n.mempool.expected_nonce(user.address) == 2
    got = _receipts(n.tick(900))
    assert got[rot.id].ok and got[stale.id].rule == "bad-signature"
    assert n.entry.app.next_nonce(user.address) == 1
    assert n.mempool.expected_nonce(user.address) == 1  # back to the chain's view
    body = {"to": chain.users[1].address, "amount_micro": 5}
    raw = codec.encode({"alg": new.alg, "body": body, "chain_id": CHAIN, "kind": "bank/transfer",
                        "nonce": 1, "sender": user.address,
                        "sig": new.sign(signing_bytes(CHAIN, user.address, 1, "bank/transfer",
                                                      body, new.alg), TX_CONTEXT)})
    fresh = n.submit(raw)
    assert _receipts(n.tick(1800))[fresh.id].ok
    n.close()


def _meter_network(tmp_path):
    vs = [sim_key(21, "validator", i) for i in range(4)]
    users = [sim_key(21, "user", i) for i in range(2)]
    meter = sim_key(21, "meter", 0, alg="ml-dsa-44")
    parts = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"v{i}"}
             for i, k in enumerate(vs)]
    parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "name": f"u{i}",
               "cp": f"cp{i}", "balance_micro": 1_000_000} for i, k in enumerate(users)]
    parts.append({"alg": meter.alg, "pk": meter.public_key.raw, "roles": ["meter"],
                  "name": "m0", "meter_of": "cp0"})
    genesis = make_genesis(CHAIN, parts)
    return EmbeddedNetwork(genesis, vs, tmp_path), users, meter


def _raw(key: SigningKey, nonce: int, kind: str, body: dict, alg: str | None = None) -> bytes:
    alg = alg or key.alg
    msg = signing_bytes(CHAIN, key.address, nonce, kind, body, alg)
    return codec.encode({"alg": alg, "body": body, "chain_id": CHAIN, "kind": kind,
                         "nonce": nonce, "sender": key.address, "sig": key.sign(msg, TX_CONTEXT)})


def test_unknown_algorithm_names_are_named_rejections_and_never_stop_blocks(tmp_path):
    """Issue 21.2, both vectors through the real path (admission, the ordered log, four
    validators executing and certifying): an unknown algorithm name inside a body (a
    meter's key rotation, an application) and in an envelope."""
    n, users, meter = _meter_network(tmp_path)
    fake = SigningKey.generate("ml-dsa-65")
    rotate = _raw(meter, 0, "registry/rotate_key",
                  {"alg": "ml-dsa-99", "pk": fake.public_key.raw,
                   "pop": fake.sign(meter.address, b"gl/rotate")})
    apply_ = _raw(users[0], 0, "registry/apply",
                  {"alg": "sphincs-x", "pk": fake.public_key.raw, "pop": b"p", "cp": "cp9",
                   "roles": ["prosumer"], "name": "x"})
    envelope = _raw(users[1], 0, "bank/transfer", {"to": users[0].address, "amount_micro": 1},
                    alg="ml-dsa-99")
    for raw in (rotate, apply_, envelope):  # refused at admission, naming the rule
        with pytest.raises(RejectedTx, match="unknown-algorithm"):
            n.submit(raw)
    # the same bytes ordered anyway (a Byzantine entry validator appends them to the log),
    # between honest transactions
    honest = n.submit(_raw(users[1], 0, "bank/transfer",
                           {"to": users[0].address, "amount_micro": 7}))
    for raw in (rotate, apply_, envelope):
        n.orderer.append(Entry("tx", tx=raw))
    fbs = n.tick(900)
    got = _receipts(fbs)
    assert got[honest.id].ok
    rules = sorted(r.rule for fb in fbs for r in fb.result.receipts if not r.ok)
    assert rules == ["unknown-algorithm"] * 3
    assert all(fb.cert.header_hash == fb.header.hash for fb in fbs)
    heights = [fb.header.height for fb in fbs]
    # the chain goes on, and the meter's nonce was consumed only by the body failure
    nxt = n.submit(_raw(users[1], 1, "bank/transfer", {"to": users[0].address, "amount_micro": 1}))
    later = n.tick(1800)
    assert _receipts(later)[nxt.id].ok and later[-1].header.height > max(heights)
    assert len({v.app.state.root() for v in n.validators}) == 1
    n.close()


def test_refilled_rate_buckets_are_forgotten_and_a_flooder_stays_limited(net):
    # issue 17: the mempool kept a rate bucket for every sender it ever saw (each
    # pseudonym and reading key: members x 96 x 2 a day). A bucket that refilled to its
    # burst equals a fresh one, so commits sweep those; a sender still limited keeps its own.
    from gridledger.node.admission import BUCKET_SWEEP_COMMITS

    chain, n = net
    users = chain.users
    for _ in range(5):  # sender 0 spends its whole burst at t=0
        n.submit(chain.transfer(0, 1, 1), now_s=0.0)
    for i in range(1, 6):
        n.submit(chain.transfer(i, (i + 1) % 6, 1), now_s=0.0)
    n.submit(chain.transfer(1, 2, 1), now_s=1.0)  # t=1: 2..5 refilled (4 + 2 >= 5), 0 not
    assert set(n.mempool._buckets) == {u.address for u in users[:6]}
    for k in range(BUCKET_SWEEP_COMMITS):
        n.tick(900 * (k + 1), max_txs=20)
    assert set(n.mempool._buckets) == {users[0].address, users[1].address}
    # the flooder's bucket was kept: 2 tokens at t=1, not a fresh burst of 5
    out = []
    for _ in range(3):
        try:
            n.submit(chain.transfer(0, 1, 1), now_s=1.0)
            out.append("ok")
        except RejectedTx as exc:
            chain.nonces[users[0].address] -= 1
            out.append(exc.rule)
    assert out == ["ok", "ok", "quota-exceeded"]
