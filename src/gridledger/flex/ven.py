"""Credentials of an OpenADR VEN that reports flexibility delivery for a member.

A standard VEN speaks OAuth2 client credentials (``client_id`` = its VEN name, a client
secret), not ML-DSA. Its ledger key is therefore *derived from its secret*: whoever holds
the secret (the VEN, and the VTN while it serves the VEN's request) can sign ``flex/report``
as that VEN and nothing else (role ``ven``). The member enrols the VEN once with
``flex/ven`` (``enroll_body``): the derived public key and a hash of the secret. Secrets must
be high-entropy (``new_secret``): the hash is public.
"""

from __future__ import annotations

import secrets
from typing import Any

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.sig import SigningKey

VEN_ALG = "ml-dsa-44"
"""ML-DSA-44: the algorithm GridLedger allows constrained devices (meters, VENs)."""


def new_secret() -> str:
    """A fresh client secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def ven_key(name: str, secret: str, alg: str = VEN_ALG) -> SigningKey:
    """The VEN's ledger signing key, derived from its name and client secret."""
    return SigningKey.from_seed(alg, tagged_hash("gl/ven-key", name.encode(), secret.encode()))


def secret_hash(name: str, secret: str) -> bytes:
    """What the ledger stores of the client secret (32 bytes)."""
    return tagged_hash("gl/ven-secret", name.encode(), secret.encode())


def enroll_body(name: str, secret: str, alg: str = VEN_ALG) -> dict[str, Any]:
    """The ``flex/ven`` body a member signs to enrol the VEN ``name``."""
    key = ven_key(name, secret, alg)
    return {"name": name, "alg": key.alg, "pk": key.public_key.raw,
            "secret_hash": secret_hash(name, secret)}
