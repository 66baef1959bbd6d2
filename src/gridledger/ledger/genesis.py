"""Genesis documents: chain id, parameters, initial participants, validators and balances."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridledger.crypto.hashing import tagged_hash
from gridledger.errors import ConfigError
from gridledger.ledger import codec


@dataclass(frozen=True)
class Genesis:
    """A genesis document (canonical CBOR); its hash is block 1's ``prev_hash``."""

    doc: dict[str, Any]

    @property
    def chain_id(self) -> str:
        return str(self.doc["chain_id"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.doc.get("params", {}))

    def encode(self) -> bytes:
        return codec.encode(self.doc)

    @property
    def hash(self) -> bytes:
        return tagged_hash("gl/genesis", self.encode())

    @classmethod
    def decode(cls, raw: bytes) -> Genesis:
        return cls(codec.decode(raw))


def make_genesis(chain_id: str, participants: list[dict[str, Any]],
                 params: dict[str, Any] | None = None,
                 sections: dict[str, Any] | None = None) -> Genesis:
    """Build a genesis document.

    ``participants``: dicts with ``alg``, ``pk`` (bytes), ``roles`` (list), optional ``cp``
    (connection point id), ``name`` and ``balance_micro``. ``sections``: further top-level
    sections modules read at genesis (e.g. ``privacy``).
    """
    if not chain_id or len(chain_id) > 64:
        raise ConfigError("chain_id must be 1..64 characters")
    if not any("validator" in p.get("roles", []) for p in participants):
        raise ConfigError("genesis needs at least one validator")
    doc = {"chain_id": chain_id, "params": params or {}, "participants": participants,
           "version": 1}
    for name, section in sorted((sections or {}).items()):
        if name in doc:
            raise ConfigError(f"genesis section {name!r} clashes with a built-in field")
        doc[name] = section
    codec.encode(doc)  # fail early on floats or other non-consensus types
    return Genesis(codec.decode(codec.encode(doc)))
