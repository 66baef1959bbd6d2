"""Metering read-only views, served by ``Application.query("metering/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.metering import keeper
from gridledger.ledger.state import State


def readings(state: State, arg: str) -> list[dict[str, Any]]:
    """``metering/readings/<slot>``: what settlement uses for the slot (a flagged cp's
    estimate in place of its reading), ``{cp, import_wh, export_wh, flagged}`` by cp."""
    slot = int(arg)
    return [{"cp": r.cp, "import_wh": r.import_wh, "export_wh": r.export_wh,
             "flagged": keeper.flag_of(state, slot, r.cp) is not None}
            for r in keeper.trusted_readings_for_slot(state, slot)]


def pending(state: State, _arg: str) -> list[int]:
    """``metering/pending``: slots with readings settlement has not processed yet."""
    return keeper.pending_slots(state)


VIEWS = {"readings": readings, "pending": pending}
