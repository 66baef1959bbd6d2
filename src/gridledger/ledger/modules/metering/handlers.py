"""Metering handlers."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvalidBody, Unauthorized
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.metering import keeper
from gridledger.ledger.modules.metering.types import (
    FIRMWARE_HASH_LEN,
    MAX_READING_WH,
    Reading,
    reading_window,
)
from gridledger.ledger.modules.registry.keeper import require_participant
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_bytes, require_int


def handle_reading(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``metering/reading {slot, import_wh, export_wh, firmware}`` signed by a meter key.

    The envelope signature is the device signature: the sender is the meter identity
    registered for the cp by the DSO's attestation, so a reading cannot be forged by the
    household's trading key or anyone else.
    """
    slot = require_int(body, "slot")
    import_wh = require_int(body, "import_wh", maximum=MAX_READING_WH)
    export_wh = require_int(body, "export_wh", maximum=MAX_READING_WH)
    firmware = require_bytes(body, "firmware", exact=FIRMWARE_HASH_LEN)
    if set(body) != {"slot", "import_wh", "export_wh", "firmware"}:
        raise InvalidBody("metering/reading has exactly slot, import_wh, export_wh, firmware")
    meter = require_participant(state, ctx.sender)
    cp = meter.get("meter_of")
    if not cp:
        raise Unauthorized("not-a-meter: the sender is not bound to a connection point")
    p = load_params(state)
    first, last = reading_window(slot, p.slot_seconds, p.settle_window_s)
    now = ctx.block.slot_time
    if now < first:
        raise InvalidBody(f"reading-early: slot {slot} ends at {first}, block time is {now}")
    if now >= last:
        raise InvalidBody(f"reading-late: readings for slot {slot} closed at {last}")
    if keeper.reading_of(state, slot, cp) is not None:
        raise InvalidBody(f"one-reading-per-slot: cp {cp!r} already reported slot {slot}")
    keeper.record_reading(state, Reading(slot, cp, import_wh, export_wh, firmware, ctx.sender))
    ctx.emit("reading", slot=slot, cp=cp, import_wh=import_wh, export_wh=export_wh,
             firmware=firmware)
