"""The market module object."""

from __future__ import annotations

from gridledger.ledger.modules import Module
from gridledger.ledger.modules.market.handlers import (
    handle_cancel,
    handle_commit,
    handle_envelope,
    handle_order,
    handle_replace,
    handle_reveal,
)
from gridledger.ledger.modules.market.hooks import end_block
from gridledger.ledger.modules.market.invariants import energy_balanced, escrow_backed

_TRADERS = frozenset({"prosumer", "consumer"})

MODULE = Module(
    name="market",
    version=1,
    handlers={"market/order": handle_order,
              "market/cancel": handle_cancel,
              "market/replace": handle_replace,
              "market/commit": handle_commit,
              "market/reveal": handle_reveal,
              "market/envelope": handle_envelope},
    roles={"market/order": _TRADERS, "market/cancel": _TRADERS, "market/replace": _TRADERS,
           "market/commit": _TRADERS, "market/reveal": _TRADERS,
           "market/envelope": frozenset({"dso"})},
    end_block=end_block,
    invariants=(escrow_backed, energy_balanced),
)
