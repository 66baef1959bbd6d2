"""The embedded network follows validator-set changes made by governance vote.

4 validators (one equivocating) vote in a 5th, which catches up and votes from the
activation height; then they vote the equivocator out: its votes stop counting, the
quorum becomes 3 of 4, the chain keeps finalising, and every store verifies from genesis.
"""

from __future__ import annotations

import pytest


from gridledger.ledger.block import sign_vote, verify_vote_signature
from gridledger.ledger.modules.governance.types import VALIDATOR_POP_CONTEXT, validator_pop_message
from gridledger.ledger.modules.registry.keeper import keys_hash
from gridledger.node.embedded import ChainHalted, EmbeddedNetwork
from gridledger.node.verify import verify_dir
from gridledger.sim.keys import sim_key
from tests.conftest import CHAIN, make_chain

ADD, REMOVE, VOTE = ("governance/propose_add_validator", "governance/propose_remove_validator",
                     "governance/vote_validator")


class Driver:
    def __init__(self, net: EmbeddedNetwork) -> None:
        self.net = net
        self.t = 0

    def block(self, *raws: bytes):
        for raw in raws:
            self.net.submit(raw, now_s=self.t)
        self.t += 900
        (fb,) = self.net.tick(self.t)
        return fb


def signers(fb, keys) -> set[int]:
    """Which of ``keys`` (alg, pk) signed a vote in ``fb``'s certificate (by key, not index)."""
    out = set()
    for _idx, sig in fb.cert.votes:
        for j, (alg, pk) in enumerate(keys):
            if verify_vote_signature(alg, pk, fb.header.chain_id, fb.cert.height, fb.cert.header_hash, sig):
                out.add(j)
    return out


def receipts_ok(fb) -> bool:
    return all(r.ok for r in fb.result.receipts)


