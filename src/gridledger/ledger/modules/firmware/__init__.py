"""Firmware registry: vendors, signed releases approved by the DSO and the validators,
advisories, quarantine of meters on unknown or vulnerable firmware, signed patches.

State, messages, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.firmware.module import build

__all__ = ["build"]
