"""A validator indexes a block's transactions from the receipts it holds
(``BlockResult.index_entries``), not by decoding the receipts it just encoded (issue 17,
fourteenth session): the same (tx id, ok) pairs in the same order, so the same index rows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger.execute import BlockResult, Receipt
from gridledger.node.store import BlockStore, index_entries

events = st.lists(st.dictionaries(st.sampled_from(["type", "amount", "who"]),
                                  st.one_of(st.integers(-2**70, 2**70), st.text(max_size=8),
                                            st.binary(max_size=8)), max_size=3), max_size=3)
receipts = st.lists(st.builds(Receipt, st.binary(min_size=32, max_size=32) | st.sampled_from(
    [b"\x01" * 32, b"\x02" * 32]), st.booleans(), st.text(max_size=12), st.text(max_size=12),
    events.map(tuple)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(receipts, events)
def test_index_entries_equal_decoding_the_encoded_receipts(rs, block_events):
    result = BlockResult(rs, block_events)
    assert result.index_entries() == index_entries(result.encode_receipts())


@settings(max_examples=25, deadline=None)
@given(st.lists(receipts, min_size=1, max_size=4))
def test_store_rows_equal_with_or_without_entries(tmp_path_factory, blocks):
    d = tmp_path_factory.mktemp("idx")
    stores = [BlockStore(d / "decoded.sqlite"), BlockStore(d / "given.sqlite")]
    for h, rs in enumerate(blocks, start=1):
        result = BlockResult(rs)
        for i, store in enumerate(stores):
            store.append_block(h, b"header", [], result.encode_receipts(), b"cert", h,
                               entries=result.index_entries() if i else None)
    assert list(stores[0].index()) == list(stores[1].index())
    for store in stores:
        store.close()
