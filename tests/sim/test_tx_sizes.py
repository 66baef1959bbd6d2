"""Transactions the simulator splits by count stay under admission's size limit at their
largest (issue 17: a 1,000-member run died in slot 1 on a 22 KB envelope transaction, then
on a 25 KB device registration; 256 pseudonyms' envelopes are 17 KB)."""

from __future__ import annotations

from gridledger.crypto import SigningKey
from gridledger.ledger.modules.privacy.records import pseudo_cp
from gridledger.ledger.tx import MAX_TX_BYTES, decode_tx, sign_tx
from gridledger.sim.features.certificates import DEVICES_PER_TX
from gridledger.sim.features.dso import ENVELOPES_PER_TX

BIG = 10**9 - 1  # the largest energy/power the ledger takes (MAX_ENERGY_WH, MAX_POWER_W)


def _size(kind: str, body: dict[str, object]) -> int:
    raw = sign_tx(SigningKey.generate("ml-dsa-65"), "gridledger-demo", 2**31, kind, body)
    decode_tx(raw)  # admission's own parse: raises Oversize past MAX_TX_BYTES
    return len(raw)


def test_a_full_envelope_transaction_fits() -> None:
    # under privacy mode every entry names a pseudonym's stand-in cp (the longest cp names)
    entries = [[pseudo_cp(bytes([i % 256]) * 32), BIG, BIG] for i in range(ENVELOPES_PER_TX)]
    assert _size("market/envelope", {"slot": 2**32, "envelopes": entries}) <= MAX_TX_BYTES


def test_a_full_device_registration_fits() -> None:
    devices = [[f"cp-{i:060d}", BIG, BIG, BIG, 100] for i in range(DEVICES_PER_TX)]
    assert _size("certificates/register_devices", {"devices": devices}) <= MAX_TX_BYTES


def test_a_flexibility_request_names_at_most_the_ledgers_max_cps() -> None:
    from gridledger.ledger.modules.flex.types import MAX_CPS
    from gridledger.sim.features.flexibility import request_cps

    few = {f"cp-{i:05d}": i for i in range(40)}
    assert request_cps(few, few) == sorted(few)  # a feeder's members: all of them, as before
    many = {f"cp-{i:05d}": (-1) ** i * i for i in range(1000)}  # an MV transformer's area
    chosen = request_cps(many, many)
    assert len(chosen) == MAX_CPS and chosen == sorted(chosen)
    assert set(chosen) == {f"cp-{i:05d}" for i in range(1000 - MAX_CPS, 1000)}  # largest |forecast|
