"""A certificate proof across a change of the validator set, with the CLI alone.

Four validators vote in a fifth; the tip is certified by the new set, which the genesis does
not name. ``prove`` adds the handoff (the last block the old set certified, with the new set
proven in its state); ``verify`` follows it from the genesis validators. Without the
handoff, or with the new set's record altered, the proof is refused: keys the genesis does
not lead to never certify a certificate.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gridledger.certificates import BundleProof, check_proof
from gridledger.cli.main import app as cli
from gridledger.ledger.modules.governance.types import VALIDATOR_POP_CONTEXT, validator_pop_message
from gridledger.ledger.valset import keys_hash
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.sim.keys import sim_key
from tests.conftest import CHAIN, make_chain

ADD, VOTE = "governance/propose_add_validator", "governance/vote_validator"


def test_proof_follows_a_validator_set_change(tmp_path: Path) -> None:
    chain = make_chain(n_validators=4)
    v = chain.validators
    new = sim_key(1, "validator", 4)
    net = EmbeddedNetwork(chain.genesis, v, tmp_path / "net")
    t = 0

    def block(*raws: bytes) -> None:
        nonlocal t
        for raw in raws:
            net.submit(raw, now_s=t)
        t += 900
        net.tick(t)

    try:
        pop = new.sign(validator_pop_message(CHAIN, "v4"), VALIDATOR_POP_CONTEXT)
        block(chain.tx(v[0], ADD, {"alg": new.alg, "pk": new.public_key.raw, "name": "v4",
                                   "pop": pop}))
        block(chain.tx(v[1], VOTE, {"proposal": 1}), chain.tx(v[2], VOTE, {"proposal": 1}))
        for _ in range(3):
            block(chain.transfer(0, 1, 5))
        five = [(k.alg, k.public_key.raw) for k in [*v, new]]
        assert net.validators[0].app.validator_keys() == five
    finally:
        net.close()
    runner = CliRunner()
    out = tmp_path / "proof.json"
    res = runner.invoke(cli, ["certificates", "prove", str(tmp_path / "net"), "1:1",
                              "--out", str(out)])
    assert res.exit_code == 0 and "absence" in res.output, res.output
    d = json.loads(out.read_text())
    assert len(d["handoffs"]) == 1 and keys_hash([(a, bytes.fromhex(pk)) for a, pk in
                                                  d["validator_keys"]]) == keys_hash(five)
    res = runner.invoke(cli, ["certificates", "verify", str(out)])
    assert res.exit_code == 0 and "through 1 certified change" in res.output, res.output
    assert "no bundle 1:1" in res.output

    # the handoff left out: the tip's keys are not the genesis validators
    bare = check_proof(BundleProof.from_json({**d, "handoffs": []}))
    assert not bare.ok and any("neither the genesis" in f for f in bare.failures), bare.failures
    # the new set's record altered (a key the old set never voted in): the proof fails
    h = d["handoffs"][0]
    forged = {**h, "participants": [{**h["participants"][-1],
                                     "value": h["participants"][-1]["value"][:-4] + "0000"},
                                    *h["participants"][:-1]]}
    bad = check_proof(BundleProof.from_json({**d, "handoffs": [forged]}))
    assert not bad.ok and any("handoff 0" in f for f in bad.failures), bad.failures
    # a handoff certified by keys other than the genesis set
    other = check_proof(BundleProof.from_json({**d, "handoffs": [
        {**h, "certificate": d["certificate"]}]}))
    assert not other.ok, other.failures
