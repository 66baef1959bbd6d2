"""Issue 21.7: headers, certificates and votes decode strictly — one object, one byte string."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.errors import MalformedEncoding
from gridledger.ledger import codec
from gridledger.ledger.block import Certificate, Header, Vote, sign_vote, vote_ok
from tests.conftest import make_chain

CHAIN = make_chain()
HEADER = Header(CHAIN.genesis.chain_id, 3, b"\x01" * 32, 900, b"\x02" * 32, b"\x03" * 32,
                b"\x04" * 32, b"\x05" * 32)
VOTES = [sign_vote(CHAIN.validators[i], HEADER, i) for i in range(3)]
CERT = Certificate.from_votes(VOTES)


def test_round_trips():
    assert Header.decode(HEADER.encode()) == HEADER
    assert Certificate.decode(CERT.encode()) == CERT
    assert Vote.decode(VOTES[0].encode()) == VOTES[0]
    keys = [(k.alg, k.public_key.raw) for k in CHAIN.validators]
    assert all(vote_ok(Vote.decode(v.encode()), keys) for v in VOTES)


def _cert_obj() -> dict:
    return {"height": CERT.height, "header_hash": CERT.header_hash,
            "votes": [[i, s] for i, s in CERT.votes]}


SIG0 = CERT.votes[0][1]
BAD_CERTS = {
    "bool index": {**_cert_obj(), "votes": [[False, SIG0], *_cert_obj()["votes"][1:]]},
    "index as text": {**_cert_obj(), "votes": [["0", SIG0], *_cert_obj()["votes"][1:]]},
    "signature as an integer (bytes(n) would make n zero bytes)": {
        **_cert_obj(), "votes": [[0, 3309], *_cert_obj()["votes"][1:]]},
    "signature as a list of ints": {**_cert_obj(), "votes": [[0, list(SIG0[:8])]]},
    "unsorted votes": {**_cert_obj(), "votes": list(reversed(_cert_obj()["votes"]))},
    "duplicate index": {**_cert_obj(), "votes": [[0, SIG0], [0, SIG0]]},
    "negative index": {**_cert_obj(), "votes": [[-1, SIG0]]},
    "height as bool": {**_cert_obj(), "height": True},
    "height zero": {**_cert_obj(), "height": 0},
    "short header hash": {**_cert_obj(), "header_hash": b"\x00" * 31},
    "extra field": {**_cert_obj(), "round": 0},
    "missing field": {"height": 3, "header_hash": CERT.header_hash},
    "vote with three items": {**_cert_obj(), "votes": [[0, SIG0, 1]]},
    "no votes": {**_cert_obj(), "votes": []},
    "not a map": [3, CERT.header_hash, []],
}


@pytest.mark.parametrize("name", sorted(BAD_CERTS))
def test_certificate_decoding_refuses_every_coercion(name):
    with pytest.raises(MalformedEncoding):
        Certificate.decode(codec.encode(BAD_CERTS[name]))


BAD_HEADERS = {
    "height as bool": {**HEADER.to_obj(), "height": True},
    "height as text": {**HEADER.to_obj(), "height": "3"},
    "slot_time negative": {**HEADER.to_obj(), "slot_time": -1},
    "root as text": {**HEADER.to_obj(), "state_root": "03" * 32},
    "root too long": {**HEADER.to_obj(), "state_root": b"\x03" * 33},
    "chain id as bytes": {**HEADER.to_obj(), "chain_id": b"test-chain"},
    "extra field": {**HEADER.to_obj(), "round": 0},
    "missing field": {k: v for k, v in HEADER.to_obj().items() if k != "tx_root"},
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_header_decoding_refuses_every_coercion(name):
    with pytest.raises(MalformedEncoding):
        Header.decode(codec.encode(BAD_HEADERS[name]))


def test_non_canonical_bytes_of_a_valid_certificate_are_refused():
    # the same map with an indefinite-length array, or keys out of canonical order
    obj = _cert_obj()
    with pytest.raises(MalformedEncoding):
        Certificate.decode(cbor2.dumps(dict(reversed(list(obj.items())))))
    with pytest.raises(MalformedEncoding):
        Header.decode(cbor2.dumps(dict(reversed(list(HEADER.to_obj().items())))))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_whatever_decodes_re_encodes_to_the_same_bytes(data):
    """Mutate valid encodings byte by byte: anything that still decodes is exactly the
    bytes it came from (so no two byte strings decode to one object)."""
    raw = bytearray(data.draw(st.sampled_from([CERT.encode(), HEADER.encode(), VOTES[0].encode()])))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    for cls in (Certificate, Header, Vote):
        try:
            obj = cls.decode(bytes(raw))
        except MalformedEncoding:
            continue
        assert obj.encode() == bytes(raw)


def _decode_by_canonical_re_encoding(data: bytes) -> object:
    """The reference rule ``codec.decode`` must equal: decode, check the types, and accept
    only bytes that canonical re-encoding gives back."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:
        raise MalformedEncoding(f"not valid CBOR: {exc}") from exc
    codec._check(obj, 0)
    if cbor2.dumps(obj, canonical=True) != data:
        raise MalformedEncoding("not canonical CBOR (RFC 8949 §4.2.1)")
    return obj


_keys = st.text(alphabet=st.sampled_from("ab\u00e9\u4e2d\U0001f600z"), max_size=26)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.binary(max_size=30)
    | st.text(max_size=30) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(st.tuples(_keys | st.integers(0, 3), inner), max_size=5).map(
        lambda pairs: dict(pairs)),
    max_leaves=25)


@settings(max_examples=1500, deadline=None)
@given(_values, st.booleans(), st.data())
def test_decode_accepts_exactly_what_canonical_re_encoding_gives_back(value, canonical, data):
    """``codec.decode`` checks key order and the plain re-encoding (issue 17): for any
    value, encoded canonically or in its own key order, and bytes mutated from it, it
    accepts, returns and refuses (with the same message) exactly what the canonical
    re-encoding rule does."""
    raw = bytearray(cbor2.dumps(value, canonical=canonical))
    for _ in range(data.draw(st.integers(0, 2))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    outcomes = []
    for rule in (codec.decode, _decode_by_canonical_re_encoding):
        try:
            outcomes.append(("ok", rule(bytes(raw))))
        except MalformedEncoding as exc:
            outcomes.append(("refused", str(exc)))
    assert outcomes[0] == outcomes[1]
