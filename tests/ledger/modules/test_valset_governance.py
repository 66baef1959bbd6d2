"""Validator-set changes by governance vote: propose, vote, quorum, expiry, activation."""

from __future__ import annotations

import pytest

from gridledger.crypto.sig import SigningKey
from gridledger.errors import InvariantViolation
from gridledger.ledger.app import Application
from gridledger.ledger.block import VOTE_CONTEXT, Header, vote_message
from gridledger.ledger.execute import NONCE, run_invariants
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.modules.governance.keeper import open_ids, proposal
from gridledger.ledger.modules.governance.types import (
    VALIDATOR_POP_CONTEXT,
    validator_pop_message,
)
from gridledger.ledger.modules.registry import get_participant, validator_set
from gridledger.ledger.modules.registry.keeper import keys_hash, set_validators
from gridledger.ledger.tx import sign_tx
from gridledger.sim.keys import sim_key
from tests.conftest import CHAIN, apply

ADD, REMOVE, VOTE = ("governance/propose_add_validator", "governance/propose_remove_validator",
                     "governance/vote_validator")


class Net:
    """An Application with ``n`` validators and two users; every block runs every invariant."""

    def __init__(self, n: int = 4, **params: int) -> None:
        self.v = [sim_key(3, "validator", i) for i in range(n)]
        self.u = [sim_key(3, "user", i) for i in range(2)]
        parts = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"v{i}"}
                 for i, k in enumerate(self.v)]
        parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "name": f"u{i}",
                   "cp": f"cp{i}", "balance_micro": 1_000} for i, k in enumerate(self.u)]
        self.app = Application(make_genesis(CHAIN, parts, params))
        self.nonces: dict[bytes, int] = {}

    def tx(self, key: SigningKey, kind: str, body: dict) -> bytes:
        n = self.nonces.get(key.address, 0)
        self.nonces[key.address] = n + 1
        return sign_tx(key, CHAIN, n, kind, body)

    def block(self, *txs: bytes):
        return apply(self.app, list(txs))

    def one(self, key: SigningKey, kind: str, body: dict):
        """One transaction in its own block; returns (receipt, header, block result)."""
        header, result = self.block(self.tx(key, kind, body))
        return result.receipts[0], header, result

    def keys(self) -> list[tuple[str, bytes]]:
        return self.app.validator_keys()


def join_body(key: SigningKey, name: str = "v-new", chain: str = CHAIN,
              signer: SigningKey | None = None) -> dict:
    pop = (signer or key).sign(validator_pop_message(chain, name), VALIDATOR_POP_CONTEXT)
    return {"alg": key.alg, "pk": key.public_key.raw, "name": name, "pop": pop}


def events(result, type_: str) -> list[dict]:
    out = [e for r in result.receipts for e in r.events if e["type"] == type_]
    return out + [e for e in result.block_events if e["type"] == type_]


def failed(receipt, rule: str, detail_prefix: str) -> None:
    assert not receipt.ok, receipt
    assert receipt.rule == rule and receipt.detail.startswith(detail_prefix), receipt


def gov_state(app: Application) -> list[tuple[bytes, bytes]]:
    """Everything but nonces and reputation: by design a body failure consumes the sender's
    nonce and (for non-validators) costs reputation; nothing else may change."""
    return [(k, v) for k, v in app.state.snapshot_items()
            if not k.startswith(NONCE) and not k.startswith(b"rep/")]


def test_add_passes_at_quorum_and_activates_at_the_height_after_next() -> None:
    net = Net(4)
    new = sim_key(3, "new-validator", 0)
    old_hash = keys_hash(net.keys())
    r, h1, res = net.one(net.v[0], ADD, join_body(new))
    assert r.ok
    (ev,) = events(res, "validator_proposed")
    assert ev["proposal"] == 1 and ev["validator"] == new.address and ev["needed"] == 3
    r, _, res = net.one(net.v[1], VOTE, {"proposal": 1})
    assert r.ok and events(res, "validator_vote")[0]["votes"] == 2
    r, h3, res = net.one(net.v[2], VOTE, {"proposal": 1})
    assert r.ok
    (passed,) = events(res, "validator_proposal_passed")
    assert passed["activation"] == h3.height + 2 == 5
    assert len(net.keys()) == 4  # passing changes nothing yet
    # block 4 (activation - 1) is still certified by the old set; it applies the change
    header, result = net.app.finalize_block([], net.app.slot_time + 900)
    assert header.validator_set_hash == old_hash and len(net.app.validator_keys()) == 4
    net.app.commit()
    run_invariants(net.app.state, net.app.modules)
    (changed,) = events(result, "validator_set_changed")
    assert changed["activation"] == 5 and changed["validators"] == 5
    # block 5 is the first certified by the new set, and its header says so
    assert net.keys()[-1] == (new.alg, new.public_key.raw)
    h5, _ = net.block()
    assert h5.validator_set_hash == keys_hash(net.keys()) != old_hash
    rec = get_participant(net.app.state, new.address)
    assert rec is not None and rec["roles"] == ["validator"] and rec["name"] == "v-new"
    assert proposal(net.app.state, 1).status == "applied" and open_ids(net.app.state) == []
    # the new validator can now vote on governance itself
    net.nonces[new.address] = 0
    r, _, _ = net.one(new, REMOVE, {"validator": net.v[3].address})
    assert r.ok


