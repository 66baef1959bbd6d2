"""THREATS.md row 2: admission order, quotas, fair mempool."""

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
    for k in range(100 * 5):  # 100x the attacker's burst, all at t=0
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
