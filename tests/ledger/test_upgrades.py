"""Module upgrades (issue 13.2): proposal, each validator's dry run, quorum, activation at a
height on every validator, the version recorded in state, verify-chain replaying it — and
the faulty upgrade the dry run refuses (``contract-bug``), with the damage when the dry run
is skipped."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gridledger.errors import InvariantViolation, RejectedTx
from gridledger.ledger.app import Application
from gridledger.ledger.context import TxContext
from gridledger.ledger.dryrun import Proposed, review_upgrade
from gridledger.ledger.execute import apply_block
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules import bank
from gridledger.ledger.modules.bank import keeper as bank_keeper
from gridledger.ledger.modules.bank.types import TRANSFER, Transfer, parse_transfer
from gridledger.ledger.modules.catalog import Release
from gridledger.ledger.modules.registry import keeper as registry_keeper
from gridledger.ledger.state import State
from gridledger.ledger.tx import decode_tx, sign_tx
from gridledger.ledger.upgrades import VERSIONS_KEY, Declaration
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.validator import restore_app
from gridledger.node.verify import verify_store
from gridledger.sim.keys import sim_key
from tests.conftest import CHAIN

NOTICE = 6
FEE_BOUNDS = {"grid_fee_min_micro_per_kwh": 10_000, "grid_fee_max_micro_per_kwh": 90_000}


def faulty_bank(declares: Declaration, *, create_money: bool = True,
                refuse_over: int | None = None, memo: bool = False) -> Release:
    """Bank v2 candidates: a 1 % community fee on transfers whose fee is credited without
    being taken from the amount (money created); or one that refuses large transfers
    (receipts differ); or one that writes an undeclared memo key."""

    def transfer(state: State, ctx: TxContext, msg: Transfer) -> None:
        if refuse_over is not None and msg.amount_micro > refuse_over:
            from gridledger.ledger.modules.bank.errors import BadAmount
            raise BadAmount("over the new limit")
        bank_keeper.move(state, ctx.sender, msg.to, msg.amount_micro)
        if create_money:
            fee = msg.amount_micro // 100
            grid = registry_keeper.validator_set(state)[0]
            state.set_int(bank_keeper.BAL + grid, bank_keeper.balance(state, grid) + fee)
        if memo:
            state.set_obj(b"bank/memo/" + ctx.tx_hash, msg.amount_micro)
        ctx.emit("transfer", **{"from": ctx.sender, "to": msg.to, "amount_micro": msg.amount_micro})

    def build(_keepers: dict[str, Any] | None = None) -> Module:
        base = bank.build(registry=registry_keeper)
        return replace(base, version=2, messages=(MsgKind(TRANSFER, parse_transfer, transfer),),
                       declares=declares)

    return Release("bank", 2, build)


class World:
    def __init__(self, tmp_path, **params: Any) -> None:
        self.v = [sim_key(5, "validator", i) for i in range(4)]
        self.u = [sim_key(5, "user", i) for i in range(3)]
        dso = sim_key(5, "dso", 0)
        parts = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"v{i}",
                  "balance_micro": 100} for i, k in enumerate(self.v)]
        parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "name": f"u{i}",
                   "cp": f"cp{i}", "balance_micro": 1_000_000} for i, k in enumerate(self.u)]
        parts.append({"alg": dso.alg, "pk": dso.public_key.raw, "roles": ["dso"], "name": "dso"})
        self.dso = dso
        self.genesis = make_genesis(CHAIN, parts, {"upgrade_notice_blocks": NOTICE, **FEE_BOUNDS})
        self.net = EmbeddedNetwork(self.genesis, self.v, tmp_path, snapshot_every=4)
        self.nonces: dict[bytes, int] = {}
        self.t = 0

    def tx(self, key, kind: str, body: dict) -> bytes:
        n = self.nonces.get(key.address, 0)
        self.nonces[key.address] = n + 1
        return sign_tx(key, CHAIN, n, kind, body)

    def block(self, *txs: bytes):
        for raw in txs:
            self.net.submit(raw)
        self.t += 900
        (fb,) = self.net.tick(self.t)
        return fb

    def transfers(self, blocks: int) -> None:
        for i in range(blocks):
            self.block(self.tx(self.u[i % 3], "bank/transfer",
                               {"to": self.u[(i + 1) % 3].address, "amount_micro": 1000 + i}))

    def propose(self, module: str, version: int, digest: bytes, at: int | None = None):
        at = at if at is not None else self.net.height + 1 + NOTICE
        fb = self.block(self.tx(self.v[0], "governance/propose_upgrade", {
            "module": module, "version": version, "activation_height": at, "digest": digest}))
        r = fb.result.receipts[0]
        return r, (r.events[0]["proposal"] if r.ok else None), at

    def review_and_vote(self, pid: int, module: str, version: int, digest: bytes,
                        dry_run: bool = True):
        votes, verdicts = [], []
        for v, key in zip(self.net.validators, self.v, strict=True):
            if dry_run:
                verdict = review_upgrade(v.store, self.genesis, v.app.catalog,
                                         Proposed(pid, module, version, digest),
                                         until=self.net.height - 1, window=8)
                verdicts.append(verdict)
                body = verdict.vote_body(pid)
            else:
                body = {"proposal": pid, "approve": True, "reason": ""}
            votes.append(self.tx(key, "governance/vote", body))
        fb = self.block(*votes)
        return fb, verdicts

    def query(self, path: str, i: int = 0):
        return self.net.validators[i].app.query(path)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.net.close()


def _gov3_digest(w: World) -> bytes:
    mods = w.net.entry.app.catalog.build({**w.net.entry.app.versions(), "governance": 3})
    gov = next(m for m in mods if m.name == "governance")
    return gov.declares.digest("governance", 3)


def test_governance_upgrade_end_to_end(world, tmp_path):
    w = world
    w.transfers(10)
    with pytest.raises(RejectedTx, match="unknown-kind"):  # governance v2 has no tariffs
        w.net.submit(w.tx(w.dso, "governance/set_grid_fees", {
            "from_slot": 100, "flat_micro_per_kwh": 20_000, "tou_micro_per_kwh": []}))
    w.nonces.pop(w.dso.address)
    digest = _gov3_digest(w)
    r, pid, at = w.propose("governance", 3, digest)
    assert r.ok and r.events[0]["type"] == "upgrade_proposed" and r.events[0]["from_version"] == 2
    fb, verdicts = w.review_and_vote(pid, "governance", 3, digest)
    assert all(v.approve for v in verdicts), verdicts
    assert all(v.blocks >= 8 for v in verdicts)
    kinds = [e["type"] for r in fb.result.receipts for e in r.events]
    assert "upgrade_passed" in kinds
    assert w.query("governance/versions")["scheduled"][0]["height"] == at
    while w.net.height < at - 1:
        w.transfers(1)
    assert all(v.app.versions()["governance"] == 2 for v in w.net.validators)
    motion = w.query("governance/motions")[0]
    assert motion["status"] == "passed" and len(motion["yes"]) == 4  # the 4th vote recorded too
    fb = w.block(w.tx(w.u[0], "bank/transfer", {"to": w.u[1].address, "amount_micro": 5}))
    assert fb.header.height == at
    upgraded = [e for e in fb.result.block_events if e["type"] == "module_upgraded"]
    assert upgraded == [{"type": "module_upgraded", "module": "governance", "from_version": 2,
                         "version": 3, "proposal": pid, "digest": digest, "height": at}]
    assert any(e["type"] == "upgrade_applied" for e in fb.result.block_events)
    for i, v in enumerate(w.net.validators):  # every validator switched identically
        assert v.app.versions()["governance"] == 3
        assert w.query("governance/versions", i)["versions"]["governance"] == 3
    assert len(set(w.net.state_roots())) == 1
    assert w.query("governance/tariffs") == [{"from_slot": 0, "flat_micro_per_kwh": 30_000,
                                              "tou_micro_per_kwh": []}]
    changes = w.query("governance/changes")
    assert [c["kind"] for c in changes] == ["grid_fees", "upgrade"]
    # v3's kind now works
    fees = w.tx(w.dso, "governance/set_grid_fees",
                {"from_slot": 100, "flat_micro_per_kwh": 20_000, "tou_micro_per_kwh": []})
    vote = w.tx(w.v[0], "governance/vote", {"proposal": pid, "approve": True})
    fb = w.block(fees, vote)  # (the validators' lane puts the vote first in the block)
    by_hash = {r.tx_hash: r for r in fb.result.receipts}
    assert by_hash[decode_tx(fees).id].ok, by_hash[decode_tx(fees).id]
    assert by_hash[decode_tx(vote).id].rule == "proposal-closed"  # applied: no more votes
    # verify-chain replays each block with the version that executed it
    w.net.close()
    for p in sorted(tmp_path.glob("validator-*.sqlite")):
        report = verify_store(p)
        assert report.ok, report.reason
    # a restarted node builds the recorded versions from its snapshot + replay
    from gridledger.node.store import BlockStore
    store = BlockStore(tmp_path / "validator-1.sqlite")
    app, _ = restore_app(store, w.genesis)
    assert app.versions()["governance"] == 3
    store.close()


@pytest.mark.parametrize("body, rule", [
    ({"module": "nonesuch", "version": 2}, "unknown-module"),
    ({"module": "governance", "version": 2}, "version-not-newer"),
    ({"module": "governance", "version": 3, "soon": True}, "activation-height"),
])
def test_proposal_rejections_name_the_rule(world, body, rule):
    w = world
    h = w.net.height
    at = h + 2 if body.pop("soon", False) else h + 1 + NOTICE
    root = w.net.entry.app.state.root()
    fb = w.block(w.tx(w.v[0], "governance/propose_upgrade",
                      {**body, "activation_height": at, "digest": bytes(32)}))
    assert fb.result.receipts[0].rule == rule
    assert w.query("governance/motions") == []
    assert w.net.entry.app.state.root() != root  # only the proposer's nonce moved
    assert w.query("governance/versions")["scheduled"] == []


def test_only_validators_propose_and_vote(world):
    w = world
    fb = w.block(w.tx(w.u[0], "governance/propose_upgrade", {
        "module": "governance", "version": 3, "activation_height": 50, "digest": bytes(32)}))
    assert fb.result.receipts[0].rule == "not-validator"
    _r, pid, _at = w.propose("governance", 3, _gov3_digest(w))
    fb = w.block(w.tx(w.u[0], "governance/vote", {"proposal": pid, "approve": True}))
    assert fb.result.receipts[0].rule == "not-validator"
    fb = w.block(w.tx(w.v[1], "governance/vote", {"proposal": pid, "approve": True}),
                 w.tx(w.v[1], "governance/vote", {"proposal": pid, "approve": True}),
                 w.tx(w.v[1], "governance/vote", {"proposal": 99, "approve": True}))
    assert [r.rule for r in fb.result.receipts] == ["", "already-voted", "unknown-proposal"]
    r, _pid, _at = w.propose("governance", 3, _gov3_digest(w))
    assert r.rule == "proposal-exists"


def test_refused_by_enough_validators_is_rejected_and_never_scheduled(world):
    w = world
    _r, pid, _at = w.propose("governance", 3, _gov3_digest(w))
    fb = w.block(*(w.tx(k, "governance/vote", {"proposal": pid, "approve": False,
                                               "reason": "not now"}) for k in w.v[:2]))
    assert any(e["type"] == "motion_rejected" for r in fb.result.receipts for e in r.events)
    assert w.query("governance/versions")["scheduled"] == []
    # a late vote is recorded (every validator's verdict stays on the ledger), decides nothing
    fb = w.block(w.tx(w.v[3], "governance/vote", {"proposal": pid, "approve": True}))
    assert fb.result.receipts[0].ok
    assert w.query("governance/motions")[0]["status"] == "rejected"
    assert w.query("governance/versions")["scheduled"] == []
    r, _pid2, _at = w.propose("governance", 3, _gov3_digest(w))
    assert r.ok  # a rejected motion does not block a new proposal for the module
    while w.net.height <= w.query("governance/motions")[0]["expires"]:
        w.block()
    fb = w.block(w.tx(w.v[2], "governance/vote", {"proposal": pid, "approve": True}))
    assert fb.result.receipts[0].rule == "proposal-expired"


def test_unvoted_upgrade_expires_before_its_height(world):
    w = world
    _r, pid, at = w.propose("governance", 3, _gov3_digest(w))
    while w.net.height < at:
        w.block()
    assert w.query("governance/motions")[0]["status"] == "expired"
    fb = w.block(w.tx(w.v[1], "governance/vote", {"proposal": pid, "approve": True}))
    assert fb.result.receipts[0].rule == "proposal-expired"
    assert w.net.entry.app.versions()["governance"] == 2


# -- the dry run --------------------------------------------------------------------------

CLAIMS_NOTHING = Declaration(migration="none")
FEE_RULE = Declaration(migration="none", changes=(bank_keeper.BAL,), receipts=True)


def _install(w: World, release: Release) -> None:
    for v in w.net.validators:
        v.app.install_release(release)


def _review(w: World, release: Release, digest: bytes | None = None, i: int = 1):
    module = release.build()
    d = digest if digest is not None else module.declares.digest("bank", 2)
    v = w.net.validators[i]
    return review_upgrade(v.store, w.genesis, v.app.catalog, Proposed(1, "bank", 2, d),
                          window=8)


def test_dry_run_refuses_a_release_that_breaks_money_conservation(world):
    w = world
    w.transfers(12)
    release = faulty_bank(FEE_RULE)
    _install(w, release)
    verdict = _review(w, release)
    assert not verdict.approve
    assert "total-supply" in verdict.reason and verdict.reason.startswith("block ")
    # the node's own state is untouched by its dry run
    assert len(set(w.net.state_roots())) == 1


def test_dry_run_refuses_undeclared_changes_and_receipts(world):
    w = world
    w.transfers(12)
    memo = faulty_bank(CLAIMS_NOTHING, create_money=False, memo=True)
    _install(w, memo)
    verdict = _review(w, memo)
    assert not verdict.approve and "beyond the declaration" in verdict.reason
    strict = faulty_bank(CLAIMS_NOTHING, create_money=False, refuse_over=1005)
    _install(w, strict)
    verdict = _review(w, strict)
    assert not verdict.approve and "receipts differ" in verdict.reason
    assert "ok -> bad-amount" in verdict.reason


def test_dry_run_refuses_wrong_digest_and_missing_release(world):
    w = world
    w.transfers(4)
    honest = faulty_bank(CLAIMS_NOTHING, create_money=False)
    verdict = _review(w, honest)
    assert not verdict.approve and "not installed" in verdict.reason
    _install(w, honest)
    verdict = _review(w, honest, digest=bytes(32))
    assert not verdict.approve and "digest" in verdict.reason
    verdict = _review(w, honest)
    assert verdict.approve, verdict  # the same behaviour, declared as such


def test_contract_bug_is_refused_and_never_activates(world):
    w = world
    w.transfers(12)
    release = faulty_bank(FEE_RULE)
    _install(w, release)
    digest = release.build().declares.digest("bank", 2)
    supply = w.query("bank/money")
    _r, pid, at = w.propose("bank", 2, digest)
    fb, verdicts = w.review_and_vote(pid, "bank", 2, digest)
    assert [v.approve for v in verdicts] == [False] * 4
    assert any(e["type"] == "motion_rejected" for r in fb.result.receipts for e in r.events)
    while w.net.height < at + 2:
        w.transfers(1)
    assert all(v.app.versions()["bank"] == 1 for v in w.net.validators)
    assert w.query("bank/money") == supply  # loss 0
    motion = w.query("governance/motions")[0]
    assert len(motion["no"]) == 4 and all(r.startswith("block ") for _v, r in motion["reasons"])


def test_without_the_dry_run_the_faulty_release_activates_and_blocks_fail(world):
    """Defence removed: the validators vote yes without a dry run. At the activation height
    every validator switches to the faulty bank; the first block with a transfer breaks
    money conservation, so every validator refuses to sign it (no block carrying a transfer
    can be finalized any more). Without per-block invariants the money would simply be
    created."""
    w = world
    w.transfers(4)
    release = faulty_bank(FEE_RULE)
    _install(w, release)
    digest = release.build().declares.digest("bank", 2)
    _r, pid, at = w.propose("bank", 2, digest)
    w.review_and_vote(pid, "bank", 2, digest, dry_run=False)
    while w.net.height < at:
        w.block()
    assert all(v.app.versions()["bank"] == 2 for v in w.net.validators)
    height, roots = w.net.height, w.net.state_roots()
    for payer, payee in ((0, 1), (1, 2)):
        with pytest.raises(InvariantViolation, match="total-supply"):
            w.block(w.tx(w.u[payer], "bank/transfer",
                         {"to": w.u[payee].address, "amount_micro": 10_000}))
    assert w.net.height == height and w.net.state_roots() == roots  # nothing executes
    # the damage the invariant stops: the same block without the check creates money
    app = w.net.entry.app
    state = app.state.copy()
    before = state.get_int(bank_keeper.SUPPLY)
    raw = w.tx(w.u[2], "bank/transfer", {"to": w.u[0].address, "amount_micro": 50_000})
    from gridledger.ledger.context import BlockContext
    apply_block(state, BlockContext(CHAIN, height + 1, w.t + 900), [raw], app.modules,
                check_invariants=False)
    assert bank_keeper.total_money(state) == before + 500  # 1 % created from nothing


def test_versions_are_absent_from_state_until_an_upgrade():
    w_parts = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": "v"}
               for k in [sim_key(5, "validator", 0)]]
    app = Application(make_genesis(CHAIN, w_parts))
    assert app.state.get(VERSIONS_KEY) is None
    assert app.versions()["governance"] == 2
    app3 = Application(make_genesis(CHAIN, w_parts, sections={"versions": {"governance": 3}}))
    assert app3.versions()["governance"] == 3


def test_same_review_inputs_mean_the_same_verdict_and_any_difference_shows(world, tmp_path):
    """``review_inputs``: the validators' stores hold the same certified bytes, so their
    digests agree and one dry run stands for all (the simulator runs one); another catalog,
    another window or a store whose block bytes differ gives another digest."""
    from gridledger.ledger.dryrun import review_inputs
    from gridledger.node.store import BlockStore

    w = world
    w.transfers(12)
    release = faulty_bank(FEE_RULE)
    _install(w, release)
    d = release.build().declares.digest("bank", 2)
    up = Proposed(1, "bank", 2, d)
    tip = w.net.height
    keys = [review_inputs(v.store, v.app.catalog, up, window=8) for v in w.net.validators]
    assert len(set(keys)) == 1 and keys[0][1] > 0          # starts at a snapshot
    verdicts = [review_upgrade(v.store, w.genesis, v.app.catalog, up, window=8)
                for v in w.net.validators]
    assert all(x == verdicts[0] for x in verdicts) and verdicts[0].from_height == keys[0][1]
    v0 = w.net.validators[0]
    assert review_inputs(v0.store, v0.app.catalog, up, window=9) != keys[0]
    other = v0.app.catalog.with_release(faulty_bank(FEE_RULE))   # same version, another build
    assert review_inputs(v0.store, other, up, window=8)[0] != keys[0][0]
    # a copy of validator 0's store with one receipts byte of the last block changed
    import shutil
    import sqlite3

    w.net.close()
    copy = tmp_path / "copy.sqlite"
    shutil.copy(v0.store.path, copy)
    db = sqlite3.connect(copy)
    (receipts,) = db.execute("SELECT receipts FROM blocks WHERE height = ?", (tip,)).fetchone()
    db.execute("UPDATE blocks SET receipts = ? WHERE height = ?",
               (bytes([receipts[0] ^ 1]) + receipts[1:], tip))
    db.commit()
    db.close()
    altered = BlockStore(copy, readonly=True)
    try:
        assert review_inputs(altered, v0.app.catalog, up, window=8)[0] != keys[0][0]
    finally:
        altered.close()


def test_committed_state_is_replayed_from_the_latest_snapshot(world, tmp_path, monkeypatch):
    """Issue 19: the running versions' replay starts from the latest snapshot at or below
    the tip (a heavy block inside the window is executed once, by the new version): the
    same verdicts as replaying the whole window twice, and those snapshots are review
    inputs (another set of them: another digest)."""
    import sqlite3

    from gridledger.ledger import dryrun
    from gridledger.ledger.dryrun import review_inputs
    from gridledger.node.store import BlockStore

    w = world
    w.transfers(12)
    honest = faulty_bank(CLAIMS_NOTHING, create_money=False)
    faulty = faulty_bank(FEE_RULE)
    v = w.net.validators[1]
    tip = w.net.height
    assert [h for h in v.store.snapshot_heights() if h > tip - 8]  # snapshots in the window
    # the same store without the snapshots above the window's start
    copy = tmp_path / "periodic.sqlite"
    src = sqlite3.connect(v.store.path)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    start = max(h for h in v.store.snapshot_heights() if h <= tip - 8)
    dst.execute("DELETE FROM snapshots WHERE height > ?", (start,))
    dst.commit()
    src.close()
    dst.close()
    periodic = BlockStore(copy, readonly=True)
    calls: list[int] = []
    real = dryrun.apply_block

    def counting(state, ctx, *a, **kw):
        calls.append(ctx.height)
        return real(state, ctx, *a, **kw)

    monkeypatch.setattr(dryrun, "apply_block", counting)
    for release, approve in ((honest, True), (faulty, False)):
        _install(w, release)
        up = Proposed(1, "bank", 2, release.build().declares.digest("bank", 2))
        calls.clear()
        latest = review_upgrade(v.store, w.genesis, v.app.catalog, up, window=8)
        n_latest = len(calls)
        calls.clear()
        whole = review_upgrade(periodic, w.genesis, v.app.catalog, up, window=8)
        n_whole = len(calls)
        assert latest == whole and latest.approve is approve, (latest, whole)
        assert latest.from_height == start
        if approve:  # every window block executed twice without, once (new version) with
            assert n_whole == 2 * (tip - start) and n_latest == tip - start
        assert review_inputs(v.store, v.app.catalog, up, window=8)[0] != \
            review_inputs(periodic, v.app.catalog, up, window=8)[0]
    periodic.close()



def test_the_committed_replay_is_scoped_and_the_trial_checks_every_invariant(
        world, tmp_path, monkeypatch):
    """Issue 17, sixteenth session: the running versions' replay of the committed blocks runs
    each inside a transaction, as the validators executed it (scoped invariants: only what
    the block wrote), while the new version's trial runs each outside one (every invariant,
    every entry: the release's own scoping, and what its keeper reads for other modules'
    invariants, are under review). The same verdict either way."""
    import sqlite3

    from gridledger.ledger import dryrun
    from gridledger.node.store import BlockStore

    w = world
    w.transfers(12)
    v = w.net.validators[1]
    copy = tmp_path / "genesis-only.sqlite"   # no snapshot: both replay every block
    src, dst = sqlite3.connect(v.store.path), sqlite3.connect(copy)
    src.backup(dst)
    dst.execute("DELETE FROM snapshots")
    dst.commit()
    src.close()
    dst.close()
    store = BlockStore(copy, readonly=True)
    seen: dict[int, list[bool]] = {}
    real = dryrun.apply_block

    def recording(state, ctx, *a, **kw):
        seen.setdefault(id(state), []).append(state.block_version() is not None)
        return real(state, ctx, *a, **kw)

    honest = faulty_bank(CLAIMS_NOTHING, create_money=False)
    _install(w, honest)
    up = Proposed(1, "bank", 2, honest.build().declares.digest("bank", 2))
    plain = review_upgrade(store, w.genesis, v.app.catalog, up, window=w.net.height)
    monkeypatch.setattr(dryrun, "apply_block", recording)
    verdict = review_upgrade(store, w.genesis, v.app.catalog, up, window=w.net.height)
    store.close()
    assert verdict == plain and verdict.approve and verdict.blocks == w.net.height, verdict
    modes = sorted((all(x), any(x), len(x)) for x in seen.values())
    assert modes == [(False, False, w.net.height), (True, True, w.net.height)], seen


# -- the dry run must run what a release replaces (ledger.dryrun step 5) --------------------

class _PayoutSlip:
    """A bank release's keeper: this build's keeper but ``pay_from_locked`` (the market's
    settlement pay-out), which creates a unit of money a pay-out."""

    def __getattr__(self, name: str) -> Any:
        return getattr(bank_keeper, name)

    def pay_from_locked(self, state: State, src: bytes, dst: bytes, amount: int) -> None:
        bank_keeper.pay_from_locked(state, src, dst, amount)
        bank_keeper.credit(state, dst, 1)


def _payout_release() -> Release:
    declares = Declaration(migration="none", changes=(bank_keeper.BAL,), receipts=True)
    return Release("bank", 2, lambda k: replace(bank.build(registry=k["registry"]), version=2,
                                                declares=declares), keeper=_PayoutSlip())


def _review_of(w: World, release: Release, **kw: Any):
    v = w.net.validators[1]
    d = v.app.catalog.declaration_digest(v.app.versions(), "bank", 2)
    return review_upgrade(v.store, w.genesis, v.app.catalog, Proposed(1, "bank", 2, d), **kw)


def test_dry_run_refuses_a_release_whose_replaced_code_no_block_runs(world):
    """No block of this chain settles a market slot, so nothing calls ``pay_from_locked``:
    the replay cannot vouch for the release's version of it (widened to genesis, still
    unrun) and the review refuses, naming it. Without the coverage rule it approves code
    it never ran."""
    w = world
    w.transfers(12)
    release = _payout_release()
    _install(w, release)
    verdict = _review_of(w, release, window=8)
    assert not verdict.approve and verdict.widened and verdict.from_height == 0, verdict
    assert "no committed block runs bank keeper pay_from_locked" in verdict.reason
    blind = _review_of(w, release, window=8, require_coverage=False)
    assert blind.approve and blind.replaced == () and blind.from_height > 0, blind


def test_a_window_without_the_replaced_code_is_widened_to_the_whole_chain(world):
    """The faulty transfer handler runs only in the first blocks; the window (8 blocks from
    a snapshot) holds none: the review widens to genesis and finds the money it creates.
    The same window without the coverage rule approves it (what a timed proposal gets)."""
    w = world
    w.transfers(6)
    for _ in range(14):
        w.block()
    release = faulty_bank(FEE_RULE)
    _install(w, release)
    covered = _review(w, release)   # window=8
    assert not covered.approve and covered.widened and "total-supply" in covered.reason, covered
    v = w.net.validators[1]
    d = release.build().declares.digest("bank", 2)
    short = review_upgrade(v.store, w.genesis, v.app.catalog, Proposed(1, "bank", 2, d),
                           window=8, require_coverage=False)
    assert short.approve and short.from_height > 0 and short.replaced == (), short
    honest = faulty_bank(CLAIMS_NOTHING, create_money=False)
    _install(w, honest)
    ok = _review(w, honest)
    assert ok.approve and ok.widened and ok.replaced == ("bank/transfer handler",), ok
