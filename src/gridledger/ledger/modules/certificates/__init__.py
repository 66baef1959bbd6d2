"""Certificates: 15-minute granular certificates (EnergyTag GC Scheme Standard v2) issued
from settled, unflagged meter readings, transferred with delivered P2P energy, cancelled
against consumption in the same hour or allocated to a battery's charge.

State, messages, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.certificates.module import build

__all__ = ["build"]
