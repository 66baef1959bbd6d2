"""Metering: signed meter readings, one per connection point per slot.

Each meter is its own identity (role ``meter``, ML-DSA-44 allowed for constrained devices)
registered for one connection point by the DSO's attestation (``registry/attest_cp``) or at
genesis; a reading is a transaction signed by that device key, so the envelope signature is
the meter's signature. A reading for slot ``t`` is accepted from the end of the slot until
its settlement deadline, ``(t+1)*slot_seconds + settle_window_s``; readings stay in state
as dispute evidence after settlement, until the dispute window closes.

State
  ``meter/r/<slot:8 BE><cp>``  {import_wh, export_wh, firmware (32-byte hash), meter}
  ``meter/f/<slot:8 BE><cp>``  {import_wh, export_wh, evidence, dso}: the DSO's flag; the
                               estimate replaces the reading in settlement and disputes
  ``meter/pending``            [slot, ...] with readings not yet settled
Messages
  ``metering/reading``  {slot, import_wh, export_wh, firmware} (role meter)
  ``metering/flag``     {slot, cp, import_wh, export_wh, evidence} (role dso)
Events
  ``reading`` {slot, cp, import_wh, export_wh, firmware}
  ``reading_flagged`` {slot, cp, holder, reported_*, estimate_*, evidence} (+ reputation)
Invariants
  readings-valid: every reading is in range and came from the cp's registered meter.
"""

from gridledger.ledger.modules.metering.keeper import (
    mark_settled,
    pending_slots,
    prune_readings,
    reading_of,
    readings_for_slot,
    trusted_reading_of,
    trusted_readings_for_slot,
)
from gridledger.ledger.modules.metering.module import MODULE
from gridledger.ledger.modules.metering.types import Reading

__all__ = ["MODULE", "Reading", "mark_settled", "pending_slots", "prune_readings", "reading_of",
           "readings_for_slot", "trusted_reading_of", "trusted_readings_for_slot"]
