"""Ledger modules, one package each, all of one shape (``gridledger.ledger.module``).

``catalog.py`` lists the modules of the current chain version and wires them to each
other; ``docs/architecture.md`` draws the shape.
"""

from gridledger.ledger.module import (
    BlockHook,
    GenesisHook,
    Handler,
    Invariant,
    Module,
    MsgKind,
    RejectHook,
)

__all__ = ["BlockHook", "GenesisHook", "Handler", "Invariant", "Module", "MsgKind", "RejectHook"]
