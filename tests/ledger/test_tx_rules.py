"""Every rejection names its rule and leaves state untouched."""

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridledger.errors import (
    BadSignature,
    ClassicalKey,
    MalformedEncoding,
    NonceGap,
    Oversize,
    ReplayedNonce,
    UnknownSender,
    WrongChain,
)
from gridledger.ledger import codec
from gridledger.ledger.tx import decode_tx, sign_tx
from gridledger.sim.keys import sim_key
from tests.conftest import CHAIN, apply


def _receipt(app, raw):
    root = app.state.root()
    _, result = apply(app, [raw])
    return result.receipts[0], root


def test_valid_transfer_applies(app, chain):
    r, before = _receipt(app, chain.transfer(0, 1, 250))
    assert r.ok and r.events[0]["amount_micro"] == 250
    assert app.query(f"balance/{chain.users[1].address.hex()}")["balance_micro"] == 1_000_250
    assert app.state.root() != before


@pytest.mark.parametrize("case, rule", [
    ("tamper", "bad-signature"),
    ("replay", "replayed-nonce"),
    ("cross-chain", "wrong-chain"),
    ("gap", "nonce-gap"),
    ("unknown-sender", "unknown-sender"),
    ("unknown-kind", "unknown-kind"),
    ("classical", "classical-key"),
    ("insufficient", "insufficient-funds"),
    ("bad-body", "invalid-body"),
    ("malformed", "malformed-encoding"),
])
def test_rejections_name_the_rule_and_touch_nothing(app, chain, case, rule):
    if case == "replay":
        raw = chain.transfer(0, 1, 5)
        apply(app, [raw])
    elif case == "tamper":
        obj = cbor2.loads(chain.transfer(0, 1, 5))
        obj["body"]["amount_micro"] = 500_000  # altered after signing
        raw = codec.encode(obj)
    elif case == "cross-chain":
        raw = chain.transfer(0, 1, 5, chain_id="other-chain")
    elif case == "gap":
        raw = chain.transfer(0, 1, 5, nonce=3)
    elif case == "unknown-sender":
        raw = sign_tx(sim_key(99, "stranger", 0), CHAIN, 0, "bank/transfer",
                      {"to": chain.users[1].address, "amount_micro": 5})
    elif case == "unknown-kind":
        raw = chain.tx(chain.users[0], "bank/mint", {"amount_micro": 10**9})
    elif case == "classical":
        ed = Ed25519PrivateKey.generate()
        body = {"to": chain.users[1].address, "amount_micro": 5}
        env = {"alg": "ed25519", "body": body, "chain_id": CHAIN, "kind": "bank/transfer",
               "nonce": 0, "sender": chain.users[0].address}
        raw = codec.encode({**env, "sig": ed.sign(codec.encode(env))})
    elif case == "insufficient":
        raw = chain.transfer(0, 1, 10**12)
    elif case == "bad-body":
        raw = chain.tx(chain.users[0], "bank/transfer", {"to": b"short", "amount_micro": 5})
    else:
        raw = b"\xa1\x61x\xf9\x3c\x00"  # {"x": 1.0 as half float}
    before_root = app.state.root()
    before_bal = [app.query(f"balance/{u.address.hex()}") for u in chain.users]
    r, _ = _receipt(app, raw)
    assert not r.ok and r.rule == rule, r
    assert [app.query(f"balance/{u.address.hex()}") for u in chain.users] == before_bal
    if rule in ("insufficient-funds", "invalid-body"):
        # authenticated but failing: only the sender's nonce is consumed (replay-proof)
        assert app.state.root() != before_root
    else:
        assert app.state.root() == before_root


def test_decode_rules():
    with pytest.raises(Oversize):
        decode_tx(b"\x00" * 20_000)
    with pytest.raises(MalformedEncoding, match="canonical"):
        decode_tx(cbor2.dumps({"b": 1, "a": 2}, canonical=False)[:0] + b"\xa2\x61b\x01\x61a\x02")
    with pytest.raises(MalformedEncoding, match="floats"):
        decode_tx(cbor2.dumps({"x": 1.5}, canonical=True))
    with pytest.raises(MalformedEncoding, match="not valid CBOR"):
        decode_tx(b"\xff\xfe")


