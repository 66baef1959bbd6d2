"""Privacy on the ledger: pseudonymous trading through epoch pools with threshold identity
escrow, meter-vouched readings under pseudonyms, secure-aggregation results and EV roaming
(docs/privacy.md, docs/threat-model.md rows 3, 5, 8, 13).

State, messages, events, rules, dependencies and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.privacy.module import build

__all__ = ["build"]
