"""Golden state roots of a scenario that touches every module's records.

Converting a module to typed records must not move a byte of state: ``Record.to_obj`` has
to write exactly the map the module wrote before. This pins the roots after every block of
a scenario with onboarding, a key rotation, governance, orders, clearing, readings, a
flag, settlement, a dispute and a reputation appeal, so any encoding change in any module
shows here (and only a deliberate commitment change may regenerate the vector).
"""

from __future__ import annotations

import json
from pathlib import Path

from gridledger.ledger.modules.governance.types import VALIDATOR_POP_CONTEXT, validator_pop_message
from gridledger.ledger.modules.reputation.keeper import put_record
from gridledger.sim.keys import sim_key
from tests.ledger.modules.test_onboarding import apply_body, attest_body
from tests.ledger.modules.world import CHAIN, make_world, t_clear, t_order, t_read, t_settle

VECTOR = Path(__file__).parent.parent / "vectors" / "module_roots.json"
SLOT = 3


def _scenario() -> dict[str, str]:
    w = make_world(n_users=4)
    roots: dict[str, str] = {"genesis": w.app.state.root().hex()}

    def step(name: str, txs: list[bytes], at: int) -> None:
        w.ok(txs, at)
        roots[name] = w.app.state.root().hex()

    # registry: onboarding of a new member (sponsor, endorsement, DSO attestation) and a
    # key rotation to another ML-DSA level
    new, meter = sim_key(77, "applicant", 0), sim_key(77, "meter", 0, alg="ml-dsa-44")
    step("onboarding", [w.tx(w.users[0], "registry/apply", apply_body(new, "cp-new")),
                        w.tx(w.users[1], "registry/endorse", {"applicant": new.address}),
                        w.tx(w.dso, "registry/attest_cp", attest_body("cp-new", new.address, meter))],
         100)
    rotated = sim_key(77, "rotated", 0, alg="ml-dsa-87")
    step("rotation", [w.tx(w.users[3], "registry/rotate_key",
                           {"alg": rotated.alg, "pk": rotated.public_key.raw,
                            "pop": rotated.sign(w.addr(3), b"gl/rotate")})], 200)
    # governance: a validator-set addition passes at once (one validator) and activates
    joiner = sim_key(77, "joiner", 0)
    pop = joiner.sign(validator_pop_message(CHAIN, "joiner"), VALIDATOR_POP_CONTEXT)
    step("proposal", [w.tx(w.validator, "governance/propose_add_validator",
                           {"alg": joiner.alg, "pk": joiner.public_key.raw, "name": "joiner",
                            "pop": pop})], 300)
    step("activation", [], 400)
    # market: orders, clearing, readings (one flagged), settlement, a dispute
    step("orders", [w.order(0, SLOT, "sell", 1_000, 100_000), w.order(1, SLOT, "buy", 1_000, 200_000),
                    w.order(2, SLOT, "buy", 400, 150_000)], t_order(SLOT))
    step("clearing", [], t_clear(SLOT))
    flag = w.tx(w.dso, "metering/flag", {"slot": SLOT, "cp": "cp2", "import_wh": 450,
                                         "export_wh": 0, "evidence": bytes(32)})
    step("readings", [w.reading(0, SLOT, 0, 700), w.reading(1, SLOT, 1_100, 0),
                      w.reading(2, SLOT, 400, 0), flag], t_read(SLOT))
    step("settlement", [], t_settle(SLOT))
    step("dispute", [w.tx(w.users[1], "disputes/claim",
                          {"slot": SLOT, "trade": 0, "claim": "non-delivery"})], t_settle(SLOT) + 10)
    # reputation: a sanctioned member appeals after clean slots
    put_record(w.app.state, w.addr(2), {"score": 50, "last_penalty_slot": 0,
                                        "last_appeal_slot": -1, "approvals": []})
    step("appeal", [w.tx(w.users[2], "reputation/appeal", {})], t_settle(SLOT) + 20 * 900)
    return roots


def test_module_state_roots_are_pinned() -> None:
    got = _scenario()
    if not VECTOR.exists():  # first run writes the vector; later runs must match it
        VECTOR.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(VECTOR.read_text())
