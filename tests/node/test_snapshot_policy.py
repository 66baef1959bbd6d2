"""When a validator stores a snapshot: every ``snapshot_every``-th block, and after every
block that wrote ``SNAPSHOT_WRITES`` state keys or more (a privacy epoch's registration or
pay-out), so a restart, a read-only node or an audit export does not re-execute it.

The threshold is lowered for these tests (transfers write a handful of keys each); the
policy is the same."""

from pathlib import Path

import pytest

from gridledger.ledger.app import Application
from gridledger.node import validator as validator_mod
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.store import BlockStore
from gridledger.node.validator import restore_app
from tests.conftest import Chain, make_chain

THRESHOLD = 12
BLOCK_TRANSFERS = (1, 5, 1, 6, 1)  # small, big, small, big, small


def _run(chain: Chain, d: Path, snapshot_every: int, crash: int | None = None
         ) -> tuple[EmbeddedNetwork, dict[int, int]]:
    """Blocks of ``BLOCK_TRANSFERS`` transfers; returns the network and each block's number
    of written keys (the entry validator's ``last_writes``)."""
    net = EmbeddedNetwork(chain.genesis, chain.validators, d, snapshot_every=snapshot_every)
    if crash is not None:
        net.crash(crash)
    writes: dict[int, int] = {}
    for b, n in enumerate(BLOCK_TRANSFERS):
        for t in range(n):
            net.submit(chain.transfer(t % 6, (t + 1 + b) % 6, 10 + t), now_s=b)
        for fb in net.tick(900 * (b + 1)):
            writes[fb.header.height] = net.entry.app.last_writes
    return net, writes


def _snapshots(d: Path) -> dict[str, list[int]]:
    out = {}
    for p in sorted(d.glob("validator-*.sqlite")):
        s = BlockStore(p, readonly=True)
        out[p.name] = s.snapshot_heights()
        s.close()
    return out


@pytest.fixture
def low_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validator_mod, "SNAPSHOT_WRITES", THRESHOLD)


def test_a_block_that_writes_many_keys_is_snapshotted(tmp_path, low_threshold):
    net, writes = _run(make_chain(), tmp_path, snapshot_every=100)
    heavy = sorted(h for h, w in writes.items() if w >= THRESHOLD)
    # the test means something: some blocks are under the threshold, some over
    assert heavy and len(heavy) < len(writes), writes
    tip = net.height
    net.close()
    assert all(h == heavy for h in _snapshots(tmp_path).values())
    # every block after the last heavy one is what a restart replays; a heavy tip: none
    store = BlockStore(next(tmp_path.glob("validator-0.sqlite")), readonly=True)
    replayed: list[int] = []
    real = Application.finalize_block

    def counting(self, raw_txs, slot_time, *a, **kw):
        replayed.append(self.height + 1)
        return real(self, raw_txs, slot_time, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Application, "finalize_block", counting)
        app, _ = restore_app(store, store.genesis())
    assert app.height == tip
    assert replayed == list(range(heavy[-1] + 1, tip + 1))
    store.close()


def test_periodic_snapshots_stay_and_zero_means_none(tmp_path, low_threshold):
    net, writes = _run(make_chain(), tmp_path / "every2", snapshot_every=2)
    net.close()
    want = sorted(h for h, w in writes.items() if h % 2 == 0 or w >= THRESHOLD)
    assert all(h == want for h in _snapshots(tmp_path / "every2").values())
    net, _ = _run(make_chain(), tmp_path / "none", snapshot_every=0)
    net.close()
    assert all(h == [] for h in _snapshots(tmp_path / "none").values())


def test_catch_up_snapshots_by_the_same_policy(tmp_path, low_threshold):
    """A validator that catches up from a peer's certified blocks stores the snapshots it
    would have stored executing them live."""
    net, writes = _run(make_chain(), tmp_path, snapshot_every=100, crash=3)
    net.restart(3)
    net.close()
    heavy = sorted(h for h, w in writes.items() if w >= THRESHOLD)
    snaps = _snapshots(tmp_path)
    assert snaps["validator-3.sqlite"] == heavy == snaps["validator-0.sqlite"]


def test_a_heavy_block_that_writes_a_small_share_of_a_large_state_is_not_snapshotted(
        tmp_path, low_threshold, monkeypatch):
    """Regression: a 1,000-member day's per-slot blocks each write thousands of keys of a
    state of hundreds of thousands, and a snapshot (the whole state) followed almost every
    block: 11.5 GB a store. A heavy block is snapshotted only if it wrote at least
    1/SNAPSHOT_STATE_SHARE of the state's keys."""
    sizes: dict[int, int] = {}
    real = validator_mod.Validator.snapshot_after

    def sized(self, height):
        sizes[height] = len(self.app.state)
        return real(self, height)

    monkeypatch.setattr(validator_mod.Validator, "snapshot_after", sized)
    monkeypatch.setattr(validator_mod, "SNAPSHOT_STATE_SHARE", 1)  # must write the whole state
    net, writes = _run(make_chain(), tmp_path, snapshot_every=100)
    net.close()
    heavy = [h for h, w in writes.items() if w >= THRESHOLD]
    assert heavy and all(writes[h] < sizes[h] for h in heavy), (writes, sizes)
    assert all(h == [] for h in _snapshots(tmp_path).values())


def test_the_default_threshold_is_above_a_per_slot_block():
    """Documented: a per-slot block writes a few hundred keys, a privacy registration
    ~20k; the threshold sits between (changing it changes how many snapshots a day stores)."""
    assert 1_000 <= validator_mod.SNAPSHOT_WRITES <= 5_000
