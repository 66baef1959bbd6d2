"""The relays' registrations of an epoch are signed on the pool a batch at a time while the
rest of their bodies are made (issue 17, fifteenth session): the same transactions as one
batch — each relay's in turn, its nonces consecutive after the certificate, the leaves in
the batch's order, every pseudonym registered — whatever the batch size."""

from __future__ import annotations

import pytest

from gridledger.ledger.tx import decode_tx
from gridledger.sim.engine import Engine
from gridledger.sim.features import privacy as privacy_feature
from gridledger.sim.features.privacy import RELAYS, PrivacyMode
from gridledger.sim.scenario import Scenario, check_scenario


@pytest.mark.parametrize("batch", [1, 5, 96])
def test_registrations_signed_in_batches_are_one_batchs(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(privacy_feature, "REGISTER_SIGN_TXS", batch)
    sc = Scenario(participants=6, slots=4, validators=1, seed=7, start_slot_of_day=40,
                  privacy=True)
    eng = Engine(sc, check_scenario(sc), tmp_path)
    try:
        ctx = eng.ctx
        pm = next(f for f in eng.features if isinstance(f, PrivacyMode))
        relays = [t.signing_key.address for t in pm.keys.trustee_keys[:RELAYS]]
        txs = [decode_tx(raw) for h in range(1, ctx.net.height + 1)
               for raw in ctx.net.entry.store.block(h).tx_list()]
        certify = next(t for t in txs if t.kind == "privacy/certify")
        # in the order they were made (a block orders them its own way): by their first leaf
        regs = sorted((t for t in txs if t.kind == "privacy/register"),
                      key=lambda t: t.body["leaves"][0]["index"])
        assert len(regs) > batch or batch == 96
        assert [t.sender for t in regs] == [relays[k % RELAYS] for k in range(len(regs))]
        for r in relays:
            nonces = [t.nonce for t in regs if t.sender == r]
            start = certify.nonce + 1 if r == certify.sender else nonces[0]
            assert nonces == list(range(start, start + len(nonces)))
        leaves = [leaf for t in regs for leaf in t.body["leaves"]]
        assert [leaf["index"] for leaf in leaves] == list(range(len(leaves)))
        issued = pm.epochs[min(pm.epochs)].held
        assert len(leaves) == len(issued) == 6 * 4
        assert all(ctx.ledger.pseudonym(k.address) is not None for k in issued)
    finally:
        eng.ctx.close()
