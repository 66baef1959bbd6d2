"""Metering types: the stored reading and flag records, the messages and their stateless
parsers, and the reading window."""

from __future__ import annotations

from dataclasses import dataclass

from gridledger.ledger.module import Body
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import require_bytes, require_fields, require_int, require_str

READING = "metering/reading"
FLAG = "metering/flag"

MAX_READING_WH = 10**9
"""Largest import or export one reading may carry (the market's per-order bound)."""
FIRMWARE_HASH_LEN = 32
EVIDENCE_LEN = 32
MAX_CP_LEN = 64


@dataclass(frozen=True)
class Reading:
    """Energy through a connection point during one slot, as its meter signed it (or, once
    flagged, as the DSO's state estimation puts it: ``keeper.trusted_reading_of``)."""

    slot: int
    cp: str
    import_wh: int
    export_wh: int
    firmware: bytes
    meter: bytes
    quarantine: str | None = None
    """Why the firmware registry had the meter quarantined when it sent this reading
    (``unknown-firmware`` ...); such a reading never settles on its own figures."""

    def to_record(self) -> StoredReading:
        return StoredReading(self.import_wh, self.export_wh, self.firmware, self.meter,
                             self.quarantine)


@dataclass(frozen=True)
class StoredReading(Record):
    """``meter/r/<slot><cp>``: a reading (slot and cp are in the key); ``quarantine`` only
    when the meter was quarantined (absent otherwise, so readings keep their bytes)."""

    import_wh: int
    export_wh: int
    firmware: bytes
    meter: bytes
    quarantine: str | None = optional()


@dataclass(frozen=True)
class Flag(Record):
    """``meter/f/<slot><cp>``: the DSO's flag; its estimate replaces the reading."""

    import_wh: int
    export_wh: int
    evidence: bytes
    dso: bytes


# -- messages --------------------------------------------------------------------------

@dataclass(frozen=True)
class MeterReading(Record):
    """``metering/reading`` (meter): energy through the sender's connection point."""

    slot: int
    import_wh: int
    export_wh: int
    firmware: bytes


@dataclass(frozen=True)
class FlagReading(Record):
    """``metering/flag`` (dso): ``cp``'s reading for ``slot`` is untrusted; the network's
    estimate and the hash of the detection report."""

    slot: int
    cp: str
    import_wh: int
    export_wh: int
    evidence: bytes


def parse_reading(body: Body) -> MeterReading:
    """Exactly ``slot``, ``import_wh``, ``export_wh`` (0..1e9 Wh) and a 32-byte firmware
    hash. Raises ``InvalidBody``."""
    require_fields(body, READING, ("slot", "import_wh", "export_wh", "firmware"))
    return MeterReading(require_int(body, "slot"),
                        require_int(body, "import_wh", maximum=MAX_READING_WH),
                        require_int(body, "export_wh", maximum=MAX_READING_WH),
                        require_bytes(body, "firmware", exact=FIRMWARE_HASH_LEN))


def parse_flag(body: Body) -> FlagReading:
    """Exactly ``slot``, ``cp`` (1..64 chars), the estimate (0..1e9 Wh each way) and a
    32-byte evidence hash. Raises ``InvalidBody``."""
    require_fields(body, FLAG, ("slot", "cp", "import_wh", "export_wh", "evidence"))
    return FlagReading(require_int(body, "slot"),
                       require_str(body, "cp", max_len=MAX_CP_LEN),
                       require_int(body, "import_wh", maximum=MAX_READING_WH),
                       require_int(body, "export_wh", maximum=MAX_READING_WH),
                       require_bytes(body, "evidence", exact=EVIDENCE_LEN))


def reading_window(slot: int, slot_seconds: int, settle_window_s: int) -> tuple[int, int]:
    """``[first, last)`` block times at which a reading for ``slot`` is accepted: from the end
    of the slot (the energy has flowed) until the settlement deadline."""
    end = (slot + 1) * slot_seconds
    return end, end + settle_window_s
