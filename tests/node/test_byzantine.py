"""docs/threat-model.md row 4: f Byzantine validators never finalise a wrong block; f+1 halt the chain."""

import dataclasses

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
    from gridledger.node.votes import VoteTally

    chain = make_chain()
    cid = chain.genesis.chain_id
    keys = [(k.alg, k.public_key.raw) for k in chain.validators]
    header = Header(cid, 1, bytes(32), 0, bytes(32), bytes(32), bytes(32), bytes(32))
    # validator 1's real vote relabelled as validator 2's, and random bytes as validator 3's
    good = sign_vote(chain.validators[1], header, 1)
    relabelled = Vote(cid, 1, header.hash, 2, good.sig)
    garbage = Vote(cid, 1, header.hash, 3, b"\x00" * 3309)
    shared_log = VoteTally(4, cid, 1)
    for v in (relabelled, garbage, good):
        shared_log.add(v, keys)  # source unknown (the NATS VOTES stream)
    assert shared_log.offenders == {} and shared_log.unattributed == 2
    assert set(shared_log.voted) == {1}  # only the authentic vote counts
    direct = VoteTally(4, cid, 1)
    direct.add(garbage, keys, source=0)  # in process: validator 0 produced it
    assert direct.offenders == {0: "invalid vote signature"}


def test_votes_relabelled_to_another_height_neither_certify_nor_frame():
    """Issue 21.1: height H-1 votes relabelled as height H used to verify (the signature
    covered only the header hash): a quorum of them certified the old header at H, or, next
    to the honest votes for H, made every honest validator look like an equivocator."""
    from gridledger.ledger.block import Vote, sign_vote
    from gridledger.node.votes import VoteTally

    chain = make_chain()
    cid = chain.genesis.chain_id
    keys = [(k.alg, k.public_key.raw) for k in chain.validators]
    old = Header(cid, 1, bytes(32), 0, bytes(32), b"\x01" * 32, bytes(32), bytes(32))
    new = Header(cid, 2, old.hash, 1, bytes(32), b"\x02" * 32, bytes(32), bytes(32))
    tally = VoteTally(4, cid, 2)
    for i in range(4):  # the relabelled copies arrive first
        real_old = sign_vote(chain.validators[i], old, i)
        tally.add(Vote(cid, 2, old.hash, i, real_old.sig), keys)
        tally.add(Vote(cid, 2, old.hash, i, real_old.sig), keys, source=3)
    for i in range(3):
        tally.add(sign_vote(chain.validators[i], new, i), keys)
    cert = tally.certificate()
    assert cert is not None and cert.header_hash == new.hash
    assert tally.evidence == [] and set(tally.offenders) == {3}  # only the relabeller, in process
    assert tally.offenders[3] == "invalid vote signature"
    # a vote for another chain or height is not counted at this one
    other = sign_vote(chain.validators[0], dataclasses.replace(new, chain_id="other"), 0)
    t2 = VoteTally(4, cid, 2)
    t2.add(other, keys, source=0)
    assert t2.offenders == {0: "vote for another height or chain"} and not t2.voted


@pytest.mark.parametrize("fault", ["relabel", "forge-tick", "far-future",
                                   "relabel,forge-tick,far-future"])
@pytest.mark.parametrize("who", [0, 3])
def test_one_byzantine_validator_neither_halts_nor_frames(tmp_path, fault, who):
    """Issue 21.1 through the embedded network: relabelled votes, forged ticks (a century
    ahead, in another validator's name, for another chain), and far-future votes."""
    net, blocks, roots = _run(tmp_path, {who: fault}, blocks=4)
    assert len(blocks) == 4 and len(set(roots)) == 1
    # time is the honest validators' time: 900 s per tick, never a century ahead
    assert [fb.header.slot_time for fb in blocks] == [900, 1800, 2700, 3600]
    assert net.evidence == []  # nobody framed as an equivocator
    honest_named = set(net.offenders) - {who}
    assert not honest_named, net.offenders
    # in process, the node that sent bad votes or ticks is known; on a shared stream
    # nothing it sends names anyone (tests/integration)
    assert set(net.offenders) == {who}
    if "forge-tick" in fault:
        assert any("tick" in why for why in net.offenders[who]), net.offenders
    assert all(r.ok for r in verify_dir(tmp_path))


def test_without_height_in_the_vote_signature_relabelling_frames_honest_validators(tmp_path, monkeypatch):
    """Removal test: sign the header hash alone (the old format) and the relabeller's
    copies of the previous certificate verify: every honest validator is recorded as an
    equivocator, or the old header is certified at the new height."""
    import gridledger.ledger.block as block

    monkeypatch.setattr(block, "vote_message", lambda chain_id, height, header_hash: header_hash)
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, faults={3: "relabel"})
    try:
        net.submit(chain.transfer(0, 1, 10))
        net.tick(900)  # height 1: nothing to relabel yet
        net.submit(chain.transfer(1, 2, 10))
        with pytest.raises(ChainHalted):
            net.tick(1800)  # height 2: the chain halts ...
        # ... and the honest validators stand accused of equivocation, with "evidence"
        assert {0, 1, 2} <= {e.validator for e in net.evidence}
        assert all("equivocation" in net.offenders[i] for i in (0, 1, 2))
    finally:
        net.close()


def test_without_the_quorum_rule_one_forged_tick_moves_time_a_century(tmp_path, monkeypatch):
    """Removal test: take time from any single validator's tick (f = 0 in the clock) and a
    forging validator moves the chain's time a century ahead."""
    import gridledger.node.ticks as ticks

    monkeypatch.setattr(ticks, "max_faulty", lambda n: 0)
    net, blocks, _ = _run(tmp_path, {0: "forge-tick"}, blocks=2)
    assert max(fb.header.slot_time for fb in blocks) > 50 * 365 * 86_400
