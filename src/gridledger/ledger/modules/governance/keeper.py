"""The only code that touches ``gov/`` keys."""

from __future__ import annotations

from gridledger.ledger import codec
from gridledger.ledger.modules.governance.types import Params, parse_params
from gridledger.ledger.state import State

PARAMS = b"gov/params"
_CACHE: dict[bytes | None, Params] = {}


def load_params(state: State) -> Params:
    """The chain's parameters: genesis overrides on top of the defaults.

    Memoised by the stored bytes (a pure function of them), so hot paths can call it freely.
    """
    raw = state.get(PARAMS)
    hit = _CACHE.get(raw)
    if hit is not None:
        return hit
    p = Params() if raw is None else parse_params(codec.decode(raw))
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[raw] = p
    return p


def store_params(state: State, params: Params) -> None:
    """Store the non-default parameters; nothing is written when all are defaults."""
    obj = params.to_obj()
    if obj:
        state.set_obj(PARAMS, obj)
    else:
        state.delete(PARAMS)


def grid_account(state: State) -> bytes | None:
    """The DSO / community-fund account that is the market's grid counterparty."""
    return load_params(state).grid_account
