"""``finalize_block(set_aside=True)`` sets the block aside at the first read of
``Application.state`` (issue 17, fourteenth session), not at once: whether or not the
committed state is read before ``commit`` / ``discard``, the header, receipts, state,
root and ``last_writes`` are those of the eager set-aside (``State.detach`` at
finalize), and a read in between sees the committed state, never the pending block."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger.app import Application
from tests.conftest import Chain, make_chain

CHAIN = make_chain()
transfers = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5),
                               st.sampled_from([1, 250, 999_999, 5_000_000])),
                     min_size=0, max_size=6)
# between finalize and commit: no read, a root query, a nonce read, a snapshot read
READS = ("none", "root", "nonce", "items")


def _blocks(spec: list[list[tuple[int, int, int]]]) -> list[list[bytes]]:
    chain = Chain(CHAIN.genesis, CHAIN.validators, CHAIN.users, {})
    return [[chain.transfer(i, j, a) for i, j, a in block] for block in spec]


def _eager(app: Application) -> None:
    """The set-aside as ``finalize_block`` did it before: detached at once."""
    app._set_aside()


def _read(app: Application, how: str) -> object:
    if how == "root":
        return app.query("state_root")
    if how == "nonce":
        return app.next_nonce(CHAIN.users[0].address)
    if how == "items":
        return dict(app.state.snapshot_items())
    return None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(transfers, st.sampled_from(READS), st.booleans()),
                min_size=1, max_size=4))
def test_lazy_set_aside_equals_eager(spec):
    blocks = _blocks([b for b, _, _ in spec])
    eager, lazy = Application(CHAIN.genesis), Application(CHAIN.genesis)
    for n, (txs, (_, how, discard)) in enumerate(zip(blocks, spec, strict=True)):
        t = 900 * (n + 1)
        committed = (lazy.state.root(), dict(lazy.state.snapshot_items()),
                     lazy.next_nonce(CHAIN.users[0].address))
        h1, r1 = eager.finalize_block(txs, t)
        _eager(eager)
        h2, r2 = lazy.finalize_block(txs, t)
        assert h1 == h2 and r1.encode_receipts() == r2.encode_receipts()
        assert _read(lazy, how) == _read(eager, how)
        if how != "none":   # a read in between sees the committed state, not the block
            assert (lazy.state.root(), dict(lazy.state.snapshot_items()),
                    lazy.next_nonce(CHAIN.users[0].address)) == committed
        if discard:
            eager.discard()
            lazy.discard()
            assert (lazy.state.root(), dict(lazy.state.snapshot_items())) == committed[:2]
            eager.finalize_block(txs, t)
            lazy.finalize_block(txs, t)
        eager.commit()
        lazy.commit()
        assert lazy.last_writes == eager.last_writes
        assert lazy.state.root() == eager.state.root() == h1.state_root
        assert dict(lazy.state.snapshot_items()) == dict(eager.state.snapshot_items())
        assert lazy.state.block_writes() is None
    assert (lazy.height, lazy.last_hash) == (eager.height, eager.last_hash)


def test_a_read_while_pending_sees_the_committed_state():
    chain = Chain(CHAIN.genesis, CHAIN.validators, CHAIN.users, {})
    app = Application(CHAIN.genesis)
    root = app.state.root()
    nonce = app.next_nonce(CHAIN.users[0].address)
    header, _ = app.finalize_block([chain.transfer(0, 1, 5)], 900)
    assert header.state_root != root
    assert app.query("state_root") == root          # the pending block is not visible
    assert app.next_nonce(CHAIN.users[0].address) == nonce
    app.commit()
    assert app.state.root() == header.state_root
    assert app.next_nonce(CHAIN.users[0].address) == nonce + 1


def test_no_read_no_detach(monkeypatch):
    """A block committed with no read in between is never taken out and put back."""
    from gridledger.ledger.state import State

    calls: list[str] = []
    monkeypatch.setattr(State, "detach", lambda self: calls.append("detach"))
    monkeypatch.setattr(State, "attach", lambda self, d: calls.append("attach"))
    chain = Chain(CHAIN.genesis, CHAIN.validators, CHAIN.users, {})
    app = Application(CHAIN.genesis)
    header, _ = app.finalize_block([chain.transfer(0, 1, 5)], 900)
    app.validator_keys()   # what a validator asks before it votes: the pending header's set
    app.commit()
    assert calls == []
    assert app.state.root() == header.state_root


def test_readers_on_other_threads_while_the_block_commits():
    """A node's API threads read (admission, queries) while its block awaits votes: the
    set-aside happens once whichever thread reads first, a read sees the committed state
    before or after the commit, never the pending block alone, and the chain ends as the
    eager set-aside's."""
    import threading

    chain = Chain(CHAIN.genesis, CHAIN.validators, CHAIN.users, {})
    blocks = [[chain.transfer(i % 6, (i + 1) % 6, 5 + i)] for i in range(12)]
    eager, lazy = Application(CHAIN.genesis), Application(CHAIN.genesis)
    for n, txs in enumerate(blocks):
        t = 900 * (n + 1)
        before = lazy.state.root()
        header, _ = lazy.finalize_block(txs, t)
        eager.finalize_block(txs, t)
        _eager(eager)
        seen: list[bytes] = []
        go = threading.Barrier(3)

        def read(go: threading.Barrier, seen: list[bytes]) -> None:
            go.wait()
            for _ in range(5):
                seen.append(lazy.query("state_root"))
                lazy.next_nonce(CHAIN.users[0].address)

        readers = [threading.Thread(target=read, args=(go, seen)) for _ in range(2)]
        for r in readers:
            r.start()
        go.wait()
        lazy.commit()
        eager.commit()
        for r in readers:
            r.join()
        assert set(seen) <= {before, header.state_root}
        assert lazy.state.root() == eager.state.root() == header.state_root
        assert dict(lazy.state.snapshot_items()) == dict(eager.state.snapshot_items())
        assert lazy.last_writes == eager.last_writes
