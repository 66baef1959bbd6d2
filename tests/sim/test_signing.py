"""What the demo moved off its main process gives what the main process made inline
(issues 17/19, demo speed): on the signature pool, clients' transactions (``sign_txs``),
each household's issuance (``member_issue``) and the trustees' batch certificate; in a
process of its own, the scan of every store for household readings and orders."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest

from gridledger.committee import CommitteeNode, CommitteeSigner, committee_of
from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.ledger.tx import TX_CONTEXT, decode_tx, sign_tx
from gridledger.node.sigpool import SigPool
from gridledger.privacy.errors import EndorsementRefused
from gridledger.privacy.ledger_io import certify_batch, certify_checked, check_part
from gridledger.privacy.pseudonyms import TrusteeKeys, TrusteeSet
from gridledger.privacy.pseudonyms.batch import CTX_BATCH, batch_message
from gridledger.sim.context import sign_txs
from gridledger.sim.features.privacy import MemberIssue, member_issue, member_issue_checked
from gridledger.sim.keys import sim_key
from tests.sim.conftest import DemoRun

CHAIN = "gridledger-demo"


@pytest.fixture(scope="module")
def pool() -> Iterator[SigPool]:
    p = SigPool(workers=2, min_sign_batch=2)
    yield p
    p.close()


def _keys(n: int, alg: str = "ml-dsa-44") -> list[SigningKey]:
    return [sim_key(7, "signing-test", i, alg=alg) for i in range(n)]


def test_sign_txs_gives_each_sender_its_next_nonces_as_sign_tx_does(pool: SigPool) -> None:
    a, b = _keys(2)
    nonces = {a.address: 5}
    items = [(a, "market/order", {"slot": 1}), (b, "bank/transfer", {"amount_micro": 1}),
             (a, "market/order", {"slot": 2}), (a, "metering/reading", {"slot": 1})]
    raws = sign_txs(pool, CHAIN, nonces, items)
    assert nonces == {a.address: 8, b.address: 1}
    inline = [decode_tx(sign_tx(k, CHAIN, n, kind, body))
              for (k, kind, body), n in zip(items, [5, 0, 6, 7], strict=True)]
    for raw, ref, (key, _kind, _body) in zip(raws, inline, items, strict=True):
        tx = decode_tx(raw)
        assert (tx.sender, tx.nonce, tx.kind, tx.body, tx.chain_id, tx.alg) == \
            (ref.sender, ref.nonce, ref.kind, ref.body, ref.chain_id, ref.alg)
        assert key.public_key.verify(tx.signing_bytes, tx.sig, TX_CONTEXT)


def test_sign_txs_signs_a_committees_transaction_here(pool: SigPool) -> None:
    members = _keys(3, "ml-dsa-65")
    committee = committee_of(2, members)
    signer = CommitteeSigner(committee, [CommitteeNode(f"n{i}", k) for i, k in enumerate(members)])
    key = _keys(1)[0]
    raws = sign_txs(pool, CHAIN, {}, [(key, "bank/transfer", {"amount_micro": 1}),
                                      (signer, "market/envelope", {"slot": 3})] * 2)
    txs = [decode_tx(r) for r in raws]
    assert [t.nonce for t in txs] == [0, 0, 1, 1]
    assert txs[1].sender == committee.address
    assert sign_txs(pool, CHAIN, {}, []) == []


def _trustees() -> tuple[list[TrusteeKeys], TrusteeSet]:
    tks = [TrusteeKeys(f"t{j}", sim_key(7, "trustee", j, alg="ml-dsa-44"),
                       KemKey(bytes([j]) * 64)) for j in range(3)]
    return tks, TrusteeSet("test-community", 2, tuple(t.info() for t in tks))


def test_a_households_issuance_in_a_worker_is_its_issuance_here(pool: SigPool) -> None:
    _tks, ts = _trustees()
    jobs = [MemberIssue(sim_key(7, "member", i), sim_key(7, "meter", i), f"cp-{i}", ts, 1,
                        ((96, 96), (97, 97), (98, 98)), 7, bytes([i]) * 32) for i in range(3)]
    here = [member_issue(j) for j in jobs]
    there = pool.map(member_issue, jobs)
    for (own, rk, st), (own2, rk2, st2) in zip(here, there, strict=True):
        # the seeded parts are equal (escrow ciphertexts and signatures are randomised)
        assert [p.address for p in own] == [p.address for p in own2]
        assert [p.entry.first_slot for p in own2] == [96, 97, 98]
        assert rk == rk2 and st.bindings == st2.bindings and st.salts == st2.salts
        assert pickle.loads(pickle.dumps(own2[0].key)) == own[0].key


def test_the_trustees_side_by_side_certify_the_batch_they_certify_in_turn(
        pool: SigPool) -> None:
    tks, ts = _trustees()
    job = MemberIssue(sim_key(7, "member", 0), sim_key(7, "meter", 0), "cp-0", ts, 1,
                      ((96, 96), (97, 97)), 7, None)
    entries = [p.entry for p in member_issue(job)[0]]
    serial = certify_batch(tks, ts, entries, 1, 96)
    pooled = certify_batch(tks, ts, entries, 1, 96, pool.map)
    assert pooled.root == serial.root and pooled.entries == serial.entries
    body = pooled.certify_body
    assert body["count"] == 2 and [j for j, _ in body["endorsements"]] == [0, 1, 2]
    msg = batch_message(ts.community, 1, body["root"], body["count"])
    for (_j, sig), tk in zip(body["endorsements"], tks, strict=True):
        assert tk.signing_key.public_key.verify(msg, sig, CTX_BATCH)


def test_the_trustees_checks_part_by_part_certify_the_batch_the_whole_check_certifies(
        pool: SigPool) -> None:
    """Each household's requests checked as soon as they are made (``member_issue_checked``
    on the pool), then signed as one batch (``certify_checked``): the same entries, in the
    same order, the same root and count as ``certify_batch`` of all of them; each
    endorsement verifies (daywall, issue 19)."""
    tks, ts = _trustees()
    jobs = [MemberIssue(sim_key(7, "member", i), sim_key(7, "meter", i), f"cp-{i}", ts, 1,
                        ((96, 96), (97, 97), (98, 98)), 7, None, tuple(tks)) for i in range(3)]
    checked = pool.map(member_issue_checked, jobs)
    parts = []
    for (issued, leaves), job in zip(checked, jobs, strict=True):
        assert leaves is not None and len(leaves) == len(tks)
        assert [p.address for p in issued[0]] == [p.address for p in member_issue(job)[0]]
        parts.append(([p.entry for p in issued[0]], leaves))
    batch = certify_checked(tks, ts, parts, 1)
    whole = certify_batch(tks, ts, [e for part, _ in parts for e in part], 1, 96)
    assert batch.entries == whole.entries and batch.root == whole.root
    body = batch.certify_body
    assert (body["epoch"], body["count"], [j for j, _ in body["endorsements"]]) == (1, 9, [0, 1, 2])
    msg = batch_message(ts.community, 1, body["root"], body["count"])
    for (_j, sig), tk in zip(body["endorsements"], tks, strict=True):
        assert tk.signing_key.public_key.verify(msg, sig, CTX_BATCH)


def test_a_refused_request_is_named_by_the_whole_batchs_check(pool: SigPool) -> None:
    """A part with a bad entry gives no leaves (``member_issue_checked``: None), and the
    same entries' whole check (``certify_batch``) refuses naming it as before."""
    tks, ts = _trustees()
    job = MemberIssue(sim_key(7, "member", 0), sim_key(7, "meter", 0), "cp-0", ts, 1,
                      ((96, 96), (500, 500)), 7, None, tuple(tks))   # a slot outside epoch 1
    issued, leaves = pool.map(member_issue_checked, [job])[0]
    assert leaves is None
    with pytest.raises(EndorsementRefused, match="entry 1: slots must lie inside epoch 1"):
        check_part(tks, ts, [p.entry for p in issued[0]], 1, 96)
    with pytest.raises(EndorsementRefused, match="slots must lie inside epoch 1"):
        certify_batch(tks, ts, [p.entry for p in issued[0]], 1, 96)


