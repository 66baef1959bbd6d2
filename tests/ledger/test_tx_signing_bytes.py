"""The signed bytes cut out of a decoded transaction equal the fields encoded again."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger.tx import decode_tx, sign_tx, signing_bytes
from gridledger.sim.keys import sim_key

KEY = sim_key(3, "signing-bytes", 0)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.binary(max_size=40)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(body=st.dictionaries(st.text(max_size=12), values, max_size=5),
       chain=st.text(min_size=1, max_size=70), kind=st.text(min_size=1, max_size=40),
       nonce=st.integers(0, 2**63 - 1))
def test_cut_equals_encoded(body: dict, chain: str, kind: str, nonce: int) -> None:
    tx = decode_tx(sign_tx(KEY, chain, nonce, kind, body))
    assert tx.signing_bytes == signing_bytes(chain, KEY.address, nonce, kind, body, KEY.alg)
