"""Issue 16 on the ledger: granular certificates issued from settled, unflagged readings,
transferred with delivered energy, cancelled once against consumption in the same hour,
stored into a battery and discharged with their origin; every block passes the module's
invariants (``tests.conftest.apply`` runs them all)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gridledger.errors import InvariantViolation
from gridledger.ledger.app import Application
from gridledger.ledger.execute import run_invariants
from gridledger.ledger.modules.catalog import modules as catalog_modules
from gridledger.ledger.modules.certificates import handlers as cert_handlers
from gridledger.ledger.modules.certificates import keeper
from gridledger.ledger.rules import chain_rules
from gridledger.ledger.state import verify_membership
from tests.ledger.modules.world import SETTLE, S, World, make_world, t_clear, t_order, t_read, t_settle

SLOT = 8            # hour 2 (4 slots of 900 s an hour)
EVIDENCE = b"\x11" * 32
SOLAR_W = 8_000     # 8 kW: at most 8000 * 0.25 h * 1.1 = 2200 Wh a slot


def register(w: World, *devices: list[Any]) -> bytes:
    return w.tx(w.dso, "certificates/register_devices", {"devices": [list(d) for d in devices]})


def items(*triples: tuple[int, int, int]) -> list[list[int]]:
    return [list(t) for t in triples]


def cancel(w: World, i: int, *triples: tuple[int, int, int]) -> bytes:
    return w.tx(w.users[i], "certificates/cancel", {"items": items(*triples)})


def transfer(w: World, i: int, to: bytes, *triples: tuple[int, int, int]) -> bytes:
    return w.tx(w.users[i], "certificates/transfer", {"to": to, "items": items(*triples)})


def mine(w: World, i: int, slot: int = SLOT, status: str = "active") -> list[tuple[int, int]]:
    """(start, size) of user i's bundles of ``slot`` with ``status``."""
    return [(s, b.size(s)) for s, b in keeper.bundles_of_slot(w.app.state, slot)
            if b.owner == w.addr(i) and b.status == status]


def traded_slot(w: World, *, seller_export: int = 1_000, buyer_import: int = 800,
                flag: bool = False, slot: int = SLOT, extra: tuple[bytes, ...] = ()) -> None:
    """User 0 (PV) sells 600 Wh to user 1 in ``slot``; readings (and ``extra``);
    settlement."""
    w.ok([w.order(0, slot, "sell", 600, 100_000), w.order(1, slot, "buy", 600, 200_000)],
         t_order(slot))
    w.ok([], t_clear(slot))
    txs = [w.reading(0, slot, 0, seller_export), w.reading(1, slot, buyer_import, 0), *extra]
    if flag:
        txs.append(w.tx(w.dso, "metering/flag", {"slot": slot, "cp": "cp0", "import_wh": 0,
                                                 "export_wh": 300, "evidence": EVIDENCE}))
    w.ok(txs, t_read(slot))
    w.ok([], t_settle(slot))


@pytest.fixture
def w() -> World:
    w = make_world(4, consumers=(1,))
    w.ok([register(w, ["cp0", SOLAR_W, 0, 0, 100])], 100)
    return w


def test_issued_from_settled_export_and_transferred_for_delivered_energy(w: World) -> None:
    traded_slot(w)
    st = w.app.state
    iss = keeper.issuance(st, SLOT, "cp0")
    assert iss is not None and (iss.export_wh, iss.solar_wh, iss.flagged) == (1_000, 1_000, False)
    # the buyer holds GCs for the 600 Wh delivered, the seller the 400 Wh it fed in
    assert [n for _, n in mine(w, 1)] == [600] and [n for _, n in mine(w, 0)] == [400]
    t = keeper.totals(st)
    assert (t.issued_wh, t.transferred_wh, t.consumption_wh) == (1_000, 600, 800)
    assert w.events("certificates_transferred")[0]["energy_wh"] == 600
    # zone and issuing metadata: defaults without a genesis section
    assert iss.zone == "community"


def test_delivered_not_contracted_energy_is_transferred(w: World) -> None:
    traded_slot(w, seller_export=250)
    assert [n for _, n in mine(w, 1)] == [250]
    assert mine(w, 0) == []
    assert keeper.totals(w.app.state).issued_wh == 250


def test_flagged_reading_issues_nothing(w: World) -> None:
    traded_slot(w, flag=True)
    st = w.app.state
    assert keeper.bundles_of_slot(st, SLOT) == []
    iss = keeper.issuance(st, SLOT, "cp0")
    assert iss is not None and iss.flagged and iss.solar_wh == 0
    withheld = w.events("certificates_withheld")
    assert withheld == [{"type": "certificates_withheld", "slot": SLOT, "cp": "cp0",
                         "energy_wh": 1_000, "reason": "flagged"}]
    # the buyer's import is consumption with no GC: residual mix
    assert w.app.query("certificates/totals")["residual_wh"] == 800