def test_a_key_pickled_after_its_public_key_was_derived_brings_it_along() -> None:
    """A pseudonym key made in a worker arrives with its public key (no ML-DSA key
    generation again where it is unpickled); a key whose public key was never derived
    pickles as before; both are the same key (daywall, issue 19)."""
    fresh, used = sim_key(7, "pickle", 0), sim_key(7, "pickle", 1)
    address = used.address
    back, back_used = pickle.loads(pickle.dumps(fresh)), pickle.loads(pickle.dumps(used))
    assert "public_key" not in back.__dict__ and back == fresh
    assert back_used.__dict__["public_key"] == used.public_key and back_used == used
    assert back_used.address == address and back.address == fresh.address
    sig = back_used.sign(b"m", b"c")
    assert used.public_key.verify(b"m", sig, b"c")


def test_the_clear_scan_in_a_process_of_its_own_counts_what_it_counts_here(
        default_day: DemoRun) -> None:
    from gridledger.sim.privacy_view import (
        count_clear_in,
        count_clear_in_background,
        genesis_owners,
    )

    paths = sorted((default_day.out / "ledger").glob("*.sqlite"))
    owners = genesis_owners(paths[0])
    cp = min(owners.values())  # one household out of every epoch's pool: both sides counted
    out_of = {e: frozenset({cp}) for e in range(0, 400)}
    there = count_clear_in_background(paths, owners, frozenset(), out_of)
    assert there.result(timeout=600) == count_clear_in(paths, owners, frozenset(), out_of)
    p = default_day.summary["privacy"]
    assert p["stores_scanned"] == len(paths) == 4  # the demo's own (background) scan
    assert p["clear_household_readings"] == p["clear_household_orders"] == 0


