"""``Application.finalize_block(set_aside=False)``: replaying a certified block without
taking its writes out of the state and putting them back gives the same header, result,
state and ``last_writes``; ``discard`` undoes the block exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger.app import Application
from tests.conftest import Chain, make_chain

CHAIN = make_chain()
# a block: transfers (from, to, amount); an amount above the balance fails inside the block
transfers = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5),
                               st.sampled_from([1, 250, 999_999, 5_000_000])),
                     min_size=0, max_size=6)


def _blocks(spec: list[list[tuple[int, int, int]]]) -> list[list[bytes]]:
    chain = Chain(CHAIN.genesis, CHAIN.validators, CHAIN.users, {})
    return [[chain.transfer(i, j, a) for i, j, a in block] for block in spec]


@settings(max_examples=40, deadline=None)
@given(st.lists(transfers, min_size=1, max_size=4), st.integers(0, 3))
def test_in_place_replay_equals_set_aside(spec, discard_at):
    blocks = _blocks(spec)
    aside, in_place = Application(CHAIN.genesis), Application(CHAIN.genesis)
    for n, txs in enumerate(blocks):
        t = 900 * (n + 1)
        if n == discard_at:  # a block that does not match is discarded, then re-executed
            before = (in_place.state.root(), dict(in_place.state.snapshot_items()))
            in_place.finalize_block(txs, t, set_aside=False)
            in_place.discard()
            assert (in_place.state.root(), dict(in_place.state.snapshot_items())) == before
            assert in_place.state.block_writes() is None  # no transaction left open
        h1, r1 = aside.finalize_block(txs, t)
        h2, r2 = in_place.finalize_block(txs, t, set_aside=False)
        assert h1 == h2 and r1.encode_receipts() == r2.encode_receipts()
        aside.commit()
        in_place.commit()
        assert in_place.last_writes == aside.last_writes
        assert in_place.state.root() == aside.state.root() == h1.state_root
        assert dict(in_place.state.snapshot_items()) == dict(aside.state.snapshot_items())
        assert in_place.state.block_writes() is None
    assert (in_place.height, in_place.last_hash) == (aside.height, aside.last_hash)


def test_last_writes_counts_distinct_keys_written():
    chain = Chain(CHAIN.genesis, CHAIN.validators, CHAIN.users, {})
    for set_aside in (True, False):
        app = Application(CHAIN.genesis)
        before = dict(app.state.snapshot_items())
        app.finalize_block([chain.transfer(0, 1, 5), chain.transfer(2, 3, 7)], 900,
                           set_aside=set_aside)
        app.commit()
        after = dict(app.state.snapshot_items())
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        # every key whose value changed was written; a write may leave a value as it was
        assert app.last_writes >= len(changed) > 0
        chain.nonces.clear()
