"""Metering invariants."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.metering import keeper
from gridledger.ledger.modules.metering.types import MAX_READING_WH
from gridledger.ledger.state import State


def readings_valid(state: State) -> None:
    """Invariant readings-valid: every unsettled reading is in range and was signed by the
    meter registered for its connection point.

    Only pending slots are checked: settled readings were checked while pending and no code
    path writes them afterwards, so the per-block cost stays bounded as history grows.
    """
    from gridledger.ledger.modules.privacy.types import pseudo_cp
    from gridledger.ledger.modules.registry.keeper import meter_of_cp

    for slot in keeper.pending_slots(state):
        for r in keeper.readings_for_slot(state, slot):
            if not (0 <= r.import_wh <= MAX_READING_WH and 0 <= r.export_wh <= MAX_READING_WH):
                raise InvariantViolation(f"readings-valid: slot {slot} cp {r.cp!r} out of range")
            if r.cp.startswith("ps:") and pseudo_cp(r.meter) == r.cp:
                continue  # a pseudonym's reading, signed by the pseudonym (privacy module)
            if meter_of_cp(state, r.cp) != r.meter:
                raise InvariantViolation(f"readings-valid: slot {slot} cp {r.cp!r} not from its meter")
