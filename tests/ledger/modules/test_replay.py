"""Two validators applying the same market blocks reach the same state roots; a chain with
no market activity has no market state at all."""

from __future__ import annotations

from gridledger.ledger.app import Application
from tests.conftest import apply
from tests.ledger.modules.world import make_world, t_clear, t_order, t_read, t_settle


def test_market_lifecycle_replays_to_identical_roots() -> None:
    w = make_world()
    commit, _ = w.commit(2, 3, "sell", 700, 90_000, salt=b"s" * 16)  # never revealed
    blocks = [
        ([w.order(0, 3, "sell", 1_000, 100_000), w.order(1, 3, "buy", 1_500, 220_000), commit,
          w.envelope(3, [["cp3", 400, 0]]), w.order(3, 3, "buy", 900, 210_000)], t_order(3)),
        ([], t_clear(3)),
        ([w.reading(0, 3, 0, 800), w.reading(1, 3, 1_500, 0), w.reading(3, 3, 400, 0)], t_read(3)),
        ([], t_settle(3)),
    ]
    roots = []
    for _ in range(2):
        app = Application(w.app.genesis)
        roots.append([apply(app, txs, at)[0].state_root for txs, at in blocks])
    assert roots[0] == roots[1]
    assert len(set(roots[0])) == len(blocks)


def test_idle_blocks_write_no_market_state() -> None:
    w = make_world()
    before = w.app.state.snapshot_items()
    for k in range(1, 6):
        w.ok([], k * 900)
    assert w.app.state.snapshot_items() == before
