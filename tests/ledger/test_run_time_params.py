"""Run-time parameters (issue 13.3): the DSO sets grid fees for future slots within the
genesis bounds (governance v3); other parameters need the validator quorum. Every change
is an event and a log entry served by a view; every rejection names its rule and changes
nothing but the sender's nonce."""

from __future__ import annotations

import pytest

from gridledger.errors import RejectedTx
from gridledger.ledger.app import Application
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.params import NOT_VOTABLE, fee_rate_ceiling, load_params
from gridledger.ledger.tx import sign_tx
from gridledger.node.admission import Mempool
from gridledger.sim.keys import sim_key
from tests.conftest import CHAIN, apply

BOUNDS = {"grid_fee_min_micro_per_kwh": 10_000, "grid_fee_max_micro_per_kwh": 90_000}
SLOT_S = 900
PER_DAY = 96


class Chain:
    def __init__(self, params: dict | None = None, version: int = 3) -> None:
        self.v = [sim_key(7, "validator", i) for i in range(4)]
        self.user = sim_key(7, "user", 0)
        self.dso = sim_key(7, "dso", 0)
        parts = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"v{i}"}
                 for i, k in enumerate(self.v)]
        parts.append({"alg": self.user.alg, "pk": self.user.public_key.raw,
                      "roles": ["prosumer"], "name": "u", "cp": "cp0", "balance_micro": 10})
        parts.append({"alg": self.dso.alg, "pk": self.dso.public_key.raw, "roles": ["dso"],
                      "name": "dso"})
        self.app = Application(make_genesis(CHAIN, parts, BOUNDS if params is None else params,
                                            sections={"versions": {"governance": version}}))
        self.nonces: dict[bytes, int] = {}
        self.t = 100 * SLOT_S  # slot 100

    def one(self, key, kind: str, body: dict):
        n = self.nonces.get(key.address, 0)
        self.nonces[key.address] = n + 1
        self.t += 60
        _, result = apply(self.app, [sign_tx(key, CHAIN, n, kind, body)], self.t)
        return result.receipts[0], result

    def fees(self, **body):
        return self.one(self.dso, "governance/set_grid_fees",
                        {"from_slot": 120, "flat_micro_per_kwh": 40_000,
                         "tou_micro_per_kwh": [], **body})

    def q(self, path: str):
        return self.app.query(path)


def test_dso_changes_fees_for_future_slots():
    c = Chain()
    assert c.q("governance/grid_fees/130")["rate_micro_per_kwh"] == 30_000
    tou = [0] * PER_DAY
    tou[70:84] = [50_000] * 14  # evening peak, slots 70..83 of the day
    r, _ = c.fees(tou_micro_per_kwh=tou)
    assert r.ok, r
    ev = r.events[0]
    assert ev["type"] == "grid_fees_set" and ev["from_slot"] == 120
    assert ev["previous_flat_micro_per_kwh"] == 30_000 and ev["by"] == c.dso.address
    assert c.q("governance/grid_fees/119")["rate_micro_per_kwh"] == 30_000  # before: unchanged
    assert c.q("governance/grid_fees/120")["rate_micro_per_kwh"] == 40_000
    assert c.q(f"governance/grid_fees/{96 * 2 + 75}")["rate_micro_per_kwh"] == 90_000
    log = c.q("governance/changes")
    assert [e["kind"] for e in log] == ["grid_fees", "grid_fees"]  # genesis table, then DSO
    assert log[-1]["from_slot"] == 120 and log[-1]["by"] == c.dso.address
    # a later change from a later slot keeps the earlier one before it
    r, _ = c.fees(from_slot=150, flat_micro_per_kwh=20_000)
    assert r.ok and c.q("governance/grid_fees/140")["flat_micro_per_kwh"] == 40_000
    assert c.q("governance/grid_fees/150")["flat_micro_per_kwh"] == 20_000
    assert [e["from_slot"] for e in c.q("governance/tariffs")] == [0, 120, 150]
    # escrows are sized for the highest fee the DSO may set
    assert fee_rate_ceiling(load_params(c.app.state)) == 90_000