def test_vote_in_a_fifth_then_vote_out_the_equivocator(tmp_path) -> None:
    chain = make_chain(n_validators=4)
    v = chain.validators
    new = sim_key(1, "validator", 4)
    allkeys = [(k.alg, k.public_key.raw) for k in v + [new]]
    net = EmbeddedNetwork(chain.genesis, v, tmp_path, faults={3: "equivocate"})
    d = Driver(net)
    try:
        # -- add validator 4 (quorum(4) = 3: the proposer and two votes) --------------
        pop = new.sign(validator_pop_message(CHAIN, "v4"), VALIDATOR_POP_CONTEXT)
        fb = d.block(chain.tx(v[0], ADD, {"alg": new.alg, "pk": new.public_key.raw,
                                          "name": "v4", "pop": pop}))
        assert receipts_ok(fb)
        v4 = net.add_validator(new)  # catches up from the entry validator's store
        assert v4.height == net.height == 1 and v4.vote_index() is None
        fb = d.block(chain.tx(v[1], VOTE, {"proposal": 1}), chain.tx(v[2], VOTE, {"proposal": 1}))
        assert receipts_ok(fb)
        passed = [e for r in fb.result.receipts for e in r.events
                  if e["type"] == "validator_proposal_passed"]
        assert passed and passed[0]["activation"] == fb.header.height + 2 == 4
        old_hash = fb.header.validator_set_hash
        fb3 = d.block()  # height 3: still the old set, which v4 is not in
        assert fb3.header.validator_set_hash == old_hash
        assert signers(fb3, allkeys) == {0, 1, 2} and 4 not in dict(fb3.cert.votes)
        assert [e["type"] for e in fb3.result.block_events if e["type"].startswith("validator")] == [
            "validator_set_changed"]
        # height 4: the new set of five (quorum 4). The equivocator's votes never count, so
        # a certificate exists only because v4 votes from its activation height.
        fb4 = d.block()
        assert fb4.header.validator_set_hash == keys_hash(allkeys) != old_hash
        assert signers(fb4, allkeys) == {0, 1, 2, 4} and 4 in dict(fb4.cert.votes)
        assert v4.vote_index() == 4 and fb4.offenders.get(3) == "equivocation"

        # -- vote out the equivocator, citing the evidence every honest node holds ------
        ev = next(e for e in net.evidence if e.validator == 3 and e.height == 4).to_obj()
        fb = d.block(chain.tx(v[0], REMOVE, {"validator": v[3].address, "evidence": {
            "height": ev["height"], "header_hashes": ev["header_hashes"], "sigs": ev["sigs"]}}))
        assert receipts_ok(fb)
        v4_nonce = {"nonce": 0}

        def v4_vote() -> bytes:
            from gridledger.ledger.tx import sign_tx

            raw = sign_tx(new, CHAIN, v4_nonce["nonce"], VOTE, {"proposal": 2})
            v4_nonce["nonce"] += 1
            return raw

        # quorum(5) = 4: the proposer, v1, v2 and the new validator
        fb = d.block(chain.tx(v[1], VOTE, {"proposal": 2}), chain.tx(v[2], VOTE, {"proposal": 2}),
                     v4_vote())
        assert receipts_ok(fb)
        activation = fb.header.height + 2
        fb = d.block()  # activation - 1: still five, still certified without validator 3
        assert signers(fb, allkeys) == {0, 1, 2, 4}
        after = [allkeys[i] for i in (0, 1, 2, 4)]
        fb = d.block()
        assert fb.header.height == activation
        assert fb.header.validator_set_hash == keys_hash(after)
        assert 3 not in signers(fb, allkeys) and not fb.offenders  # it no longer votes
        assert net.validators[3].vote_index() is None and v4.vote_index() == 3

        # -- removal is enforced: with validator 1 offline, 3 of the remaining 4 finalise,
        # and the removed validator, still voting under its old index, is not counted.
        # Without enforcement the set would still be five (quorum 4) and this would halt,
        # or the removed key's vote would be in the certificate.
        net.validators[1].fault = "silent"
        removed = net.validators[3]
        removed.votes = lambda header: [sign_vote(removed.key, header, 3)]  # type: ignore[method-assign]
        for _ in range(2):
            fb = d.block(chain.transfer(0, 1, 5))
            assert receipts_ok(fb)
            assert signers(fb, allkeys) == {0, 2, 4}
            assert sorted(i for i, _ in fb.cert.votes) == [0, 2, 3]  # v4 is index 3 now
        # two offline of four: no quorum, whatever the removed validator signs
        net.validators[2].fault = "silent"
        net.submit(chain.transfer(1, 2, 5), now_s=d.t)
        with pytest.raises(ChainHalted):
            net.tick(d.t + 900)
        roots = {r for r in net.state_roots()}
        assert len(roots) == 1  # the removed validator and the new one follow the same chain
    finally:
        net.close()
    reports = verify_dir(tmp_path)
    assert len(reports) == 5 and all(r.ok for r in reports), [(r.path.name, r.reason) for r in reports]
    assert {r.blocks for r in reports} == {d.t // 900}

    # a restart with the five keys restores every store across the set changes
    net = EmbeddedNetwork(chain.genesis, v + [new], tmp_path)
    try:
        assert len({x.app.last_hash for x in net.validators}) == 1
        assert [x.vote_index() for x in net.validators] == [0, 1, 2, None, 3]
        fb = Driver(net)
        fb.t = d.t + 900
        assert signers(fb.block(), allkeys) == {0, 1, 2, 4}
    finally:
        net.close()


def test_certificate_with_a_removed_validators_vote_fails_verify_chain(tmp_path) -> None:
    """A store whose certificate counts a vote of a validator that was voted out is refused
    by verify-chain (and by catch-up, which uses the same per-height set)."""
    import sqlite3

    from gridledger.ledger.block import Certificate, Header
    from gridledger.node.store import BlockStore

    chain = make_chain(n_validators=5)
    v = chain.validators
    net = EmbeddedNetwork(chain.genesis, v, tmp_path)
    d = Driver(net)
    try:
        d.block(chain.tx(v[0], REMOVE, {"validator": v[4].address}))
        d.block(*[chain.tx(v[i], VOTE, {"proposal": 1}) for i in (1, 2, 3)])
        d.block()
        fb = d.block()  # certified by {v0..v3}: quorum(4) = 3
        h = fb.header.height
    finally:
        net.close()
    store_path = tmp_path / "validator-0.sqlite"
    st = BlockStore(store_path)
    header = Header.decode(st.block(h).header)
    st.close()
    # forge: two honest votes plus the removed validator's, under its old index 4
    votes = [(i, sign_vote(v[i], header, i).sig) for i in (0, 1)]
    votes.append((4, sign_vote(v[4], header, 4).sig))
    forged = Certificate(h, header.hash, tuple(votes))
    db = sqlite3.connect(store_path)
    db.execute("UPDATE blocks SET cert = ? WHERE height = ?", (forged.encode(), h))
    db.commit()
    db.close()
    (rep,) = [r for r in verify_dir(tmp_path) if r.path == store_path]
    assert rep.bad_height == h and "certificate" in rep.reason
    assert all(r.ok for r in verify_dir(tmp_path) if r.path != store_path)
