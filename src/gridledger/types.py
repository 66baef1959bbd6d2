"""Integer units and identifiers used across GridLedger.

Consensus-critical quantities are plain ``int`` with the unit in the name (pandapower style):
energy in watt-hours, money in micro-units of the community currency, prices in micro-units
per kWh, time in slot numbers. ``NewType`` keeps them apart for the type checker at no cost.
"""

from __future__ import annotations

from typing import NewType

EnergyWh = NewType("EnergyWh", int)
"""Energy in watt-hours."""
MoneyMicro = NewType("MoneyMicro", int)
"""Money in micro-units (1e-6) of the community currency."""
PriceMicroPerKwh = NewType("PriceMicroPerKwh", int)
"""Price in micro-units of currency per kWh."""
SlotId = NewType("SlotId", int)
"""Market slot number: slot 0 starts at the chain's genesis time."""
Height = NewType("Height", int)
"""Block height; genesis is height 0."""
Address = NewType("Address", bytes)
"""SHA3-256 of an algorithm-tagged public key (32 bytes)."""

WH_PER_KWH = 1000
MICRO = 1_000_000


def payment_micro(energy_wh: int, price_micro_per_kwh: int) -> int:
    """Money for ``energy_wh`` at ``price_micro_per_kwh``, rounded down (floor).

    Every payment in the ledger goes through this one function so buyer and seller always
    see the same amount and money is conserved exactly.
    """
    return (energy_wh * price_micro_per_kwh) // WH_PER_KWH
