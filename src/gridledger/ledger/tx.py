"""The transaction envelope.

``{chain_id, sender, nonce, kind, body, alg, sig}`` in canonical CBOR. The signature covers
the canonical encoding of every field except ``sig``, under the FIPS 204 context string
``gl/tx`` so it can never be replayed as another kind of signed message. ``chain_id`` stops
cross-chain replay; the per-sender ``nonce`` stops replay within a chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import cbor2

from gridledger.crypto.hashing import sha3_256, tagged_hash
from gridledger.errors import MalformedEncoding, Oversize
from gridledger.ledger import codec
from gridledger.memo import Memo

TX_CONTEXT = b"gl/tx"
MAX_TX_BYTES = 16 * 1024
_FIELDS = ("alg", "body", "chain_id", "kind", "nonce", "sender", "sig")
_ALG_KEY = cbor2.dumps("alg")
_SIG_KEY = cbor2.dumps("sig")


@dataclass(frozen=True)
class Tx:
    """A decoded, structurally valid transaction (signature not yet checked)."""

    chain_id: str
    sender: bytes
    nonce: int
    kind: str
    body: dict[str, Any]
    alg: str
    sig: bytes
    raw: bytes

    @cached_property
    def hash(self) -> bytes:
        return sha3_256(self.raw)

    @cached_property
    def id(self) -> bytes:
        """The transaction's identity: a hash of everything but the signature.

        ML-DSA signing is hedged (randomised), so the wire hash of the same transaction
        differs each time it is signed; the id does not. Modules name what a transaction
        creates (order ids, commitment ids) by it, so state roots depend only on what was
        signed, and a re-signed copy cannot pose as a different order (no malleability).
        """
        return tx_id(self.signing_bytes)

    @cached_property
    def signing_bytes(self) -> bytes:
        """The signed bytes: ``raw`` without its ``sig`` entry, under a 6-entry map header.

        ``raw`` is canonical (``decode_tx`` checked it), so its keys come in the canonical
        order alg, sig, body, kind, nonce, sender, chain_id (shorter keys first): cutting
        the ``sig`` entry out of the bytes gives exactly ``signing_bytes(...)`` of the
        fields, without encoding the body again (re-encoding was a third of a transaction's
        admission cost besides the signature check).
        """
        alg_end = 1 + len(_ALG_KEY) + len(cbor2.dumps(self.alg))
        sig_len = len(_SIG_KEY) + len(cbor2.dumps(self.sig))
        if self.raw[:1] == b"\xa7" and self.raw[alg_end:alg_end + len(_SIG_KEY)] == _SIG_KEY:
            return b"\xa6" + self.raw[1:alg_end] + self.raw[alg_end + sig_len:]
        # a Tx built by hand (not by decode_tx) may carry other bytes: encode the fields
        return signing_bytes(self.chain_id, self.sender, self.nonce, self.kind, self.body, self.alg)


def tx_id(signing: bytes) -> bytes:
    """``Tx.id`` of the transaction whose signed bytes are ``signing`` (``signing_bytes``):
    known before it is signed."""
    return tagged_hash("gl/txid", signing)


def signing_bytes(chain_id: str, sender: bytes, nonce: int, kind: str, body: dict[str, Any],
                  alg: str) -> bytes:
    return codec.encode({"alg": alg, "body": body, "chain_id": chain_id, "kind": kind,
                         "nonce": nonce, "sender": sender})


class TxSigner(Protocol):
    """What signs a transaction: an ML-DSA ``SigningKey``, or a k-of-n committee's
    ``gridledger.committee.CommitteeSigner``."""

    @property
    def address(self) -> bytes: ...
    @property
    def alg(self) -> str: ...
    def sign(self, message: bytes, context: bytes = b"") -> bytes: ...


def sign_tx(key: TxSigner, chain_id: str, nonce: int, kind: str, body: dict[str, Any]) -> bytes:
    """Build and sign a transaction; returns its canonical bytes."""
    sender = key.address
    msg = signing_bytes(chain_id, sender, nonce, kind, body, key.alg)
    return signed_tx_bytes(key.alg, sender, chain_id, nonce, kind, body, key.sign(msg, TX_CONTEXT))


def signed_tx_bytes(alg: str, sender: bytes, chain_id: str, nonce: int, kind: str,
                    body: dict[str, Any], sig: bytes) -> bytes:
    """A transaction's canonical bytes from its fields and ``sig`` over ``signing_bytes`` of
    them (context ``TX_CONTEXT``): for a caller that signs elsewhere (a signing pool)."""
    return codec.encode({"alg": alg, "body": body, "chain_id": chain_id, "kind": kind,
                         "nonce": nonce, "sender": sender, "sig": sig})


def decode_tx(raw: bytes, max_bytes: int = MAX_TX_BYTES) -> Tx:
    """Size check, then canonical decoding and field typing. Raises a ``RejectedTx``.

    Decoding is a pure function of the bytes, so the last decodes are memoised: admission,
    block cutting and execution of one transaction then parse it once.
    """
    if len(raw) > max_bytes:
        raise Oversize(f"{len(raw)} bytes > limit {max_bytes}")
    hit = _DECODED.get(raw)
    if hit is not None:
        return hit
    tx = _decode(raw)
    _DECODED.put(raw, tx)
    return tx


_DECODED_MAX = 50_000
_DECODED_MAX_BYTES = 48 * 2**20
_DECODED: Memo[bytes, Tx] = Memo(_DECODED_MAX, lambda raw, _tx: len(raw), _DECODED_MAX_BYTES)
"""The memo holds what one transaction's admission, cutting and executions need (a few
slots), not a day: aged by block time (``gridledger.memo``: what the last hour or two
decoded), and its raw bytes are capped (a decoded transaction holds about as much again:
its body, signature and signed bytes). At 1,000 members a slot carries ~2,300 transactions
of ~3.5 KB: 50,000 entries alone were ~350 MiB of a 1,000-member run (issue 17); at 10
members the byte cap alone took ~2 days to reach (~+20 MiB a day after day 1)."""


def decode_memo_size() -> tuple[int, int]:
    """(transactions, raw bytes) the decoding memo holds."""
    return len(_DECODED), _DECODED.weight


def _decode(raw: bytes) -> Tx:
    obj = codec.decode(raw)
    if not isinstance(obj, dict) or tuple(sorted(obj)) != _FIELDS:
        raise MalformedEncoding(f"envelope must have exactly the fields {', '.join(_FIELDS)}")
    checks = (("chain_id", str), ("sender", bytes), ("nonce", int), ("kind", str),
              ("body", dict), ("alg", str), ("sig", bytes))
    for name, typ in checks:
        if not isinstance(obj[name], typ) or isinstance(obj[name], bool):
            raise MalformedEncoding(f"field {name!r} must be {typ.__name__}")
    if len(obj["sender"]) != 32:
        raise MalformedEncoding("sender must be a 32-byte address")
    if not 0 <= obj["nonce"] < 2**63:
        raise MalformedEncoding("nonce out of range")
    return Tx(obj["chain_id"], obj["sender"], obj["nonce"], obj["kind"], obj["body"],
              obj["alg"], obj["sig"], raw)
