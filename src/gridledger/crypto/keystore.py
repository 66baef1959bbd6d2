"""Encrypted on-disk keystore: one JSON file per key.

The 32-byte ML-DSA seed is encrypted with AES-256-GCM under a key derived from the
passphrase with scrypt (RFC 7914; n=2^15, r=8, p=1). The algorithm id and address are stored
in clear and bound as associated data, so swapping them is detected.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gridledger.crypto.sig import SigningKey
from gridledger.errors import KeystoreError

_N, _R, _P = 2**15, 8, 1


def _kek(passphrase: str, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=_R, p=_P).derive(passphrase.encode())


@dataclass(frozen=True)
class KeyInfo:
    name: str
    alg: str
    address: str
    path: Path


def save_key(directory: str | Path, name: str, key: SigningKey, passphrase: str,
             scrypt_n: int = _N) -> Path:
    """Write ``key`` encrypted to ``directory/name.key.json``; refuses to overwrite."""
    if not name or "/" in name or name.startswith("."):
        raise KeystoreError(f"invalid key name {name!r}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.key.json"
    if path.exists():
        raise KeystoreError(f"{path} already exists")
    salt, nonce = os.urandom(16), os.urandom(12)
    aad = f"{key.alg}|{key.address.hex()}".encode()
    ct = AESGCM(_kek(passphrase, salt, scrypt_n)).encrypt(nonce, key.seed, aad)
    doc = {"version": 1, "name": name, "alg": key.alg, "address": key.address.hex(),
           "public_key": key.public_key.raw.hex(),
           "kdf": {"name": "scrypt", "n": scrypt_n, "r": _R, "p": _P, "salt": salt.hex()},
           "cipher": {"name": "aes-256-gcm", "nonce": nonce.hex(), "ciphertext": ct.hex()}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    return path


def load_key(path: str | Path, passphrase: str) -> SigningKey:
    """Decrypt a keystore file; ``KeystoreError`` on a wrong passphrase or a corrupt file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        kdf, cipher = doc["kdf"], doc["cipher"]
        aad = f"{doc['alg']}|{doc['address']}".encode()
        kek = _kek(passphrase, bytes.fromhex(kdf["salt"]), int(kdf["n"]))
    except FileNotFoundError as exc:
        raise KeystoreError(f"no keystore file at {path}") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise KeystoreError(f"{path} is not a GridLedger keystore file: {exc}") from exc
    try:
        seed = AESGCM(kek).decrypt(bytes.fromhex(cipher["nonce"]),
                                   bytes.fromhex(cipher["ciphertext"]), aad)
    except Exception as exc:
        raise KeystoreError(f"wrong passphrase or corrupted keystore {path}") from exc
    key = SigningKey(doc["alg"], seed)
    if key.address.hex() != doc["address"]:
        raise KeystoreError(f"{path}: decrypted key does not match its address")
    return key


def list_keys(directory: str | Path) -> list[KeyInfo]:
    out = []
    for p in sorted(Path(directory).glob("*.key.json")):
        try:
            doc = json.loads(p.read_text())
            out.append(KeyInfo(doc["name"], doc["alg"], doc["address"], p))
        except (ValueError, KeyError):
            continue
    return out
