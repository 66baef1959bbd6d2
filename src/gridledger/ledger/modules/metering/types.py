"""Meter readings: one per connection point per slot, signed by the meter's device key."""

from __future__ import annotations

from dataclasses import dataclass

MAX_READING_WH = 10**9
"""Largest import or export one reading may carry (the market's per-order bound)."""
FIRMWARE_HASH_LEN = 32


@dataclass(frozen=True)
class Reading:
    """Energy through a connection point during one slot, as its meter signed it."""

    slot: int
    cp: str
    import_wh: int
    export_wh: int
    firmware: bytes
    meter: bytes

    def to_obj(self) -> dict[str, object]:
        return {"import_wh": self.import_wh, "export_wh": self.export_wh,
                "firmware": self.firmware, "meter": self.meter}


def reading_window(slot: int, slot_seconds: int, settle_window_s: int) -> tuple[int, int]:
    """``[first, last)`` block times at which a reading for ``slot`` is accepted: from the end
    of the slot (the energy has flowed) until the settlement deadline."""
    end = (slot + 1) * slot_seconds
    return end, end + settle_window_s
