"""Governance genesis: parameters from the genesis document.

Parameter changes by vote are not implemented yet; until then parameters are fixed at
genesis (see docs/market.md, "open items").
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.modules.governance.types import parse_params
from gridledger.ledger.state import State


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Validate and store ``genesis["params"]``; default the grid account to the first dso."""
    params = parse_params(dict(genesis.get("params", {})))
    if params.grid_account is None:
        from gridledger.crypto.sig import address_of

        for p in genesis.get("participants", []):
            if "dso" in p.get("roles", []):
                params = dataclasses.replace(params, grid_account=address_of(p["alg"], p["pk"]))
                break
    keeper.store_params(state, params)