def test_without_quorum_nothing_happens_and_the_proposal_expires() -> None:
    net = Net(4, valset_vote_expiry_blocks=3)
    new = sim_key(3, "new-validator", 1)
    r, h, _ = net.one(net.v[0], ADD, join_body(new))
    assert r.ok and proposal(net.app.state, 1).expires == h.height + 3 == 4
    assert net.one(net.v[1], VOTE, {"proposal": 1})[0].ok       # height 2: 2 of 3 needed
    net.block()                                                  # height 3
    header, result = net.block()                                 # height 4: expiry
    assert [e["proposal"] for e in events(result, "validator_proposal_expired")] == [1]
    r, _, _ = net.one(net.v[2], VOTE, {"proposal": 1})           # height 5
    failed(r, "proposal-expired", "")
    assert len(net.keys()) == 4 and get_participant(net.app.state, new.address) is None
    # after expiry the same key may be proposed again
    assert net.one(net.v[3], ADD, join_body(new))[0].ok


def test_double_vote_and_proposer_revote_are_rejected() -> None:
    net = Net(7)  # quorum(7) = 5: room for several votes before passing
    new = sim_key(3, "new-validator", 2)
    assert net.one(net.v[0], ADD, join_body(new))[0].ok
    failed(net.one(net.v[0], VOTE, {"proposal": 1})[0], "already-voted", "")
    assert net.one(net.v[1], VOTE, {"proposal": 1})[0].ok
    before = gov_state(net.app)
    failed(net.one(net.v[1], VOTE, {"proposal": 1})[0], "already-voted", "")
    assert gov_state(net.app) == before
    # two votes for one proposal in one block: the second is refused
    _, res = net.block(net.tx(net.v[2], VOTE, {"proposal": 1}), net.tx(net.v[2], VOTE, {"proposal": 1}))
    assert res.receipts[0].ok and res.receipts[1].rule == "already-voted"
    assert list(proposal(net.app.state, 1).votes) == sorted(k.address for k in net.v[:3])


def test_non_validators_cannot_propose_or_vote() -> None:
    net = Net(4)
    new = sim_key(3, "new-validator", 3)
    before = gov_state(net.app)
    failed(net.one(net.u[0], ADD, join_body(new))[0], "not-validator", "")
    failed(net.one(net.u[0], REMOVE, {"validator": net.v[0].address})[0], "not-validator",
           "")
    assert gov_state(net.app) == before
    assert net.one(net.v[0], ADD, join_body(new))[0].ok
    failed(net.one(net.u[1], VOTE, {"proposal": 1})[0], "not-validator", "")
    assert list(proposal(net.app.state, 1).votes) == [net.v[0].address]


def test_removal_below_the_minimum_is_refused() -> None:
    net = Net(4)  # default min_validators = 4: a 4-validator chain cannot shrink
    before = gov_state(net.app)
    r, _, _ = net.one(net.v[0], REMOVE, {"validator": net.v[3].address})
    failed(r, "min-validators", "")
    assert gov_state(net.app) == before
    solo = Net(1, min_validators=1)
    failed(solo.one(solo.v[0], REMOVE, {"validator": solo.v[0].address})[0], "last-validator",
           "")
    # two removals that each leave enough, but not together: the second cannot pass
    five = Net(6, min_validators=5)
    assert five.one(five.v[0], REMOVE, {"validator": five.v[5].address})[0].ok
    for i in (1, 2, 3):
        assert five.one(five.v[i], VOTE, {"proposal": 1})[0].ok
    assert proposal(five.app.state, 1).status == "passed"
    failed(five.one(five.v[0], REMOVE, {"validator": five.v[4].address})[0], "min-validators",
           "")


