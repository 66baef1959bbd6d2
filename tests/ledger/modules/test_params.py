"""Genesis parameters: defaults, overrides, and the cross-parameter rules."""

from __future__ import annotations

import pytest

from gridledger.errors import ConfigError
from gridledger.ledger.modules.governance import load_params
from gridledger.ledger.modules.governance.types import Params, parse_params
from tests.ledger.modules.world import make_world


def test_defaults_and_grid_account_from_genesis_dso() -> None:
    w = make_world(params={"mechanism": "pay_as_bid", "endorsements_required": 3})
    p = load_params(w.app.state)
    assert p.mechanism == "pay_as_bid" and p.endorsements_required == 3
    assert p.slot_seconds == 900 and p.grid_account == w.dso.address
    assert Params().gate_closure_s == 300 and Params().endorsements_required == 2


@pytest.mark.parametrize("params, rule", [
    ({"reveal_window_s": 400}, "reveal_window_s"),
    ({"imbalance_micro_per_kwh": 1}, "imbalance_micro_per_kwh"),
    ({"deposit_micro_per_kwh": 1}, "deposit_micro_per_kwh"),
    ({"grid_fee_tou_micro_per_kwh": [1, 2, 3]}, "one entry per slot"),
    ({"mechanism": "lottery"}, "mechanism"),
    ({"slot_seconds": 1.5}, "slot_seconds"),
    ({"endorsements_required": 0}, "no single registrar"),
    ({"rep_watch_below": 50}, "thresholds"),
    ({"grid_account": b"short"}, "grid_account"),
])
def test_bad_params_refused(params: dict, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule):
        parse_params(params)


def test_unknown_params_are_left_to_other_components() -> None:
    assert parse_params({"node_block_ms": 250}) == Params()
