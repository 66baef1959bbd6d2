"""Explicit execution context: everything a handler may know besides state.

Nothing in execution reads a clock or a random source; block time and height arrive here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BlockContext:
    chain_id: str
    height: int
    slot_time: int  # seconds since the chain's genesis time, taken from the ordered log


@dataclass
class TxContext:
    block: BlockContext
    sender: bytes
    tx_hash: bytes  # the transaction id (Tx.id: hash of the signed content, not the signature)
    kind: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, type_: str, **attrs: Any) -> None:
        """Record an event in this transaction's receipt."""
        self.events.append({"type": type_, **attrs})
