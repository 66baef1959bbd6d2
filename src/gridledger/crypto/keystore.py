"""Encrypted on-disk keystore: one JSON file per key.

The 32-byte ML-DSA seed is encrypted with AES-256-GCM under a key derived from the
passphrase with **Argon2id** (RFC 9106) through PyCA ``cryptography``. The algorithm id and
address are stored in clear and bound as associated data, so swapping them is detected.

* **Cost.** New files use RFC 9106 §4's second recommended option (t = 3 passes, p = 4 lanes,
  m = 64 MiB). A file's cost parameters are read back only inside bounds: never below the
  floor of OWASP's password-storage guidance for Argon2id (m = 19 MiB, t = 2, p = 1), never
  above a ceiling (m = 1 GiB, t = 16, p = 16), so a crafted file can neither downgrade the
  derivation nor make loading exhaust memory or time.
* **Passphrases** are Unicode-normalised to **NFKC** before derivation (NIST SP 800-63B
  §5.1.1.2), so the same passphrase typed on keyboards or systems that compose characters
  differently (é as one code point or as e + combining accent, full-width digits) opens
  the file.
* **Version 1 files** (scrypt, N = 2^15, r = 8, p = 1, raw UTF-8 passphrase) still load:
  scrypt N between 2^15 and 2^20 (a power of two), r = 8, p = 1 are accepted; the
  passphrase is tried NFKC-normalised, then exactly as typed (how version 1 derived it).
  Outside those bounds the file is refused with a message naming the parameter.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gridledger.crypto.sig import SigningKey
from gridledger.errors import KeystoreError


class WrongPassphrase(KeystoreError):
    """The passphrase does not open the file (or its ciphertext was altered)."""


VERSION = 2
NORMALISATION: Final[Literal["NFKC"]] = "NFKC"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: passes, lanes and memory (KiB)."""

    iterations: int = 3
    lanes: int = 4
    memory_kib: int = 64 * 1024

    def check(self, where: str) -> None:
        """Raise ``KeystoreError`` if any parameter lies outside ``KDF_FLOOR``..``KDF_CEILING``."""
        for name in ("iterations", "lanes", "memory_kib"):
            v = getattr(self, name)
            lo, hi = getattr(KDF_FLOOR, name), getattr(KDF_CEILING, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise KeystoreError(
                    f"{where}: Argon2id {name}={v!r} is outside the accepted range {lo}..{hi}"
                )
        if self.memory_kib < 8 * self.lanes:
            raise KeystoreError(f"{where}: Argon2id memory_kib must be at least 8 x lanes")


KDF_DEFAULT = KdfParams()
"""RFC 9106 §4, second recommended option."""
KDF_FLOOR = KdfParams(iterations=2, lanes=1, memory_kib=19 * 1024)
"""OWASP Password Storage Cheat Sheet, minimum Argon2id configuration."""
KDF_CEILING = KdfParams(iterations=16, lanes=16, memory_kib=1024 * 1024)

_LEGACY_N_MIN, _LEGACY_N_MAX, _LEGACY_R, _LEGACY_P = 2**15, 2**20, 8, 1


def normalise_passphrase(passphrase: str) -> bytes:
    """The bytes a passphrase derives keys from: NFKC, then UTF-8."""
    return unicodedata.normalize(NORMALISATION, passphrase).encode()


def _argon2id(secret: bytes, salt: bytes, kdf: KdfParams) -> bytes:
    return Argon2id(
        salt=salt, length=32, iterations=kdf.iterations, lanes=kdf.lanes,
        memory_cost=kdf.memory_kib,
    ).derive(secret)


@dataclass(frozen=True)
class KeyInfo:
    name: str
    alg: str
    address: str
    path: Path
    kdf: str = ""
    """``argon2id`` or ``scrypt`` (a version 1 file)."""


def save_key(
    directory: str | Path,
    name: str,
    key: SigningKey,
    passphrase: str,
    scrypt_n: int | None = None,
    *,
    kdf: KdfParams | None = None,
) -> Path:
    """Write ``key`` encrypted to ``directory/name.key.json``; refuses to overwrite.

    ``kdf`` is the Argon2id cost (default ``KDF_DEFAULT``; must lie within the bounds).
    ``scrypt_n`` is the cost argument of callers written for version 1 files: below
    version 1's default 2^15 it asks for a cheap key (tests) and gets the cheapest one
    allowed (``KDF_FLOOR``), otherwise the default. Raises ``KeystoreError`` for a bad name, an
    existing file or a cost out of bounds.
    """
    if not name or "/" in name or os.sep in name or name.startswith("."):
        raise KeystoreError(f"invalid key name {name!r}")
    if kdf is None:
        kdf = KDF_FLOOR if scrypt_n is not None and scrypt_n < _LEGACY_N_MIN else KDF_DEFAULT
    kdf.check("save_key")
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise KeystoreError(f"keystore folder {d} is a file")
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.key.json"
    if path.exists():
        raise KeystoreError(f"{path} already exists")
    salt, nonce = os.urandom(16), os.urandom(12)
    aad = f"{key.alg}|{key.address.hex()}".encode()
    ct = AESGCM(_argon2id(normalise_passphrase(passphrase), salt, kdf)).encrypt(nonce, key.seed, aad)
    doc = {"version": VERSION, "name": name, "alg": key.alg, "address": key.address.hex(),
           "public_key": key.public_key.raw.hex(),
           "kdf": {"name": "argon2id", "iterations": kdf.iterations, "lanes": kdf.lanes,
                   "memory_kib": kdf.memory_kib, "salt": salt.hex(),
                   "passphrase_normalisation": NORMALISATION},
           "cipher": {"name": "aes-256-gcm", "nonce": nonce.hex(), "ciphertext": ct.hex()}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    return path


def _candidate_keks(path: Path, doc: dict[str, Any], passphrase: str) -> list[bytes]:
    """Key-encryption keys to try, after checking the file's KDF parameters."""
    kdf = doc["kdf"]
    salt = bytes.fromhex(kdf["salt"])
    name = kdf.get("name")
    if name == "argon2id":
        params = KdfParams(kdf["iterations"], kdf["lanes"], kdf["memory_kib"])
        params.check(str(path))
        return [_argon2id(normalise_passphrase(passphrase), salt, params)]
    if name == "scrypt" and doc.get("version") == 1:
        n, r, p = kdf["n"], kdf.get("r", _LEGACY_R), kdf.get("p", _LEGACY_P)
        for label, v in (("n", n), ("r", r), ("p", p)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise KeystoreError(f"{path}: scrypt {label}={v!r} is not an integer")
        if not _LEGACY_N_MIN <= n <= _LEGACY_N_MAX or n & (n - 1):
            raise KeystoreError(
                f"{path}: scrypt N={n} is outside the accepted range (a power of two from "
                f"{_LEGACY_N_MIN} to {_LEGACY_N_MAX}); re-create the key with 'gridledger keys new'"
            )
        if (r, p) != (_LEGACY_R, _LEGACY_P):
            raise KeystoreError(f"{path}: scrypt r={r}, p={p} differ from version 1's r=8, p=1")
        # Version 1 derived from the passphrase exactly as typed; NFKC first so a passphrase
        # typed in another composition opens files whose passphrase was already NFKC.
        secrets = dict.fromkeys((normalise_passphrase(passphrase), passphrase.encode()))
        return [Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(sec) for sec in secrets]
    raise KeystoreError(f"{path}: unsupported key derivation {name!r} (version {doc.get('version')!r})")


def load_key(path: str | Path, passphrase: str) -> SigningKey:
    """Decrypt a keystore file; ``KeystoreError`` on a wrong passphrase, a corrupt file, or
    key-derivation parameters outside the accepted bounds (the message names which)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        cipher = doc["cipher"]
        aad = f"{doc['alg']}|{doc['address']}".encode()
        keks = _candidate_keks(path, doc, passphrase)
        nonce, ct = bytes.fromhex(cipher["nonce"]), bytes.fromhex(cipher["ciphertext"])
    except FileNotFoundError as exc:
        raise KeystoreError(f"no keystore file at {path}") from exc
    except IsADirectoryError as exc:
        raise KeystoreError(f"{path} is a folder, not a keystore file") from exc
    except UnicodeDecodeError as exc:
        raise KeystoreError(f"{path} is not a GridLedger keystore file: not text") from exc
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise KeystoreError(f"{path} is not a GridLedger keystore file: {exc}") from exc
    seed = None
    for kek in keks:
        try:
            seed = AESGCM(kek).decrypt(nonce, ct, aad)
            break
        except InvalidTag:  # wrong passphrase (or an altered file)
            continue
    if seed is None:
        raise WrongPassphrase(f"wrong passphrase or corrupted keystore {path}")
    key = SigningKey(doc["alg"], seed)
    if key.address.hex() != doc["address"]:
        raise KeystoreError(f"{path}: decrypted key does not match its address")
    return key


def list_keys(directory: str | Path) -> list[KeyInfo]:
    """Key files in ``directory`` (no passphrase needed); unreadable files are skipped.

    Raises ``KeystoreError`` if ``directory`` does not exist or is not a folder."""
    d = Path(directory)
    if not d.is_dir():
        raise KeystoreError(f"keystore folder {d} does not exist" if not d.exists()
                            else f"keystore folder {d} is a file")
    out = []
    for p in sorted(d.glob("*.key.json")):
        try:
            doc = json.loads(p.read_text())
            out.append(KeyInfo(doc["name"], doc["alg"], doc["address"], p,
                               str(doc.get("kdf", {}).get("name", ""))))
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            continue
    return out