def test_proof_of_possession_must_be_the_new_keys_for_this_chain_and_name() -> None:
    net = Net(4)
    new, other = sim_key(3, "new-validator", 4), sim_key(3, "intruder", 0)
    before = gov_state(net.app)
    for body in (join_body(new, signer=other),                    # someone else's signature
                 join_body(new, chain="other-chain"),             # replayed from another chain
                 {**join_body(new, name="a"), "name": "b"}):      # renamed after signing
        failed(net.one(net.v[0], ADD, body)[0], "validator-pop", "")
    # a vote or a tx signature is no proof of possession (FIPS 204 context differs)
    tx_sig = new.sign(validator_pop_message(CHAIN, "v-new"), b"gl/tx")
    failed(net.one(net.v[0], ADD, {**join_body(new), "pop": tx_sig})[0], "validator-pop", "")
    failed(net.one(net.v[0], ADD, {**join_body(new), "alg": "ed25519"})[0], "classical-key", "")
    assert gov_state(net.app) == before


def test_duplicates_are_refused() -> None:
    net = Net(4)
    new = sim_key(3, "new-validator", 5)
    failed(net.one(net.v[0], ADD, join_body(net.v[1], name="again"))[0], "validator-exists",
           "")
    assert net.one(net.v[0], ADD, join_body(new))[0].ok
    failed(net.one(net.v[1], ADD, join_body(new, name="twice"))[0], "proposal-exists",
           "")
    # a user's key (registered as a prosumer) rotated away from: its address is taken
    rotated = sim_key(3, "rotated", 0)
    pop = rotated.sign(net.u[0].address, b"gl/rotate")
    assert net.one(net.u[0], "registry/rotate_key",
                   {"alg": rotated.alg, "pk": rotated.public_key.raw, "pop": pop})[0].ok
    failed(net.one(net.v[2], ADD, join_body(net.u[0]))[0], "key-registered", "")
    # a validator cannot rotate to another validator's key
    pop = net.v[1].sign(net.v[0].address, b"gl/rotate")
    failed(net.one(net.v[0], "registry/rotate_key",
                   {"alg": net.v[1].alg, "pk": net.v[1].public_key.raw, "pop": pop})[0],
           "validator-exists", "")


def test_unknown_closed_and_malformed() -> None:
    net = Net(1, min_validators=1)
    failed(net.one(net.v[0], VOTE, {"proposal": 9})[0], "unknown-proposal", "")
    failed(net.one(net.v[0], VOTE, {"proposal": "1"})[0], "invalid-body", "field 'proposal'")
    failed(net.one(net.v[0], REMOVE, {"validator": net.u[0].address})[0], "unknown-validator",
           "")
    new = sim_key(3, "new-validator", 6)
    r, h, res = net.one(net.v[0], ADD, join_body(new))  # one validator: its proposal passes
    assert r.ok and events(res, "validator_proposal_passed")[0]["activation"] == h.height + 2
    failed(net.one(net.v[0], VOTE, {"proposal": 1})[0], "proposal-closed", "")
    assert len(net.keys()) == 2  # applied at the end of that block


def _pass_removal(net: Net, target: int, voters: list[int], evidence: dict | None = None):
    body = {"validator": net.v[target].address}
    if evidence is not None:
        body["evidence"] = evidence
    r, _, _ = net.one(net.v[voters[0]], REMOVE, body)
    assert r.ok, r
    pid = max(open_ids(net.app.state))
    for i in voters[1:]:
        r, h, res = net.one(net.v[i], VOTE, {"proposal": pid})
        assert r.ok, r
    return pid, h, res


