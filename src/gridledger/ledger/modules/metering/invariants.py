"""Metering invariants (built with the registry they check readings against)."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.module import Invariant
from gridledger.ledger.modules.metering import keeper
from gridledger.ledger.modules.metering.expected import Registry
from gridledger.ledger.modules.metering.types import MAX_READING_WH
from gridledger.ledger.state import State


def make_invariants(registry: Registry) -> tuple[Invariant, ...]:
    """The module's invariants, reading identities through ``registry``."""

    def readings_valid(state: State) -> None:
        """Invariant readings-valid: every unsettled reading is in range and was signed by
        the meter registered for its connection point (a pseudonym's stand-in cp has the
        reading key its household's meter holds registered as its meter).

        Only pending slots are checked: settled readings were checked while pending and no
        code path writes them afterwards, so the per-block cost stays bounded as history
        grows.
        """
        for slot in keeper.pending_slots(state):
            for r in keeper.readings_for_slot(state, slot):
                if not (0 <= r.import_wh <= MAX_READING_WH and 0 <= r.export_wh <= MAX_READING_WH):
                    raise InvariantViolation(f"readings-valid: slot {slot} cp {r.cp!r} out of range")
                if registry.meter_of_cp(state, r.cp) != r.meter:
                    raise InvariantViolation(f"readings-valid: slot {slot} cp {r.cp!r} not from its meter")

    return (readings_valid,)
