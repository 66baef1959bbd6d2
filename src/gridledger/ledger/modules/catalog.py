"""The module list of the current chain version, in execution order."""

from __future__ import annotations

from gridledger.ledger.modules import Module


def modules() -> list[Module]:
    from gridledger.ledger.modules.bank import MODULE as bank
    from gridledger.ledger.modules.registry import MODULE as registry

    return [registry, bank]
