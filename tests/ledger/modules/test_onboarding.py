"""Onboarding: DSO attestation + k endorsements, one cp one identity, Sybil resistance."""

from __future__ import annotations

from gridledger.crypto.sig import SigningKey
from gridledger.ledger.modules.registry import cp_holder, get_participant, meter_of_cp
from gridledger.ledger.modules.registry.types import (
    APPLY_CONTEXT,
    METER_CONTEXT,
    apply_pop_message,
    meter_pop_message,
)
from gridledger.ledger.modules.reputation.keeper import get_record, put_record
from gridledger.sim.keys import sim_key
from tests.ledger.modules.world import CHAIN, World, make_world


def apply_body(key: SigningKey, cp: str, roles: list[str] | None = None, name: str = "new") -> dict:
    roles = roles or ["prosumer"]
    pop = key.sign(apply_pop_message(CHAIN, cp, roles, name), APPLY_CONTEXT)
    return {"alg": key.alg, "pk": key.public_key.raw, "pop": pop, "cp": cp, "roles": roles,
            "name": name}


def attest_body(cp: str, applicant: bytes, meter: SigningKey) -> dict:
    pop = meter.sign(meter_pop_message(CHAIN, cp, applicant), METER_CONTEXT)
    return {"cp": cp, "applicant": applicant, "meter_alg": meter.alg,
            "meter_pk": meter.public_key.raw, "meter_pop": pop}


def rules(result) -> list[str]:
    return [r.rule if not r.ok else "ok" for r in result.receipts]


def admitted(w: World) -> list[bytes]:
    return [e["addr"] for e in w.events("admitted")]


def test_attestation_plus_two_endorsements_admits() -> None:
    w = make_world()
    new = sim_key(9, "applicant", 0)
    meter = sim_key(9, "new-meter", 0, alg="ml-dsa-44")
    r = w.block([w.tx(w.users[0], "registry/apply", apply_body(new, "cp-new")),
                 w.tx(w.dso, "registry/attest_cp", attest_body("cp-new", new.address, meter))], 100)
    assert rules(r) == ["ok", "ok"] and admitted(w) == []  # one endorsement (the sponsor) so far
    assert meter_of_cp(w.app.state, "cp-new") == meter.address  # meter registered at attestation
    w.ok([w.tx(w.users[1], "registry/endorse", {"applicant": new.address})], 200)
    assert admitted(w) == [new.address]
    rec = get_participant(w.app.state, new.address)
    assert rec is not None and rec["cp"] == "cp-new" and rec["roles"] == ["prosumer"]
    assert cp_holder(w.app.state, "cp-new") == new.address
    # the new identity can now send transactions (its envelope passes; it has no money yet)
    w.nonces[new.address] = 0
    r = w.block([w.tx(new, "bank/transfer", {"to": w.addr(0), "amount_micro": 1})], 300)
    assert rules(r) == ["insufficient-funds"]


def test_no_single_registrar() -> None:
    w = make_world()
    a, b = sim_key(9, "applicant", 1), sim_key(9, "applicant", 2)
    m = sim_key(9, "new-meter", 1, alg="ml-dsa-44")
    # endorsements without the DSO's attestation: never admitted
    w.ok([w.tx(w.users[0], "registry/apply", apply_body(a, "cp-a")),
          w.tx(w.users[1], "registry/endorse", {"applicant": a.address}),
          w.tx(w.users[2], "registry/endorse", {"applicant": a.address})], 100)
    assert admitted(w) == []
    # the attestation completes a's admission; an attestation of a pending cp is final
    c = sim_key(9, "applicant", 5)
    r = w.block([w.tx(w.dso, "registry/attest_cp", attest_body("cp-a", a.address, m)),
                 w.tx(w.dso, "registry/attest_cp",
                      attest_body("cp-c", c.address, sim_key(9, "m2", 0, alg="ml-dsa-44"))),
                 w.tx(w.dso, "registry/attest_cp",
                      attest_body("cp-c", b.address, sim_key(9, "m3", 0, alg="ml-dsa-44")))], 150)
    assert rules(r) == ["ok", "ok", "cp-already-attested"]
    assert admitted(w) == [a.address]
    m = sim_key(9, "new-meter", 2, alg="ml-dsa-44")
    # the DSO alone (sponsor + attester): its sponsorship is no endorsement
    w.ok([w.tx(w.dso, "registry/apply", apply_body(b, "cp-b")),
          w.tx(w.dso, "registry/attest_cp", attest_body("cp-b", b.address, m))], 200)
    assert admitted(w) == [a.address]
    r = w.block([w.tx(w.dso, "registry/endorse", {"applicant": b.address})], 300)
    assert rules(r) == ["unauthorized"]  # a dso is not an endorser role
    w.ok([w.tx(w.users[3], "registry/endorse", {"applicant": b.address})], 400)
    assert admitted(w) == [a.address]  # b: one endorsement < k = 2
    r = w.block([w.tx(w.users[3], "registry/endorse", {"applicant": b.address})], 500)
    assert rules(r) == ["already-endorsed"]  # one endorsement per endorser
    w.ok([w.tx(w.validator, "registry/endorse", {"applicant": b.address})], 600)
    assert admitted(w) == [a.address, b.address]  # validators count as endorsers