def test_pending_txs_take_their_nonces_and_ids_now_and_their_bytes_are_sign_txs_ones(
        pool: SigPool) -> None:
    """``PendingTxs`` (``SimContext.txs_ahead``): the nonces are taken when the batch is
    started — a batch started after it signs with the next ones, whichever is read first —
    its ids (``Tx.id``) are known before the signatures, and its bytes are the transactions
    ``sign_txs`` makes (issue 17, twelfth session)."""
    from gridledger.sim.context import PendingTxs

    a, b = _keys(2)
    nonces: dict[bytes, int] = {}
    first = PendingTxs(pool, CHAIN, nonces, [(a, "market/order", {"slot": s}) for s in range(3)])
    second = PendingTxs(pool, CHAIN, nonces, [(a, "market/order", {"slot": 9}),
                                               (b, "bank/transfer", {"amount_micro": 1})])
    assert nonces == {a.address: 4, b.address: 1}
    ids = list(first.ids)
    later = [decode_tx(r) for r in second]   # read before the first batch
    earlier = [decode_tx(r) for r in first]
    assert [t.nonce for t in earlier] == [0, 1, 2] and [t.nonce for t in later] == [3, 0]
    assert [t.id for t in earlier] == ids and len(first) == 3 and first[0] == list(first)[0]
    for t, key in zip(earlier + later, [a, a, a, a, b], strict=True):
        assert key.public_key.verify(t.signing_bytes, t.sig, TX_CONTEXT)


def test_a_pending_batchs_signing_failure_is_raised_not_hung() -> None:
    """The pool's workers gone while a batch signs (killed: ``BrokenProcessPool``) is
    raised where the phase's batches are started or read (``phase_txs``), not waited for
    forever."""
    from concurrent.futures.process import BrokenProcessPool

    from gridledger.sim.context import PendingTxs
    from gridledger.sim.engine import phase_txs

    p = SigPool(workers=2, min_sign_batch=2)
    try:
        key = _keys(1)[0]
        assert len(p.sign_many([(key.alg, key.seed, b"warm", b"")] * 4)) == 4
        for proc in list(p._executor()._processes.values()):
            proc.kill()
        with pytest.raises(BrokenProcessPool):
            phase_txs([[b"first"], PendingTxs(p, CHAIN, {}, [
                (key, "market/order", {"slot": s}) for s in range(8)])])
    finally:
        p.close()


def test_the_engine_reads_a_phases_batches_after_every_feature_made_its_own() -> None:
    """``phase_txs`` gets every feature's batch first and reads them after, in feature
    order: a batch still signing (``PendingTxs``) overlaps the later features' work."""
    from collections.abc import Sequence

    from gridledger.sim.engine import phase_txs

    log: list[str] = []

    class Batch(Sequence[bytes]):
        def __init__(self, name: str, raws: list[bytes]) -> None:
            self.name, self.raws = name, raws

        def __len__(self) -> int:
            return len(self.raws)

        def __getitem__(self, i):  # type: ignore[no-untyped-def]
            log.append(f"read {self.name}")
            return self.raws[i]

        def __iter__(self):  # type: ignore[no-untyped-def]
            log.append(f"read {self.name}")
            return iter(self.raws)

    def feature(name: str, raws: list[bytes]) -> Batch:
        log.append(f"made {name}")
        return Batch(name, raws)

    out = phase_txs([feature("trading", [b"o1", b"o2"]), feature("flex", [b"f"]), []])
    assert out == [b"o1", b"o2", b"f"]
    assert log == ["made trading", "made flex", "read trading", "read flex"]
