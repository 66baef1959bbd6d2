"""Ledger modules: each owns a key prefix, a set of transaction kinds, and invariants.

Every module has the same shape (Cosmos SDK style): ``types`` (bodies, validation),
``keeper`` (the only code that touches the module's keys), ``handlers`` (kind -> keeper
calls + events), ``invariants``. Modules reach each other only through the small keeper
functions they import explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.state import State

Handler = Callable[[State, TxContext, dict[str, Any]], None]
BlockHook = Callable[[State, BlockContext, list[dict[str, Any]]], None]
Invariant = Callable[[State], None]
GenesisHook = Callable[[State, dict[str, Any]], None]
# called after an authenticated transaction failed in its body (state already rolled back)
RejectHook = Callable[[State, TxContext, str], None]


@dataclass(frozen=True)
class Module:
    """A ledger module: a name, its handlers by tx kind, hooks and invariants."""

    name: str
    version: int
    handlers: Mapping[str, Handler]
    # which roles may send each kind; a kind missing here is open to every participant
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    init_genesis: GenesisHook | None = None
    begin_block: BlockHook | None = None
    end_block: BlockHook | None = None
    invariants: tuple[Invariant, ...] = ()
    on_rejected: RejectHook | None = None
