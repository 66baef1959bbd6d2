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


def handle_flag(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``metering/flag {slot, cp, import_wh, export_wh, evidence}`` by the DSO.

    The DSO's bad-data detection (WLS state estimation, residual tests, protected
    measurements, feeder energy balance; ``gridledger.grid.fdi``) found that ``cp``'s reading
    for ``slot`` cannot be trusted. The flag carries the network's estimate of the true
    energy, which settlement and disputes then use instead of the meter (documented
    fallback), and the hash of the detection report as evidence. One flag per cp per slot,
    within the same window as readings, so settlement never runs on a half-flagged slot.
    """
    if set(body) != {"slot", "cp", "import_wh", "export_wh", "evidence"}:
        raise InvalidBody("metering/flag has exactly slot, cp, import_wh, export_wh, evidence")
    slot = require_int(body, "slot")
    cp = body.get("cp")
    if not isinstance(cp, str) or not cp or len(cp) > 64:
        raise InvalidBody("field 'cp' must be a connection point id")
    import_wh = require_int(body, "import_wh", maximum=MAX_READING_WH)
    export_wh = require_int(body, "export_wh", maximum=MAX_READING_WH)
    evidence = require_bytes(body, "evidence", exact=32)
    from gridledger.ledger.modules.registry.keeper import cp_holder

    holder = cp_holder(state, cp)
    if holder is None:
        raise InvalidBody(f"unknown-cp: no participant holds connection point {cp!r}")
    p = load_params(state)
    first, last = reading_window(slot, p.slot_seconds, p.settle_window_s)
    now = ctx.block.slot_time
    if not first <= now < last:
        raise InvalidBody(f"flag-window: flags for slot {slot} are accepted in [{first}, {last})")
    if keeper.flag_of(state, slot, cp) is not None:
        raise InvalidBody(f"one-flag-per-slot: cp {cp!r} slot {slot} is already flagged")
    keeper.record_flag(state, slot, cp, import_wh, export_wh, evidence, ctx.sender)
    raw = keeper.reading_of(state, slot, cp)
    from gridledger.ledger.modules.reputation.keeper import adjust

    ctx.emit("reading_flagged", slot=slot, cp=cp, holder=holder,
             reported_import_wh=raw.import_wh if raw else None,
             reported_export_wh=raw.export_wh if raw else None,
             estimate_import_wh=import_wh, estimate_export_wh=export_wh, evidence=evidence)
    ctx.events.append(adjust(state, holder, "missing_reading", slot))