def test_same_tx_twice_in_one_block_applies_once(app, chain):
    raw = chain.transfer(0, 1, 7)
    _, result = apply(app, [raw, raw])
    assert [r.ok for r in result.receipts] == [True, False]
    assert result.receipts[1].rule == "replayed-nonce"


def test_failed_tx_cannot_be_replayed_later(app, chain):
    raw = chain.transfer(0, 1, 1_500_000)  # more than the sender has
    _, res = apply(app, [raw])
    assert res.receipts[0].rule == "insufficient-funds"
    apply(app, [chain.transfer(2, 0, 900_000)])  # now the sender could afford it
    _, res = apply(app, [raw])
    assert res.receipts[0].rule == "replayed-nonce"


def test_key_rotation_to_another_pq_algorithm(app, chain):
    from gridledger.crypto.sig import SigningKey

    new = SigningKey.generate("ml-dsa-87")
    user = chain.users[0]
    pop = new.sign(user.address, b"gl/rotate")
    _, res = apply(app, [chain.tx(user, "registry/rotate_key",
                                  {"alg": new.alg, "pk": new.public_key.raw, "pop": pop})])
    assert res.receipts[0].ok
    # the old key no longer signs for this identity; the new one does
    old_raw = chain.transfer(0, 1, 5)
    _, res = apply(app, [old_raw])
    assert res.receipts[0].rule == "bad-signature"
    env_nonce = chain.nonces[user.address] - 1
    body = {"to": chain.users[1].address, "amount_micro": 5}
    from gridledger.ledger.tx import signing_bytes, TX_CONTEXT
    msg = signing_bytes(CHAIN, user.address, env_nonce, "bank/transfer", body, new.alg)
    raw = codec.encode({"alg": new.alg, "body": body, "chain_id": CHAIN, "kind": "bank/transfer",
                        "nonce": env_nonce, "sender": user.address, "sig": new.sign(msg, TX_CONTEXT)})
    _, res = apply(app, [raw])
    assert res.receipts[0].ok


def test_rotation_to_classical_key_is_refused(app, chain):
    ed = Ed25519PrivateKey.generate()
    _, res = apply(app, [chain.tx(chain.users[0], "registry/rotate_key",
                                  {"alg": "ed25519", "pk": ed.public_key().public_bytes_raw(),
                                   "pop": b"x"})])
    assert res.receipts[0].rule == "classical-key"


def test_the_decode_memo_is_bounded_by_count_and_bytes(monkeypatch):
    """Issue 17: the memo keeps what admission, cutting and execution of recent transactions
    need, never a run's worth: its raw bytes and its entries are capped (oldest out first),
    and a decode past the cap is still correct."""
    from gridledger.ledger import tx as txmod

    key = sim_key(17, "memo", 0)
    raws = [sign_tx(key, CHAIN, n, "bank/transfer", {"to": b"\x01" * 32, "amount": n + 1})
            for n in range(40)]
    size = len(raws[0])
    from gridledger.memo import Memo

    cap = 10 * size + size // 2
    monkeypatch.setattr(txmod, "_DECODED", Memo(txmod._DECODED_MAX, lambda r, _t: len(r), cap))
    for raw in raws:
        assert decode_tx(raw).raw == raw
        count, held = txmod.decode_memo_size()
        assert held <= 2 * cap and count <= 20  # each generation within the cap
    assert raws[-1] in txmod._DECODED and raws[0] not in txmod._DECODED  # the newest stay
    monkeypatch.setattr(txmod, "_DECODED", Memo(4))
    for raw in raws:
        decode_tx(raw)
        assert txmod.decode_memo_size()[0] <= 8
    assert decode_tx(raws[0]).nonce == 0  # decoded again after eviction
