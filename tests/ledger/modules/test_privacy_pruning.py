"""Pruning a paid-out epoch's pseudonyms (issue 17): a dispute window after the epoch's
claims deadline each retired pseudonym's public record (``pv/ps``, ~1.6 KB with its key)
and epoch index entry give way to a used marker, so a week's state no longer holds a record
for every pseudonym ever registered (members x 96 a day) — and the address is still never
registered again; a dispute recorded inside the window keeps the record it reads."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gridledger.ledger.modules.privacy import keeper as pv
from gridledger.ledger.modules.privacy.pool import prune_time
from gridledger.ledger.modules.privacy.records import dispute_id_for_trade, pseudo_cp
from gridledger.node.verify import verify_store
from gridledger.privacy.ledger_io import claim_amount, escrow_body, release_body
from tests.ledger.modules.test_privacy_ledger import (
    _naming,
    _pay_out_epoch1,
    claim,
    finals,
    trade_epoch1,
)
from tests.privacy.net import (
    ALLOWANCE,
    EPOCH_SLOTS,
    FW,
    SETTLE,
    PrivacyNet,
    S,
    epoch_close_time,
    issue,
    pool_net,
)

CLAIM_WINDOW = 900


def _prune_at(w: PrivacyNet, epoch: int) -> int:
    cfg = pv.config(w.state)
    assert cfg is not None
    return prune_time(w.state, cfg, epoch)


def _value_bytes(w: PrivacyNet, prefix: bytes) -> int:
    return sum(len(w.state.get(k) or b"") for k in w.state.keys_with_prefix(prefix))


def test_a_paid_out_epochs_pseudonyms_are_pruned_a_dispute_window_later(tmp_path: Path) -> None:
    w = pool_net(tmp_path)
    iss = trade_epoch1(w)
    ps = [p for own in iss.own.values() for p in own]
    marks = ([p.address for p in ps] + [iss.reading_key(p).address for p in ps]
             + [pseudo_cp(p.address).encode() for p in ps])
    _pay_out_epoch1(w, iss)
    at = _prune_at(w, 1)
    assert at > w.now and pv.epochs_to_prune(w.state) == [1]
    w.ok([], at - 1)  # inside the window: the public record is all there
    assert not w.events("pseudonyms_pruned")
    assert all(pv.get_pseudonym(w.state, p.address) is not None for p in ps)
    records = _value_bytes(w, pv.PSEUDONYM)
    w.ok([], at)
    assert w.events("pseudonyms_pruned") == [
        {"type": "pseudonyms_pruned", "epoch": 1, "pruned": 3, "kept": 0}]
    # only the used markers name the pseudonyms now (a few bytes each, not ~1.6 KB)
    assert [k for k in _naming(w.state, marks) if not k.startswith(b"meter/r/")] == sorted(
        pv.USED + p.address for p in ps)
    assert records > 3 * 1000 and _value_bytes(w, pv.PSEUDONYM) == 0
    assert _value_bytes(w, pv.USED) < 3 * 16
    assert pv.epochs_to_prune(w.state) == [] and w.state.get(pv.TO_PRUNE) is None
    s0 = iss.own[0][0].address
    app = w.net.entry.app
    assert app.query(f"privacy/pseudonym/{s0.hex()}") == {"epoch": 1, "pruned": True}
    assert app.query("privacy/pseudonyms/1") == []
    out = w.run([w.tx(w.dso, "privacy/meter_image", {"pseudonym": s0, "firmware": FW})],
                at + 10)
    assert out[0].rule == "pseudonym-retired"
    for v in w.net.validators:  # every validator replays the pruning to the same root
        report = verify_store(v.store_path)
        assert report.ok, report.reason
        assert report.state_root == w.state.root()


def _seeded(seed: bytes) -> Callable[[int], bytes]:
    """Randomness whose first 32 bytes (the pseudonym key's seed) are ``seed``: the same
    pseudonym key again, in another epoch."""
    first = [True]

    def rnd(n: int) -> bytes:
        if first[0] and n == 32:
            first[0] = False
            return seed
        return os.urandom(n)
    return rnd


@pytest.mark.parametrize("marker", [True, False])
def test_a_pruned_pseudonym_is_never_registered_again(tmp_path: Path, marker: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # removal test: without the used marker the pruned address registers again (its nonce
    # starts over, so the transactions it signed in its own epoch could be replayed)
    w = pool_net(tmp_path)
    seed = hashlib.sha256(b"reused pseudonym").digest()
    iss = issue(w, 1, {0: [5]}, at=4 * S - 900, random_bytes=_seeded(seed))
    addr = iss.own[0][0].address
    close = epoch_close_time(1)
    w.ok([], close)
    f = finals(w, iss)
    w.ok([claim(w, 0, 1, claim_amount(1, ALLOWANCE, [f[addr]]))], close + 10)
    w.ok([], close + 10 + CLAIM_WINDOW)
    at = _prune_at(w, 1)
    w.ok([], at)
    assert pv.get_pseudonym(w.state, addr) is None and pv.pruned_epoch(w.state, addr) == 1
    if not marker:
        monkeypatch.setattr(pv, "pruned_epoch", lambda state, a: None)
    epoch = w.now // S // EPOCH_SLOTS + 1
    slot = epoch * EPOCH_SLOTS + 1
    again = _reissue(w, epoch, slot, seed)
    if marker:
        assert again == "pseudonym-registered"
        assert pv.get_pseudonym(w.state, addr) is None
    else:
        assert again is None
        rec = pv.get_pseudonym(w.state, addr)
        assert rec is not None and rec.epoch == epoch


def _reissue(w: PrivacyNet, epoch: int, slot: int, seed: bytes) -> str | None:
    """``issue`` of one pseudonym with key seed ``seed`` for user 0 in ``epoch``; returns
    the registration's rule (None: registered)."""
    from gridledger.privacy.ledger_io import (
        attest_body,
        certify_batch,
        make_pseudonyms,
        register_bodies,
    )
    from gridledger.privacy.meter_keys import attest_readings, issue_reading_keys
    from tests.privacy.net import COMMUNITY, FEEDER

    at = w.now + 10
    w.ok([w.tx(w.users[0], "privacy/join", {"epoch": epoch, "tickets": 1})], at)
    own = make_pseudonyms(w.users[0], w.trustee_set, epoch, [(slot, slot)], FEEDER,
                          random_bytes=_seeded(seed))
    keys, st = issue_reading_keys(w.meters[0], COMMUNITY, "cp0", epoch, [own[0].address])
    att = attest_readings(COMMUNITY, epoch, [st], {"cp0": w.meters[0].public_key}, {"cp0": 1})
    batch = certify_batch(w.trustee_keys, w.trustee_set, [own[0].entry], epoch, EPOCH_SLOTS)
    w.ok([w.tx(w.dso, "privacy/attest", attest_body(att)),
          w.tx(w.trustee_keys[0].signing_key, "privacy/certify", batch.certify_body)], at + 1)
    body = register_bodies(w.trustee_set, batch, att, {a: k.public_key for a, k in keys.items()})
    out = w.run([w.tx(w.trustee_keys[1].signing_key, "privacy/register", body[0])], at + 2)
    return out[0].rule


def test_a_dispute_recorded_inside_the_window_keeps_its_pseudonym_and_still_opens(
        tmp_path: Path) -> None:
    w = pool_net(tmp_path)
    iss = trade_epoch1(w, deliver_wh=0)  # the seller's pseudonym delivers nothing
    s0, b1 = iss.own[0][0], iss.own[1][0]
    w.ok([w.tx(b1.key, "disputes/claim", {"slot": 5, "trade": 0, "claim": "non-delivery"})],
         6 * S + SETTLE + 100)
    _pay_out_epoch1(w, iss)
    at = _prune_at(w, 1)
    # after pay-out, inside the window: the decided dispute becomes an opening request
    w.ok([w.tx(w.users[2], "privacy/request_opening",
               {"slot": 5, "trade": 0, "claim": "non-delivery"})], at - 100)
    w.ok([], at)
    assert w.events("pseudonyms_pruned") == [
        {"type": "pseudonyms_pruned", "epoch": 1, "pruned": 2, "kept": 1}]
    assert pv.get_pseudonym(w.state, s0.address) is not None  # the dispute reads it
    assert pv.pruned_epoch(w.state, b1.address) == 1
    did = dispute_id_for_trade(5, 0, "non-delivery")
    w.ok([w.tx(w.trustee_keys[2].signing_key, "privacy/escrow", escrow_body(did, s0.escrow))],
         at + 10)
    w.ok([w.tx(tk.signing_key, "privacy/release", release_body(tk, w.trustee_set, did,
                                                               [s0.escrow]))
          for tk in w.trustee_keys[:2]], at + 20)
    assert w.events("identity_opened")[-1]["identity"] == w.users[0].address
    assert pv.get_pseudonym(w.state, s0.address) is not None  # opened: kept for good


def test_after_the_window_a_decided_dispute_no_longer_opens_a_pruned_pseudonym(
        tmp_path: Path) -> None:
    w = pool_net(tmp_path)
    iss = trade_epoch1(w, deliver_wh=0)
    b1 = iss.own[1][0]
    w.ok([w.tx(b1.key, "disputes/claim", {"slot": 5, "trade": 0, "claim": "non-delivery"})],
         6 * S + SETTLE + 100)
    _pay_out_epoch1(w, iss)
    at = _prune_at(w, 1)
    w.ok([], at)
    assert w.events("pseudonyms_pruned")[0]["pruned"] == 3
    out = w.run([w.tx(w.users[2], "privacy/request_opening",
                      {"slot": 5, "trade": 0, "claim": "non-delivery"})], at + 10)
    assert out[0].rule == "pseudonym-pruned"


@pytest.mark.parametrize("drop", [True, False])
def test_a_pruned_pseudonyms_penalty_record_goes_with_it(
        tmp_path: Path, drop: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retired pseudonym keeps a score below neutral (an opening would carry it to its
    owner); once pruned it can never be opened, so the record goes too. Removal test:
    without ``Reputation.drop`` it stays for good (+~100 a day at 10 members)."""
    from gridledger.ledger.modules.reputation import keeper as rep
    w = pool_net(tmp_path)
    seed = hashlib.sha256(b"penalised pseudonym").digest()
    iss = issue(w, 1, {0: [5]}, at=4 * S - 900, random_bytes=_seeded(seed))
    p = iss.own[0][0]
    # a transaction of the pseudonym that fails in execution: a rejection penalty
    out = w.run([w.tx(p.key, "certificates/cancel", {"items": [[5, 1, 1]]})], 5 * S + 10)
    assert out[0].rule == "certificate-unknown"
    assert rep.reputation_of(w.state, p.address) < rep.NEUTRAL
    close = epoch_close_time(1)
    w.ok([], close)
    f = finals(w, iss)
    w.ok([claim(w, 0, 1, claim_amount(1, ALLOWANCE, [f[p.address]]))], close + 10)
    w.ok([], close + 10 + CLAIM_WINDOW)
    assert w.state.get(rep.REP + p.address) is not None      # retired, penalty kept
    if not drop:
        monkeypatch.setattr(rep, "drop", lambda state, addr: False)
    w.ok([], _prune_at(w, 1))
    assert pv.pruned_epoch(w.state, p.address) == 1
    assert (w.state.get(rep.REP + p.address) is None) == drop
