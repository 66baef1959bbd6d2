"""A store's snapshot encoding (issue 17, thirteenth session): ``encode_snapshot`` writes a
state's pairs with ``cbor2`` directly — byte for byte ``codec.encode``'s canonical bytes —
and ``decode_snapshot`` checks canonical form by re-encoding once; both stay strict."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.errors import MalformedEncoding
from gridledger.ledger import codec
from gridledger.ledger.state import State
from gridledger.node.store import decode_snapshot, encode_snapshot

pairs_st = st.dictionaries(st.binary(min_size=1, max_size=40), st.binary(max_size=300),
                           max_size=60)


@settings(max_examples=200, deadline=None)
@given(pairs_st)
def test_the_encoding_is_codec_encodes_and_decodes_back(data: dict[bytes, bytes]) -> None:
    state = State(data)
    state.set(b"late", b"written after the index was built")
    state.delete(next(iter(data), b"late"))
    items = state.snapshot_items()
    assert items == sorted(state._data.items())            # the key index's order
    raw = encode_snapshot(items)
    assert raw == codec.encode([[k, v] for k, v in items])
    assert decode_snapshot(raw) == dict(items)
    assert State(decode_snapshot(raw)).root() == state.root()


def test_what_is_not_a_snapshot_is_refused() -> None:
    good = [[b"a", b"1"], [b"b", b"2"]]
    raw = encode_snapshot([(b"a", b"1"), (b"b", b"2")])
    assert raw == cbor2.dumps(good)
    # a byte string's length in a longer head than needed: the same pairs, not canonical
    long_head = raw.replace(b"\x41a", b"\x58\x01a", 1)
    assert cbor2.loads(long_head) == good
    for bad, why in [(long_head, "not canonical"),
                     (cbor2.dumps([[b"b", b"2"], [b"a", b"1"]]), "strictly ascending"),
                     (cbor2.dumps([[b"a", b"1"], [b"a", b"2"]]), "strictly ascending"),
                     (cbor2.dumps([[b"a", "text"]]), "pair of byte strings"),
                     (cbor2.dumps([[b"a", b"1", b"x"]]), "pair of byte strings"),
                     (cbor2.dumps([[b"a", 1.5]]), "pair of byte strings"),
                     (cbor2.dumps({"a": b"1"}), "not a list"),
                     (raw[:-1], "not valid CBOR"),
                     (raw + b"\x00", "not valid CBOR|not canonical")]:
        with pytest.raises(MalformedEncoding, match=why):
            decode_snapshot(bad)


def test_pairs_of_other_types_are_encoded_canonically_as_before() -> None:
    odd = [(b"a", bytearray(b"1"))]
    assert encode_snapshot(odd) == codec.encode([[b"a", bytearray(b"1")]])  # type: ignore[list-item]
