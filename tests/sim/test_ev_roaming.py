"""``ev-roaming`` (docs/threat-model.md row 13) against a real ledger, driven by a small stand-in for the
engine: the EV charges abroad on two evenings (each session booked at home first, charged
abroad in the next slot), the home DSO books both charges, and the curious foreign DSO
learns no identity — until the EV shows its own key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.ledger import codec
from gridledger.ledger.modules.governance.keeper import grid_account
from gridledger.ledger.modules.privacy import keeper as pv
from gridledger.privacy.roaming import CTX_BILL, RoamingLimits, authorisation_message
from gridledger.sim import attacks
from gridledger.sim.community import Member
from gridledger.sim.keys import sim_key
from gridledger.sim.ledger_view import LedgerView
from gridledger.sim.roaming import FOREIGN_COMMUNITY, FOREIGN_DSO, EvRoaming, Visit
from tests.privacy.net import PrivacyNet, make_net

FIRST = 3 * 96   # a day of slots, epoch 3
DAY = 96


@dataclass
class PrivacyKeys:
    trustee_keys: list[Any]
    trustee_set: Any
    billing_kem: KemKey
    foreign_dso_key: SigningKey


class FakeEngine:
    """What ``EvRoaming`` uses of the engine, over a ``PrivacyNet`` ledger (four validators)."""

    def __init__(self, w: PrivacyNet, ev_owner: int = 1) -> None:
        self.w = w
        self.sc = SimpleNamespace(seed=7, slots=DAY, first_slot=FIRST)
        self.members = [Member(i, f"h{i:02d}", f"cp{i}", k, w.meters[i], "prosumer",
                               ("ev",) if i == ev_owner else ("pv",), None)
                        for i, k in enumerate(w.users)]
        keys = PrivacyKeys(w.trustee_keys, w.trustee_set, KemKey(b"\x05" * 64),
                           sim_key(7, "foreign-dso", 0, alg="ml-dsa-44"))
        self.community = SimpleNamespace(dso=w.dso, dso_roaming_key=w.dso, privacy_keys=keys,
                                         members=self.members)
        self.net = w.net
        self.ledger = LedgerView(w.net.entry.app)

    @property
    def first(self) -> int:
        return FIRST

    def in_window(self, slot: int, start: float, end: float) -> bool:
        k = slot - FIRST
        if not 0 <= k < DAY:
            return False
        return int(start * DAY) <= k < max(int(end * DAY), int(start * DAY) + 1)

    def tx(self, key: SigningKey, kind: str, body: dict[str, Any]) -> bytes:
        return self.w.tx(key, kind, body)

    def run(self, attack: EvRoaming) -> None:
        for i, slot in enumerate(range(FIRST, FIRST + DAY)):
            raws = attack.txs_block_a(slot, True)
            if raws:
                self.w.run(raws, 1000 + 10 * i)
                fb = self.w.blocks[-1]
                res = fb.result
                events = list(res.block_events) + [e for r in res.receipts for e in r.events]
                attack.on_block(fb, events)


def world(tmp: Path, partners: bool = True) -> PrivacyNet:
    f = sim_key(7, "foreign-dso", 0, alg="ml-dsa-44")
    return make_net(tmp, privacy={"roaming_partners": [
        {"community": FOREIGN_COMMUNITY, "dso_id": FOREIGN_DSO, "alg": f.alg,
         "pk": f.public_key.raw}] if partners else []})


class SmallEvRoaming(EvRoaming):
    session_wh = (2_000, 8_000)  # the test world's members hold 10 CU


def play(w: PrivacyNet) -> tuple[EvRoaming, dict[str, Any]]:
    eng = FakeEngine(w)
    a = SmallEvRoaming(eng, {})  # type: ignore[arg-type]
    a.setup()
    eng.run(a)
    return a, a.result()


def test_ev_roams_settles_at_home_and_the_foreign_side_learns_no_identity(
        tmp_path: Path) -> None:
    w = world(tmp_path)
    grid = grid_account(w.state)
    assert grid is not None
    money, before = w.money(), (w.bal(w.users[1].address), w.bal(grid))
    a, r = play(w)
    assert a.owner.name == "h01" and not a.owner.honest
    assert r["sessions"] == r["injected"] == 2 and r["settled"] == 2 and r["authorised"] == 2
    assert r["mitigated"] and r["loss"] == 0 and r["detected"] == 0 and r["passive"]
    assert not r["identity_learned"] and r["ledger_links"] == 0
    assert r["distinct_pseudonyms"] == 2 and r["home_refusals"] == [] and r["ledger_refusals"] == {}
    # the member paid exactly energy x price, the grid account got it and owes the partner
    paid = r["expected_micro"]
    assert paid == r["charged_micro"] == sum(v.amount_micro for v in a.visits) > 0
    assert (w.bal(w.users[1].address), w.bal(grid)) == (before[0] - paid, before[1] + paid)
    assert w.money() == money
    assert pv.roaming_due(w.state, FOREIGN_COMMUNITY, FOREIGN_DSO) == paid
    assert {"injected", "detected", "mitigated", "loss", "threat", "defence"} <= set(r)


def test_without_the_defence_the_foreign_side_sees_the_members_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # defence removed: the EV presents its own identity key instead of a fresh pseudonym
    monkeypatch.setattr(EvRoaming, "ev_key", lambda self, n: self.owner.key)
    a, r = play(world(tmp_path))
    assert r["settled"] == 2  # billing still works ...
    assert r["identity_learned"] and not r["mitigated"]  # ... but the foreign DSO knows who
    assert all(a.owner.key.public_key.raw in v.foreign_view for v in a.visits)


def test_ledger_links_catch_a_charge_signed_over_the_certificate_itself(tmp_path: Path) -> None:
    a, _ = play(world(tmp_path))
    v = a.visits[0]
    assert v.charge_body is not None and not a._ledger_links(v)
    # the naive design: the member's authorisation commits to the certificate digest the
    # foreign DSO knows, without a salt
    assert v.authorise_body is not None
    auth = v.authorise_body
    limits = RoamingLimits(auth["max_energy_wh"], auth["price_cap_micro_per_kwh"])
    sig = a.owner.key.sign(authorisation_message(a.keys.trustee_set.community, auth["account"],
                                                 auth["seq"], v.certificate_digest, limits),
                           CTX_BILL)
    naive = {**auth, "commitment": v.certificate_digest, "billing_sig": sig}
    assert a._ledger_links(Visit(**{**v.__dict__, "authorise_body": naive}))
    assert a._names_owner(codec.encode({"x": a.owner.address}))


def test_a_foreign_dso_the_home_ledger_does_not_pin_is_not_paid(tmp_path: Path) -> None:
    _, r = play(world(tmp_path, partners=False))
    assert r["settled"] == 0 and len(r["home_refusals"]) == 2 and not r["mitigated"]
    assert r["loss"] == 0  # nothing charged (the holds go back when they expire)


# ---------------------------------------------------------------------------- the real engine
def _engine_has_privacy() -> bool:
    from gridledger.sim.community import Community

    return "privacy_keys" in Community.__dataclass_fields__


@pytest.mark.slow
@pytest.mark.skipif(not _engine_has_privacy(), reason="genesis has no privacy section yet")
def test_ev_roaming_in_a_demo_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.sim.test_demo import EVENING, run

    monkeypatch.setitem(attacks.ATTACK_CLASSES, EvRoaming.name, EvRoaming)
    s = run(tmp_path / "on", (EvRoaming.name,), start=EVENING)
    r = s["attacks"][EvRoaming.name]
    assert r["injected"] == r["settled"] == 2 and r["mitigated"] and r["loss"] == 0
    assert not r["identity_learned"] and r["ledger_links"] == 0
    assert s["invariants"]["honest_not_worse"]
    # the charges are ledger state: the same seed gives the same root (no KEM randomness in it)
    again = run(tmp_path / "again", (EvRoaming.name,), start=EVENING)
    assert again["ledger"]["state_root"] == s["ledger"]["state_root"]
    monkeypatch.setattr(EvRoaming, "ev_key", lambda self, n: self.owner.key)
    off = run(tmp_path / "off", (EvRoaming.name,), start=EVENING)["attacks"][EvRoaming.name]
    assert off["settled"] == 2 and off["identity_learned"] and not off["mitigated"]