def test_export_beyond_the_device_capacity_is_not_certified(w: World) -> None:
    traded_slot(w, seller_export=5_000)
    assert keeper.totals(w.app.state).issued_wh == 2_200
    assert keeper.totals(w.app.state).capped_wh == 2_800


def test_no_device_no_certificate_and_no_state_written() -> None:
    """Chains that register no device keep their bytes: the module writes nothing."""
    a, b = make_world(4, consumers=(1,)), make_world(4, consumers=(1,))
    b.app = Application(b.app.genesis, [m for m in catalog_modules() if m.name != "certificates"])
    for x in (a, b):
        traded_slot(x)
    assert a.app.state.root() == b.app.state.root()
    assert a.app.state.keys_with_prefix(b"cert/") == []


def test_cancel_once_against_consumption_then_final(w: World) -> None:
    traded_slot(w)
    (start, _n), = mine(w, 1)
    at = t_settle(SLOT) + 10
    w.ok([cancel(w, 1, (SLOT, start, 500))], at)
    assert mine(w, 1, status="cancelled") == [(start, 500)]
    assert mine(w, 1) == [(start + 500, 100)]
    m = keeper.matching(w.app.state, SLOT // 4, w.addr(1))
    assert (m.consumption_wh, m.cancelled_wh) == (800, 500)
    # the same GCs again, a transfer of them, both in one message: refused, nothing moves
    res = w.block([cancel(w, 1, (SLOT, start, 500)),
                   transfer(w, 1, w.addr(2), (SLOT, start, 500)),
                   w.tx(w.users[1], "certificates/cancel",
                        {"items": items((SLOT, start + 500, 50), (SLOT, start + 500, 50))})],
                  at + 1)
    assert [r.rule for r in res.receipts] == ["certificate-not-active", "certificate-not-active",
                                              "certificate-listed-twice"]
    assert keeper.matching(w.app.state, SLOT // 4, w.addr(1)).cancelled_wh == 500
    assert mine(w, 2) == [] and mine(w, 2, status="cancelled") == []


def test_claim_limited_by_metered_import_and_ownership(w: World) -> None:
    traded_slot(w, buyer_import=300)
    (start, _), = mine(w, 1)
    (s0, _), = mine(w, 0)
    at = t_settle(SLOT) + 10
    res = w.block([cancel(w, 1, (SLOT, start, 301)), cancel(w, 1, (SLOT, s0, 10)),
                   cancel(w, 1, (SLOT, start + 1, 10)), cancel(w, 1, (SLOT, start, 601)),
                   cancel(w, 0, (SLOT, s0, 1))], at)
    assert [r.rule for r in res.receipts] == [
        "claim-exceeds-consumption", "certificate-not-owner", "certificate-unknown",
        "certificate-exceeded", "claim-exceeds-consumption"]   # user 0 imported nothing
    w.ok([cancel(w, 1, (SLOT, start, 300))], at + 1)
    assert keeper.matching(w.app.state, SLOT // 4, w.addr(1)).cancelled_wh == 300


def test_transfer_then_recipient_cancels_in_the_same_hour(w: World) -> None:
    traded_slot(w, extra=(w.reading(2, SLOT, 700, 0),))   # user 2 imports 700 Wh
    (s0, _), = mine(w, 0)
    at = t_settle(SLOT) + 10
    res = w.block([transfer(w, 0, w.addr(0), (SLOT, s0, 10)),
                   transfer(w, 0, b"\x05" * 32, (SLOT, s0, 10))], at)
    assert [r.rule for r in res.receipts] == ["certificate-to-self", "certificate-recipient-unknown"]
    w.ok([transfer(w, 0, w.addr(2), (SLOT, s0, 400))], at + 1)
    w.ok([cancel(w, 2, (SLOT, s0, 400))], at + 2)
    assert keeper.matching(w.app.state, SLOT // 4, w.addr(2)).cancelled_wh == 400


def test_hour_closes_active_certificates_expire_and_residual_is_recorded(w: World) -> None:
    traded_slot(w)
    (start, _), = mine(w, 1)
    w.ok([cancel(w, 1, (SLOT, start, 600))], t_settle(SLOT) + 10)
    hour = SLOT // 4
    close = (hour + 1) * 3600 + SETTLE + 3600
    w.ok([], close - 1)
    assert keeper.is_open(w.app.state, hour)
    w.ok([], close)
    st = w.app.state
    rec = keeper.hour_record(st, hour)
    assert rec is not None
    assert (rec.consumption_wh, rec.cancelled_wh, rec.expired_wh, rec.residual_wh) == (800, 600, 400, 200)
    assert not keeper.is_open(st, hour) and mine(w, 0, status="expired") == [(start + 600, 400)]
    res = w.block([cancel(w, 0, (SLOT, start + 600, 1))], close + 1)
    assert res.receipts[0].rule == "certificate-not-active"


def _battery_world() -> World:
    w = make_world(4, consumers=(1,))
    w.ok([register(w, ["cp0", SOLAR_W, 0, 0, 100], ["cp2", 0, 4_000, 8_000, 90])], 100)
    return w


def storage_reading(w: World, i: int, slot: int, charged: int, discharged: int) -> bytes:
    return w.tx(w.meters[i], "certificates/storage_reading",
                {"slot": slot, "charged_wh": charged, "discharged_wh": discharged})


def test_battery_discharge_carries_the_origin_of_its_stored_charge() -> None:
    w = _battery_world()
    # slot 8: the battery owner (user 2) buys 600 Wh of user 0's PV and charges 500 Wh
    w.ok([w.order(0, SLOT, "sell", 600, 100_000), w.order(2, SLOT, "buy", 600, 200_000)],
         t_order(SLOT))
    w.ok([], t_clear(SLOT))
    w.ok([w.reading(0, SLOT, 0, 600), w.reading(2, SLOT, 600, 0),
          storage_reading(w, 2, SLOT, 500, 0)], t_read(SLOT))
    w.ok([], t_settle(SLOT))
    (start, n), = mine(w, 2)
    assert n == 600
    at = t_settle(SLOT) + 10
    res = w.block([w.tx(w.users[2], "certificates/store", {"items": items((SLOT, start, 501))}),
                   w.tx(w.users[0], "certificates/store", {"items": items((SLOT, start, 1))})], at)
    assert [r.rule for r in res.receipts] == ["store-exceeds-charge", "storage-device-missing"]
    w.ok([w.tx(w.users[2], "certificates/store", {"items": items((SLOT, start, 500))})], at + 1)
    acc = keeper.storage_account(w.app.state, "cp2")
    assert [(c.slot, c.start, c.source, c.energy_wh) for c in acc.queue] == [
        (SLOT, start, "solar_pv", 450)]                  # 90 % round trip
    # slot 9: the battery exports 600 Wh, all of it discharge: 450 Wh certified as storage
    nxt = SLOT + 1
    w.ok([w.reading(2, nxt, 0, 600), storage_reading(w, 2, nxt, 0, 600)], t_read(nxt) + 10)
    w.ok([], t_settle(nxt))
    got = [b for _, b in keeper.bundles_of_slot(w.app.state, nxt)]
    assert [(b.technology, b.energy_source, b.charge_slot, b.charge_start, b.owner)
            for b in got] == [("battery_storage", "solar_pv", SLOT, start, w.addr(2))]
    t = keeper.totals(w.app.state)
    assert (t.storage_issued_wh, t.uncertified_wh, t.stored_wh) == (450, 150, 500)
    tot, = keeper.storage_account(w.app.state, "cp2").totals
    assert (tot.charged_wh, tot.deliverable_wh, tot.discharged_wh) == (500, 450, 450)


def test_storage_reading_rules() -> None:
    w = _battery_world()
    early = w.block([storage_reading(w, 2, SLOT, 10, 0)], SLOT * S)
    ok = w.block([storage_reading(w, 2, SLOT, 10, 0), storage_reading(w, 2, SLOT, 10, 0),
                  storage_reading(w, 0, SLOT, 10, 0),
                  w.tx(w.users[2], "certificates/storage_reading",
                       {"slot": SLOT, "charged_wh": 1, "discharged_wh": 0})], t_read(SLOT))
    late = w.block([storage_reading(w, 2, SLOT - 1, 10, 0)], t_settle(SLOT))
    over = w.block([storage_reading(w, 2, SLOT + 2, 1_101, 0)], t_read(SLOT + 2))
    assert early.receipts[0].rule == "storage-reading-early"
    assert [r.rule for r in ok.receipts] == ["", "one-storage-reading-per-slot",
                                             "storage-device-missing", "unauthorized"]
    assert late.receipts[0].rule == "storage-reading-late"
    assert over.receipts[0].rule == "storage-over-capacity"       # 4 kW x 0.25 h x 1.1


def test_register_devices_rules(w: World) -> None:
    res = w.block([register(w, ["nowhere", 1, 0, 0, 100]),
                   w.tx(w.users[0], "certificates/register_devices",
                        {"devices": [["cp0", 1, 0, 0, 100]]}),
                   register(w, ["cp0", 1, 5, 0, 100]),
                   register(w, ["cp0", 1, 0, 0, 100], ["cp0", 2, 0, 0, 100])], 200)
    assert [r.rule for r in res.receipts] == ["device-cp-unknown", "unauthorized",
                                              "invalid-body", "invalid-body"]


def test_rules_are_registered_once_chain_wide() -> None:
    names = {r.name for r in chain_rules(catalog_modules()) if r.module == "certificates"}
    assert {"certificate-not-active", "certificate-listed-twice", "claim-exceeds-consumption",
            "store-exceeds-charge", "storage-over-capacity"} <= names


def test_membership_proof_of_a_cancelled_bundle(w: World) -> None:
    traded_slot(w)
    (start, _), = mine(w, 1)
    w.ok([cancel(w, 1, (SLOT, start, 600))], t_settle(SLOT) + 10)
    view = w.app.query(f"certificates/bundle/{SLOT}:{start}")
    assert view["status"] == "cancelled" and view["owner"] == w.addr(1)
    proof = w.app.query(f"proof/{view['key']}")
    assert verify_membership(w.app.state.root(), proof)
    assert keeper.bundle(w.app.state, SLOT, start) == keeper._bundle(proof.value)
    with pytest.raises(KeyError):
        w.app.query(f"proof/{keeper.bundle_key(SLOT, start + 1).hex()}")  # no bundle there


def _cancelled(w: World, buyer_import: int = 800) -> int:
    traded_slot(w, buyer_import=buyer_import)
    (start, _), = mine(w, 1)
    w.ok([cancel(w, 1, (SLOT, start, 600))], t_settle(SLOT) + 10)
    return start


# -- the invariants catch what the handlers must never do -----------------------------------

@pytest.mark.parametrize("tamper", ["moved-after-cancel", "revived", "duplicated", "flagged",
                                    "over-export", "storage"])
def test_invariants_catch_tampered_state(w: World, tamper: str) -> None:
    start = _cancelled(w)
    st = w.app.state
    b = keeper.bundle(st, SLOT, start)
    assert b is not None
    if tamper == "moved-after-cancel":
        keeper.put_bundle(st, SLOT, start, replace(b, owner=w.addr(2)))
    elif tamper == "revived":
        keeper.put_bundle(st, SLOT, start, replace(b, status="active", purpose=None,
                                                   cancelled_at=None))
    elif tamper == "duplicated":
        keeper.put_bundle(st, SLOT, b.end + 1000, replace(b, end=b.end + 1000))
    elif tamper == "flagged":
        st.set_obj(b"meter/f/" + SLOT.to_bytes(8, "big") + b"cp0",
                   {"import_wh": 0, "export_wh": 0, "evidence": EVIDENCE, "dso": w.dso.address})
    elif tamper == "over-export":
        iss = keeper.issuance(st, SLOT, "cp0")
        assert iss is not None
        keeper.put_issuance(st, SLOT, "cp0", replace(iss, export_wh=999))
    else:
        from gridledger.ledger.modules.certificates.types import SourceTotal, StorageAccount
        keeper.put_storage_account(st, "cp0", StorageAccount((), (SourceTotal("solar_pv", 10, 9, 10),)))
    with pytest.raises(InvariantViolation):
        run_invariants(st, w.app.modules)


# -- defence removed: the damage shows ------------------------------------------------------

def _status_check_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handlers see every bundle as active (the status check that refuses a second
    cancellation or a transfer after one can no longer fire)."""
    real = keeper.bundle

    def always_active(state: Any, slot: int, start: int) -> Any:
        b = real(state, slot, start)
        return None if b is None else replace(b, status="active")

    monkeypatch.setattr(cert_handlers.keeper, "bundle", always_active)


def _without_invariants(w: World) -> None:
    cert = next(m for m in w.app.modules if m.name == "certificates")
    w.app.modules[w.app.modules.index(cert)] = replace(cert, invariants=())


def test_double_claim_without_the_status_check_is_caught_by_the_invariant(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    start = _cancelled(w, buyer_import=2_000)
    _status_check_removed(monkeypatch)
    with pytest.raises(InvariantViolation, match="cancelled-once"):
        w.block([cancel(w, 1, (SLOT, start, 600))], t_settle(SLOT) + 20)


def test_double_claim_with_both_defences_removed_counts_energy_twice(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    start = _cancelled(w, buyer_import=2_000)
    _status_check_removed(monkeypatch)
    _without_invariants(w)
    w.ok([cancel(w, 1, (SLOT, start, 600))], t_settle(SLOT) + 20)
    # 600 Wh of GCs now back 1 200 Wh of claims: every Wh counted twice
    m = keeper.matching(w.app.state, SLOT // 4, w.addr(1))
    assert m.cancelled_wh == 1_200 and sum(n for _, n in mine(w, 1, status="cancelled")) == 600


class _NoFlags:
    """The metering keeper as issuance would see it if it ignored the DSO's flags."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def reading_of(self, state: Any, slot: int, cp: str) -> Any:
        return self.real.reading_of(state, slot, cp)

    def flag_of(self, state: Any, slot: int, cp: str) -> None:
        return None

    def trusted_readings_for_slot(self, state: Any, slot: int) -> Any:
        return self.real.trusted_readings_for_slot(state, slot)

    def readings_for_slot(self, state: Any, slot: int) -> Any:
        return self.real.readings_for_slot(state, slot)


def _issuer_ignores_flags(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = next(m for m in w.app.modules if m.name == "certificates")
    issuer = cert.end_block.__self__  # type: ignore[union-attr]
    monkeypatch.setattr(issuer, "metering", _NoFlags(issuer.metering))


def test_phantom_generation_without_the_flag_check_is_caught_by_the_invariant(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _issuer_ignores_flags(w, monkeypatch)
    with pytest.raises(InvariantViolation, match="no-flagged-issuance"):
        traded_slot(w, flag=True)


def test_phantom_generation_with_both_defences_removed_is_certified(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issuance ignores the DSO's flag and no invariant checks: the inflated export
    (1 000 Wh reported, 300 Wh estimated by the network) is certified in full."""
    _issuer_ignores_flags(w, monkeypatch)
    _without_invariants(w)
    traded_slot(w, flag=True)
    assert keeper.totals(w.app.state).issued_wh == 1_000


def test_issuance_runs_after_settlement_in_the_catalog() -> None:
    """A slot is issued in the block that settles it only if this end-block hook runs after
    the market's (and reads metering's flags, which the market's settlement used)."""
    names = [m.name for m in catalog_modules()]
    assert names.index("certificates") > max(names.index("market"), names.index("metering"))


class _Quarantined:
    """The metering keeper with ``cp``'s readings marked as sent by a quarantined meter (the
    firmware registry's verdict, as metering stores it on the reading)."""

    def __init__(self, real: Any, cp: str) -> None:
        self.real, self.cp = real, cp

    def reading_of(self, state: Any, slot: int, cp: str) -> Any:
        r = self.real.reading_of(state, slot, cp)
        return replace(r, quarantine="unknown-firmware") if r is not None and cp == self.cp else r

    def flag_of(self, state: Any, slot: int, cp: str) -> Any:
        return self.real.flag_of(state, slot, cp)

    def trusted_readings_for_slot(self, state: Any, slot: int) -> Any:
        return self.real.trusted_readings_for_slot(state, slot)


def test_a_quarantined_meters_reading_issues_nothing(w: World, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """Settlement never trusts a quarantined meter's own figure (only the DSO's estimate);
    neither does issuance: its export is withheld, reason ``quarantined``, and the invariant
    refuses a block that certified it anyway."""
    cert = next(m for m in w.app.modules if m.name == "certificates")
    issuer = cert.end_block.__self__  # type: ignore[union-attr]
    inv = cert.invariants[0].__self__  # type: ignore[attr-defined]
    monkeypatch.setattr(issuer, "metering", _Quarantined(issuer.metering, "cp0"))
    monkeypatch.setattr(inv, "metering", _Quarantined(inv.metering, "cp0"))
    traded_slot(w)
    iss = keeper.issuance(w.app.state, SLOT, "cp0")
    assert iss is not None and iss.flagged and iss.solar_wh == 0
    assert keeper.bundles_of_slot(w.app.state, SLOT) == []
    assert w.events("certificates_withheld") == [
        {"type": "certificates_withheld", "slot": SLOT, "cp": "cp0", "energy_wh": 1_000,
         "reason": "quarantined"}]


def test_issuance_from_a_quarantined_reading_is_refused_by_the_invariant(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = next(m for m in w.app.modules if m.name == "certificates")
    inv = cert.invariants[0].__self__  # type: ignore[attr-defined]
    monkeypatch.setattr(inv, "metering", _Quarantined(inv.metering, "cp0"))
    with pytest.raises(InvariantViolation, match="no-flagged-issuance"):
        traded_slot(w)      # issuance still trusts the reading: the invariant does not
