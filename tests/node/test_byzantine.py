"""THREATS.md row 4: f Byzantine validators never finalise a wrong block; f+1 halt the chain."""

import pytest

from gridledger.ledger.block import Certificate, Header, verify_certificate
from gridledger.node.embedded import ChainHalted, EmbeddedNetwork
from gridledger.node.verify import verify_dir
from tests.conftest import make_chain


def _run(tmp_path, faults, n=4, blocks=3):
    chain = make_chain(n_validators=n)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, faults=faults)
    out = []
    try:
        for b in range(blocks):
            net.submit(chain.transfer(b % 6, (b + 1) % 6, 10), now_s=b)
            out += net.tick(900 * (b + 1))
    finally:
        roots = net.state_roots()
        net.close()
    return net, out, roots


@pytest.mark.parametrize("fault", ["wrong-root", "equivocate", "garbage"])
def test_f_byzantine_cannot_stop_or_corrupt(tmp_path, fault):
    net, blocks, roots = _run(tmp_path, {2: fault})
    assert len(blocks) == 3 and len(set(roots)) == 1
    for fb in blocks:
        # the certificate holds only honest votes for the true header, and names the offender
        assert 2 not in dict(fb.cert.votes)
        assert fb.header.hash == fb.cert.header_hash
        assert 2 in fb.offenders
    assert set(net.offenders) == {2}
    if fault == "equivocate":
        assert len(net.evidence) == 3 and all(e.validator == 2 for e in net.evidence)
        from gridledger.node.store import BlockStore

        kinds = {k for _, k, _ in BlockStore(tmp_path / "validator-0.sqlite").evidence()}
        assert "equivocation" in kinds
    assert all(r.ok for r in verify_dir(tmp_path))


def test_f_plus_one_byzantine_halt_rather_than_fork(tmp_path):
    chain = make_chain(n_validators=4)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path,
                          faults={1: "wrong-root", 3: "wrong-root"})
    net.submit(chain.transfer(0, 1, 10))
    with pytest.raises(ChainHalted, match="quorum"):
        net.tick(900)
    assert all(v.store.tip() == 0 for v in net.validators)  # nothing was finalised
    # with two liars and two honest validators, no header has 3 votes: who lied is
    # not decidable from votes alone, so nobody is named and nothing is final
    with pytest.raises(ChainHalted):
        net.tick(1800)
    net.close()


def test_certificate_needs_quorum_of_distinct_valid_votes(tmp_path):
    net, blocks, _ = _run(tmp_path, {}, blocks=1)
    fb = blocks[0]
    keys = [(k.alg, k.public_key.raw) for k in make_chain().validators]
    verify_certificate(fb.header, fb.cert, keys)
    two = Certificate(fb.cert.height, fb.cert.header_hash, fb.cert.votes[:2])
    with pytest.raises(Exception, match="quorum"):
        verify_certificate(fb.header, two, keys)
    dup = Certificate(fb.cert.height, fb.cert.header_hash, (fb.cert.votes[0],) * 3)
    with pytest.raises(Exception, match="twice"):
        verify_certificate(fb.header, dup, keys)
    other = Header(**{**fb.header.to_obj(), "state_root": bytes(32)})
    with pytest.raises(Exception, match="another header"):
        verify_certificate(other, fb.cert, keys)


def test_an_invalid_vote_is_blamed_on_its_source_never_on_the_index_it_claims():
    from gridledger.ledger.block import Vote, sign_vote
    from gridledger.node.embedded import VoteTally

    chain = make_chain()
    keys = [(k.alg, k.public_key.raw) for k in chain.validators]
    header = Header(chain.genesis.chain_id, 1, bytes(32), 0, bytes(32), bytes(32), bytes(32), bytes(32))
    # validator 1's real vote relabelled as validator 2's, and random bytes as validator 3's
    good = sign_vote(chain.validators[1], header, 1)
    relabelled = Vote(1, header.hash, 2, good.sig)
    garbage = Vote(1, header.hash, 3, b"\x00" * 3309)
    shared_log = VoteTally(4)
    for v in (relabelled, garbage, good):
        shared_log.add(v, keys)  # source unknown (the NATS VOTES stream)
    assert shared_log.offenders == {} and shared_log.unattributed == 2
    assert set(shared_log.voted) == {1}  # only the authentic vote counts
    direct = VoteTally(4)
    direct.add(garbage, keys, source=0)  # in process: validator 0 produced it
    assert direct.offenders == {0: "invalid vote signature"}
