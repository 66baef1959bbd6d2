"""What the HTTP API needs from a node: the ``NodeService`` protocol.

The API depends on this protocol only; the implementations (the embedded network's, a
validator process's) live with the node (``gridledger.node.service``).

Every read is answered from the node's last **certified** state and names the height it is
from: a block that has not gathered its quorum certificate is never visible (the node
executes it aside and attaches it to its state only once certified), and values read
together (an account's balance, nonce and record) come from one height.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gridledger.errors import RejectedTx
from gridledger.ledger.block import Certificate, Header
from gridledger.ledger.rules import Rule
from gridledger.ledger.state import AbsenceProof, MembershipProof
from gridledger.ledger.tx import Tx

BlockView = tuple[Header, list[bytes], dict[str, Any], Certificate]


class NodeService(Protocol):
    chain_id: str

    def submit(self, raw: bytes) -> Tx:
        """Admit one signed transaction; raises the ``RejectedTx`` naming the rule."""

    def submit_many(self, raws: list[bytes]) -> list[Tx | RejectedTx]:
        """Admit a batch; per item the ``Tx`` or the ``RejectedTx``."""

    def status(self) -> dict[str, Any]:
        """Chain id, certified height and its state root, validators, node counters."""

    def query(self, paths: Sequence[str]) -> tuple[int, list[Any]]:
        """``Application.query`` for each path, all at one certified height: (height,
        results). Raises ``KeyError`` for an unknown query."""

    def prove(self, key: bytes) -> tuple[int, bytes, MembershipProof | AbsenceProof]:
        """(height, certified state root, proof): membership if ``key`` is set, absence if
        not, both against the state root of block ``height``."""

    def block(self, height: int) -> BlockView | None:
        """A stored (certified) block: header, raw transactions, receipts, certificate."""

    def receipt(self, tx_id: bytes) -> tuple[int, dict[str, Any]] | None:
        """(height, receipt) of a committed transaction, from the node's store."""

    def views(self) -> Sequence[str]:
        """The published module views, ``<module>/<view>`` (``Application.views``)."""

    def rules(self) -> Sequence[Rule]:
        """Every rule of this chain (``Application.rules``): what statuses map."""

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn`` with each finalized block's event; returns the cancel function."""
