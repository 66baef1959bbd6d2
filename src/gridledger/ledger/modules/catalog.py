"""The module list of the current chain version, in execution order.

Order matters only for hooks: the market's end-of-block clearing and settlement run after
every transaction of the block; genesis runs registry, bank, then governance parameters.
"""

from __future__ import annotations

from gridledger.ledger.modules import Module


def modules() -> list[Module]:
    from gridledger.ledger.modules.bank import MODULE as bank
    from gridledger.ledger.modules.disputes import MODULE as disputes
    from gridledger.ledger.modules.governance import MODULE as governance
    from gridledger.ledger.modules.market import MODULE as market
    from gridledger.ledger.modules.metering import MODULE as metering
    from gridledger.ledger.modules.privacy import MODULE as privacy
    from gridledger.ledger.modules.registry import MODULE as registry
    from gridledger.ledger.modules.reputation import MODULE as reputation

    return [registry, bank, governance, reputation, metering, market, disputes, privacy]
