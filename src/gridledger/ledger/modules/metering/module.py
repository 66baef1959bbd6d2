"""The metering module object."""

from __future__ import annotations

from gridledger.ledger.modules import Module
from gridledger.ledger.modules.metering.handlers import handle_flag, handle_reading
from gridledger.ledger.modules.metering.invariants import readings_valid

MODULE = Module(
    name="metering",
    version=1,
    handlers={"metering/reading": handle_reading, "metering/flag": handle_flag},
    roles={"metering/reading": frozenset({"meter"}), "metering/flag": frozenset({"dso"})},
    invariants=(readings_valid,),
)