def test_low_reputation_endorsers_do_not_count() -> None:
    w = make_world()
    put_record(w.app.state, w.addr(1), {**get_record(w.app.state, w.addr(1)), "score": 300})
    new = sim_key(9, "applicant", 3)
    r = w.block([w.tx(w.users[0], "registry/apply", apply_body(new, "cp-x")),
                 w.tx(w.users[1], "registry/endorse", {"applicant": new.address})], 100)
    assert rules(r) == ["ok", "endorser-reputation"]


def test_bad_proofs_and_roles_rejected() -> None:
    w = make_world()
    new = sim_key(9, "applicant", 4)
    forged = apply_body(new, "cp-y")
    forged["pop"] = sim_key(9, "other", 0).sign(apply_pop_message(CHAIN, "cp-y", ["prosumer"], "new"),
                                                 APPLY_CONTEXT)
    dso_role = apply_body(new, "cp-y", roles=["dso"])
    taken = apply_body(new, "cp0")  # cp0 belongs to u0
    m = sim_key(9, "m", 4, alg="ml-dsa-44")
    bad_meter = attest_body("cp-y", new.address, m)
    bad_meter["meter_pop"] = bad_meter["meter_pop"][:-1] + b"\x00"
    r = w.block([w.tx(w.users[0], "registry/apply", forged),
                 w.tx(w.users[0], "registry/apply", dso_role),
                 w.tx(w.users[0], "registry/apply", taken),
                 w.tx(w.dso, "registry/attest_cp", bad_meter),
                 w.tx(w.users[0], "registry/attest_cp", attest_body("cp-y", new.address, m))], 100)
    # a dso role is malformed for an applicant (invalid-body); attest_cp needs the dso role
    assert rules(r) == ["apply-pop", "invalid-body", "cp-taken", "meter-pop", "unauthorized"]


def test_meter_installed_for_genesis_member() -> None:
    w = make_world(n_users=2)
    st = w.app.state
    from gridledger.ledger.modules.registry import keeper as reg

    # a genesis member without a meter yet: the DSO's attestation registers the meter only
    st.delete(reg.METER + b"cp1")
    st.delete(reg.P + w.meters[1].address)
    m = sim_key(9, "replacement", 1, alg="ml-dsa-44")
    r = w.block([w.tx(w.dso, "registry/attest_cp", attest_body("cp1", w.addr(1), m)),
                 w.tx(w.dso, "registry/attest_cp", attest_body("cp0", w.addr(1), m))], 100)
    assert rules(r) == ["ok", "cp-taken"]  # cp0 is held by someone else
    assert meter_of_cp(st, "cp1") == m.address


def test_sybil_twenty_identities_at_most_one_admitted() -> None:
    """THREATS row 11: one attacker, 20 identities, two colluding members endorsing all."""
    w = make_world()
    sybils = [sim_key(13, "sybil", i) for i in range(20)]
    meter = sim_key(13, "sybil-meter", 0, alg="ml-dsa-44")
    txs = []
    for i, k in enumerate(sybils):
        # half claim the attacker's one real cp, half invent connection points
        cp = "cp-attacker" if i % 2 == 0 else f"cp-fake-{i}"
        txs.append(w.tx(w.users[0], "registry/apply", apply_body(k, cp, name=f"s{i}")))
        txs.append(w.tx(w.users[1], "registry/endorse", {"applicant": k.address}))
    w.block(txs, 100)
    # the DSO attests the one physical connection point once; it will not attest it again
    # and does not attest connection points that do not exist
    r = w.block([w.tx(w.dso, "registry/attest_cp", attest_body("cp-attacker", k.address, meter))
                 for k in sybils[:4:2]], 200)
    assert rules(r) == ["ok", "cp-taken"]
    # more applications for the attested cp are refused outright
    late = [sim_key(13, "sybil-late", i) for i in range(3)]
    r = w.block([w.tx(w.users[0], "registry/apply", apply_body(k, "cp-attacker")) for k in late], 300)
    assert set(rules(r)) == {"cp-taken"}
    assert len(admitted(w)) == 1 and admitted(w)[0] == sybils[0].address
    assert cp_holder(w.app.state, "cp-attacker") == sybils[0].address
    # after admission the cp is taken for good
    again = sim_key(13, "sybil-again", 0)
    r = w.block([w.tx(w.users[0], "registry/apply", apply_body(again, "cp-attacker"))], 400)
    assert rules(r) == ["cp-taken"]
