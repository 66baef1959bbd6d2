"""Post-quantum primitives: ML-DSA signatures, ML-KEM sealing, SHA3 hashing, Merkle trees.

Everything here is pure except ``keystore`` (files). All signatures and keys are tagged with
an algorithm id so a chain can rotate algorithms without a fork (crypto agility).
"""

from gridledger.crypto.hashing import sha3_256, tagged_hash
from gridledger.crypto.sig import (
    PQ_SIG_ALGS,
    PublicKey,
    SigningKey,
    check_backend,
    verify_signature,
)

__all__ = [
    "PQ_SIG_ALGS",
    "PublicKey",
    "SigningKey",
    "check_backend",
    "sha3_256",
    "tagged_hash",
    "verify_signature",
]