@pytest.mark.parametrize("body, rule", [
    ({"flat_micro_per_kwh": 95_000}, "fee-bounds"),
    ({"flat_micro_per_kwh": 5_000}, "fee-bounds"),
    ({"flat_micro_per_kwh": 40_000, "tou_micro_per_kwh": [60_000] * PER_DAY}, "fee-bounds"),
    ({"tou_micro_per_kwh": [1, 2, 3]}, "tou-length"),
    ({"from_slot": 100}, "fee-too-late"),   # slot 100's gate closed at 100*900 - 300
    ({"from_slot": 7}, "fee-too-late"),
    ({"from_slot": 100 + 31 * PER_DAY}, "fee-horizon"),
])
def test_fee_rejections_name_the_rule_and_change_nothing(body, rule):
    c = Chain()
    before = (c.q("governance/tariffs"), c.q("governance/changes"))
    r, _ = c.fees(**body)
    assert not r.ok and r.rule == rule, r
    assert (c.q("governance/tariffs"), c.q("governance/changes")) == before


def test_only_the_dso_changes_fees_and_only_within_genesis_bounds():
    c = Chain()
    r, _ = c.one(c.user, "governance/set_grid_fees",
                 {"from_slot": 120, "flat_micro_per_kwh": 40_000, "tou_micro_per_kwh": []})
    assert r.rule == "unauthorized"
    fixed = Chain(params={})
    r, _ = fixed.fees()
    assert r.rule == "fee-bounds" and "fixed" in r.detail
    assert fixed.q("governance/grid_fees/120")["rate_micro_per_kwh"] == 30_000


def test_governance_v2_has_no_fee_changes():
    c = Chain(version=2)
    with pytest.raises(RejectedTx, match="unknown-kind"):
        Mempool(c.app).admit(sign_tx(c.dso, CHAIN, 0, "governance/set_grid_fees",
                                     {"from_slot": 120, "flat_micro_per_kwh": 40_000,
                                      "tou_micro_per_kwh": []}), 0.0)
    assert c.q("governance/tariffs") == []


def _vote_all(c: Chain, pid: int, n: int = 3):
    out = []
    for k in c.v[:n]:
        out.append(c.one(k, "governance/vote", {"proposal": pid, "approve": True}))
    return out


def test_parameters_change_by_validator_quorum():
    c = Chain()
    r, _ = c.one(c.v[0], "governance/propose_params",
                 {"params": {"dispute_fee_micro": 70_000, "appeal_clean_slots": 4}})
    assert r.ok and r.events[0]["type"] == "params_proposed"
    pid = r.events[0]["proposal"]
    votes = _vote_all(c, pid)
    assert [e["type"] for e in votes[-1][0].events] == ["motion_vote", "params_passed"]
    activation = votes[-1][0].events[-1]["activation"]
    assert load_params(c.app.state).dispute_fee_micro == 50_000  # not before activation
    _, result = apply(c.app, [], c.t + 60)  # block h + 1 applies it at its end
    assert c.app.height + 1 == activation
    assert [e["type"] for e in result.block_events] == ["params_changed"]
    p = load_params(c.app.state)
    assert p.dispute_fee_micro == 70_000 and p.appeal_clean_slots == 4
    assert c.q("governance/params")["dispute_fee_micro"] == 70_000
    assert c.q("governance/changes")[-1]["params"] == [["appeal_clean_slots", 4],
                                                      ["dispute_fee_micro", 70_000]]


@pytest.mark.parametrize("params, rule", [
    ({"grid_fee_flat_micro_per_kwh": 1}, "param-not-votable"),
    ({"slot_seconds": 600}, "param-not-votable"),
    ({"grid_account": bytes(32)}, "param-not-votable"),
    ({"imbalance_micro_per_kwh": 1}, "bad-params"),       # below the retail price
    ({"dispute_fee_micro": -1}, "bad-params"),
    ({"no_such_param": 1}, "invalid-body"),
])
def test_param_motion_rejections(params, rule):
    c = Chain()
    r, _ = c.one(c.v[0], "governance/propose_params", {"params": params})
    assert r.rule == rule, r
    assert c.q("governance/motions") == []


def test_stateless_param_rules_are_refused_at_admission():
    c = Chain()
    pool = Mempool(c.app)
    for name in sorted(NOT_VOTABLE)[:2]:
        with pytest.raises(RejectedTx, match="param-not-votable"):
            pool.admit(sign_tx(c.v[0], CHAIN, 0, "governance/propose_params",
                               {"params": {name: 1}}), 0.0)


def test_genesis_fee_bounds_are_checked():
    from gridledger.errors import ConfigError
    with pytest.raises(ConfigError, match="outside the bounds"):
        Chain(params={"grid_fee_min_micro_per_kwh": 40_000, "grid_fee_max_micro_per_kwh": 90_000})
    with pytest.raises(ConfigError, match="needs grid_fee_max"):
        Chain(params={"grid_fee_min_micro_per_kwh": 1})
