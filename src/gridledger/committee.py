"""Client side of a k-of-n committee identity (e.g. a DSO run by three nodes, k = 2).

The ledger side (descriptor, signature format, rules) is ``gridledger.ledger.committee``.
Here is what the members' software does, the same for the simulator, the CLI and a real
deployment:

* ``member_signature(key, committee, signing_bytes)`` — one member signs a proposed
  transaction (``unsigned_tx`` gives the bytes a coordinator distributes);
* ``assemble(signing_bytes, signatures)`` — anyone with k of them builds the transaction;
* ``CommitteeNode`` — a member's signing service with its own policy (``approve``: it signs
  only duties it agrees with, e.g. an envelope it computed itself) that can be stopped
  (crashed) and started again;
* ``CommitteeSigner`` — signs *as the committee* by collecting k signatures from the
  running nodes; it has ``address``, ``alg`` and ``sign(message, context)`` like a
  ``SigningKey``, so ``ledger.tx.sign_tx`` and every client that signs with a key sign
  with a committee unchanged.

One node's crash does not stop the committee (k of the others still sign); one node's
compromise does not forge for it (one signature is below the threshold: the ledger refuses
the transaction with ``committee-threshold``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gridledger.crypto.sig import SigningKey
from gridledger.errors import GridLedgerError
from gridledger.ledger import codec
from gridledger.ledger.committee import (
    COMMITTEE_ALG,
    Committee,
    encode_signatures,
    make_committee,
)
from gridledger.ledger.tx import TX_CONTEXT, signing_bytes

Approve = Callable[[str, dict[str, Any]], bool]
"""A member's policy: ``approve(kind, body)`` — whether it signs this duty."""


class CommitteeUnavailable(GridLedgerError):
    """Fewer than k committee members are running and approve: nothing can be signed."""


class NotMember(GridLedgerError):
    """The key is not a member of the committee."""


def committee_of(threshold: int, keys: Sequence[SigningKey]) -> Committee:
    """The committee of ``keys`` (index = position) with threshold k; raises
    ``BadCommittee`` (a ``RejectedTx``) when k or the keys are not acceptable."""
    return make_committee(threshold, [(k.alg, k.public_key.raw) for k in keys])


def genesis_entry(committee: Committee, name: str, roles: Sequence[str],
                  balance_micro: int = 0) -> dict[str, Any]:
    """The committee's participant entry for ``ledger.genesis.make_genesis``."""
    entry: dict[str, Any] = {"alg": COMMITTEE_ALG, "pk": committee.encode(),
                             "roles": sorted(roles), "name": name}
    if balance_micro:
        entry["balance_micro"] = balance_micro
    return entry


def unsigned_tx(committee: Committee, chain_id: str, nonce: int, kind: str,
                body: dict[str, Any]) -> bytes:
    """The bytes every member signs for the committee's transaction ``kind``/``body``."""
    return signing_bytes(chain_id, committee.address, nonce, kind, body, COMMITTEE_ALG)


def member_signature(key: SigningKey, committee: Committee, message: bytes,
                     context: bytes = TX_CONTEXT) -> tuple[int, bytes]:
    """``key``'s ``(member index, signature)`` over ``message``; raises ``NotMember``."""
    index = committee.index_of(key.alg, key.public_key.raw)
    if index is None:
        raise NotMember("this key is not a member of the committee")
    return index, key.sign(message, context)


def assemble(message: bytes, signatures: Sequence[tuple[int, bytes]]) -> bytes:
    """The committee transaction from its signing bytes and member signatures (any order;
    the ledger needs k distinct members)."""
    fields = codec.decode(message)
    return codec.encode({**fields, "sig": encode_signatures(signatures)})


class CommitteeNode:
    """One member's signing service: its key, its policy, and whether it is running.

    ``approve(kind, body)`` is what this node checks before signing (default: every duty);
    a DSO node would recompute an envelope or re-run state estimation and sign only if it
    gets the same result. ``stop()`` / ``start()`` simulate a crash and a restart.
    """

    def __init__(self, name: str, key: SigningKey, approve: Approve | None = None) -> None:
        self.name = name
        self.key = key
        self.approve = approve
        self.running = True
        self.signed = 0
        self.refused = 0

    def stop(self) -> None:
        self.running = False

    def start(self) -> None:
        self.running = True

    def sign(self, message: bytes, context: bytes) -> bytes | None:
        """This node's signature over a committee transaction's signing bytes, or None when
        it is stopped or its policy refuses the duty."""
        if not self.running:
            return None
        if self.approve is not None:
            fields = codec.decode(message)
            if not self.approve(str(fields.get("kind", "")), dict(fields.get("body", {}))):
                self.refused += 1
                return None
        self.signed += 1
        return self.key.sign(message, context)


class CommitteeSigner:
    """Signs as the committee: k signatures gathered from the running nodes (in member
    order). Quacks like a ``SigningKey`` for ``sign_tx``: ``address``, ``alg``, ``sign``."""

    alg = COMMITTEE_ALG

    def __init__(self, committee: Committee, nodes: Sequence[CommitteeNode]) -> None:
        self.committee = committee
        members: list[tuple[int, CommitteeNode]] = []
        for node in nodes:
            index = committee.index_of(node.key.alg, node.key.public_key.raw)
            if index is None:
                raise NotMember(f"node {node.name} is not a member of the committee")
            members.append((index, node))
        self._members = sorted(members, key=lambda m: m[0])
        self.nodes = [n for _i, n in self._members]

    @property
    def address(self) -> bytes:
        return self.committee.address

    def running(self) -> list[CommitteeNode]:
        return [n for n in self.nodes if n.running]

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        """The committee signature over ``message``: the first k running members that
        approve. Raises ``CommitteeUnavailable`` when fewer than k do."""
        sigs: list[tuple[int, bytes]] = []
        for index, node in self._members:
            if len(sigs) == self.committee.threshold:
                break
            s = node.sign(message, context)
            if s is not None:
                sigs.append((index, s))
        if len(sigs) < self.committee.threshold:
            raise CommitteeUnavailable(f"{len(sigs)} of {self.committee.threshold} member "
                                       f"signatures available ({len(self.running())} of "
                                       f"{len(self.nodes)} nodes running)")
        return encode_signatures(sigs)
