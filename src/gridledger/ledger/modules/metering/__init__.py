"""Metering: signed meter readings, one per connection point per slot, and the DSO's flags
of untrusted readings.

State, messages, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.metering.module import build

__all__ = ["build"]