def test_removal_with_equivocation_evidence_and_the_removed_validator_loses_its_vote() -> None:
    net = Net(5)  # quorum(5) = 4
    bad = net.v[4]
    h1 = Header(CHAIN, 7, bytes(32), 0, bytes(32), bytes(32), bytes(32), bytes(32))
    h2 = Header(CHAIN, 7, bytes(32), 0, bytes(32), b"\x01" * 32, bytes(32), bytes(32))
    def vote(key, h: Header) -> bytes:
        return key.sign(vote_message(CHAIN, h.height, h.hash), VOTE_CONTEXT)

    ev = {"height": 7, "header_hashes": [h1.hash, h2.hash], "sigs": [vote(bad, h1), vote(bad, h2)]}
    forged = {**ev, "sigs": [ev["sigs"][0], vote(net.v[0], h2)]}
    failed(net.one(net.v[0], REMOVE, {"validator": bad.address, "evidence": forged})[0],
           "bad-evidence", "")
    # framing an honest validator: its real votes at heights 6 and 7, relabelled as two
    # votes at height 7, do not verify (the height is inside the signed bytes) ...
    h6 = Header(CHAIN, 6, bytes(32), 0, bytes(32), b"\x06" * 32, bytes(32), bytes(32))
    framed = {"height": 7, "header_hashes": [h6.hash, h1.hash], "sigs": [vote(net.v[3], h6), vote(net.v[3], h1)]}
    failed(net.one(net.v[0], REMOVE, {"validator": net.v[3].address, "evidence": framed})[0],
           "bad-evidence", "")
    # ... nor do bare signatures over header hashes (the old vote format), nor another chain's votes
    bare = {**ev, "sigs": [bad.sign(h1.hash, VOTE_CONTEXT), bad.sign(h2.hash, VOTE_CONTEXT)]}
    failed(net.one(net.v[0], REMOVE, {"validator": bad.address, "evidence": bare})[0],
           "bad-evidence", "")
    other = {**ev, "sigs": [bad.sign(vote_message("other-chain", 7, h.hash), VOTE_CONTEXT) for h in (h1, h2)]}
    failed(net.one(net.v[0], REMOVE, {"validator": bad.address, "evidence": other})[0],
           "bad-evidence", "")
    failed(net.one(net.v[0], REMOVE, {"validator": bad.address,
                                      "evidence": {**ev, "header_hashes": [h1.hash, h1.hash]}})[0],
           "bad-evidence", "")
    # an open proposal to add someone, which the offender supports
    new = sim_key(3, "new-validator", 7)
    assert net.one(bad, ADD, join_body(new))[0].ok
    pid, h, res = _pass_removal(net, 4, [0, 1, 2, 3], ev)
    assert proposal(net.app.state, pid).evidence.height == 7
    assert events(res, "validator_proposal_passed")[0]["activation"] == h.height + 2
    _, result = net.block()
    assert events(result, "validator_set_changed")[0]["validators"] == 4
    assert bad.address not in validator_set(net.app.state)
    assert (bad.alg, bad.public_key.raw) not in net.keys()
    rec = get_participant(net.app.state, bad.address)
    assert rec is not None and "validator" not in rec["roles"]  # still a participant
    # it can no longer propose or vote, and its earlier vote no longer counts
    failed(net.one(bad, VOTE, {"proposal": 1})[0], "not-validator", "")
    r, _, res = net.one(net.v[0], VOTE, {"proposal": 1})
    assert r.ok and events(res, "validator_vote")[0]["votes"] == 1  # bad's vote dropped
    assert events(res, "validator_vote")[0]["needed"] == 3
    assert proposal(net.app.state, 1).status == "open"


def test_pending_block_is_certified_by_the_parent_set() -> None:
    net = Net(1, min_validators=1)
    new = sim_key(3, "new-validator", 8)
    header, _ = net.app.finalize_block([net.tx(net.v[0], ADD, join_body(new))], 900)
    assert len(net.app.validator_keys()) == 1  # passing in this block changes nothing yet
    net.app.commit()
    header, _ = net.app.finalize_block([], 1800)  # applies the change in state ...
    assert len(net.app.validator_keys()) == 1     # ... but this block's set is the old one
    assert header.validator_set_hash == keys_hash([(net.v[0].alg, net.v[0].public_key.raw)])
    assert net.app.vote_index(new.alg, new.public_key.raw) is None
    net.app.commit()
    assert len(net.app.validator_keys()) == 2
    assert net.app.vote_index(new.alg, new.public_key.raw) == 1
    view = net.app.query("validators")
    assert [m["name"] for m in view["validators"]] == ["v0", "v-new"] and view["quorum"] == 2


def test_validator_set_invariant() -> None:
    net = Net(4)
    set_validators(net.app.state, [net.v[0].address, net.v[0].address])
    with pytest.raises(InvariantViolation, match="validator-set"):
        run_invariants(net.app.state, net.app.modules)
    set_validators(net.app.state, [net.v[0].address, net.u[0].address])
    with pytest.raises(InvariantViolation, match="validator-set"):
        run_invariants(net.app.state, net.app.modules)
    set_validators(net.app.state, [])
    with pytest.raises(InvariantViolation, match="validator-set"):
        run_invariants(net.app.state, net.app.modules)
