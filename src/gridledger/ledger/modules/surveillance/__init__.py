"""Market surveillance: deterministic detectors over the market's own records (economic
withholding and price manipulation by conduct-and-impact, layering/spoofing, wash trades),
findings as on-ledger evidence records, sanctions through reputation.

State, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.surveillance.module import build

__all__ = ["build"]
