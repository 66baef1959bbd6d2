"""The report's members table and its attack rows count the same sanctions: a penalty the
ledger applied at the score's floor (delta 0) is still a sanction (it restarts the appeal
clock). Before, the default day's non-delivery row said 18 penalties for h01 while the
members table showed 14 sanctions."""

from __future__ import annotations

from gridledger.sim.summary import is_sanction
from tests.sim.conftest import DemoRun


def test_a_penalty_at_the_floor_is_a_sanction_and_a_reward_at_the_ceiling_is_not() -> None:
    assert is_sanction({"delta": -50, "score": 450})
    assert is_sanction({"delta": 0, "score": 0})       # floored: the score could not fall
    assert not is_sanction({"delta": 0, "score": 1000})  # a reward at the ceiling
    assert not is_sanction({"delta": 5, "score": 505})


def test_members_table_and_attack_rows_agree_on_the_default_day(default_day: DemoRun) -> None:
    rows = default_day.summary["attacks"]
    nd = rows["non-delivery"]
    (attacker,) = [p for p in default_day.series["participants"] if p["name"] == nd["attacker"]]
    assert nd["reputation_penalties"] > 0
    assert attacker["sanctions"].get("non_delivery", 0) == nd["reputation_penalties"]
