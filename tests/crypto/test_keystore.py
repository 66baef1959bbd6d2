"""Keystore: Argon2id within bounds, NFKC passphrases, version 1 (scrypt) files still open."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gridledger.crypto.keystore import (
    KDF_CEILING,
    KDF_DEFAULT,
    KDF_FLOOR,
    KdfParams,
    list_keys,
    load_key,
    save_key,
)
from gridledger.crypto.sig import SigningKey
from gridledger.errors import KeystoreError

FAST = KDF_FLOOR  # the cheapest cost the keystore accepts


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("ml-dsa-44")


def _doc(path: Path) -> dict:  # type: ignore[type-arg]
    return dict(json.loads(path.read_text()))


def test_new_files_use_argon2id_at_the_rfc9106_cost(tmp_path: Path, key: SigningKey) -> None:
    path = save_key(tmp_path, "k", key, "correct horse")
    kdf = _doc(path)["kdf"]
    assert kdf["name"] == "argon2id" and kdf["passphrase_normalisation"] == "NFKC"
    assert (kdf["iterations"], kdf["lanes"], kdf["memory_kib"]) == (3, 4, 65536)
    assert KDF_DEFAULT == KdfParams(3, 4, 65536)
    assert load_key(path, "correct horse").address == key.address
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        load_key(path, "correct horse ")


@pytest.mark.parametrize(
    ("typed_at_save", "typed_at_load"),
    [
        ("caf\u00e9", "cafe\u0301"),          # one code point vs e + combining acute
        ("\uff50\uff41\uff53\uff53\uff11", "pass1"),  # full-width letters and digit
        ("\u212bngstr\u00f6m", "\u00c5ngstro\u0308m"),  # angstrom sign vs A-ring
    ],
)
def test_passphrases_are_nfkc_normalised(tmp_path: Path, key: SigningKey,
                                         typed_at_save: str, typed_at_load: str) -> None:
    path = save_key(tmp_path, "k", key, typed_at_save, kdf=FAST)
    assert load_key(path, typed_at_load).address == key.address


def _legacy_file(tmp_path: Path, key: SigningKey, passphrase: str, n: int = 2**15,
                 r: int = 8, p: int = 1) -> Path:
    """A version 1 file exactly as the previous keystore wrote it (raw UTF-8 passphrase)."""
    salt, nonce = os.urandom(16), os.urandom(12)
    kek = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase.encode())
    aad = f"{key.alg}|{key.address.hex()}".encode()
    doc = {"version": 1, "name": "old", "alg": key.alg, "address": key.address.hex(),
           "public_key": key.public_key.raw.hex(),
           "kdf": {"name": "scrypt", "n": n, "r": r, "p": p, "salt": salt.hex()},
           "cipher": {"name": "aes-256-gcm", "nonce": nonce.hex(),
                      "ciphertext": AESGCM(kek).encrypt(nonce, key.seed, aad).hex()}}
    path = tmp_path / "old.key.json"
    path.write_text(json.dumps(doc))
    return path


def test_version_1_files_still_load(tmp_path: Path, key: SigningKey) -> None:
    path = _legacy_file(tmp_path, key, "old secret")
    assert load_key(path, "old secret").address == key.address
    assert [k.kdf for k in list_keys(tmp_path)] == ["scrypt"]


def test_version_1_passphrase_that_is_not_nfkc_still_opens(tmp_path: Path, key: SigningKey) -> None:
    # Version 1 derived from the passphrase as typed: a decomposed one still works typed so.
    typed = "cafe\u0301"
    path = _legacy_file(tmp_path, key, typed)
    assert load_key(path, typed).address == key.address


@pytest.mark.parametrize(
    ("n", "r", "p", "why"),
    [
        (2**12, 8, 1, r"scrypt N=4096 is outside the accepted range"),
        (2**40, 8, 1, r"scrypt N=1099511627776 is outside"),   # would need 1 PiB: refused, not run
        (3 * 2**15, 8, 1, r"outside the accepted range \(a power of two"),
        (2**15, 64, 1, r"scrypt r=64, p=1 differ"),
        (True, 8, 1, r"scrypt n=True is not an integer"),
    ],
)
def test_version_1_cost_is_bounded(tmp_path: Path, key: SigningKey, n: int, r: int, p: int, why: str) -> None:
    path = _legacy_file(tmp_path, key, "x", n=n, r=r, p=p)
    with pytest.raises(KeystoreError, match=why):
        load_key(path, "x")


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("memory_kib", 1024, r"memory_kib=1024 is outside the accepted range 19456\.\.1048576"),
        ("memory_kib", 2**31, r"memory_kib=2147483648 is outside"),  # a crafted file cannot OOM us
        ("iterations", 1, r"iterations=1 is outside the accepted range 2\.\.16"),
        ("iterations", 10**9, r"iterations=1000000000 is outside"),
        ("lanes", 0, r"lanes=0 is outside"),
        ("lanes", "4", r"lanes='4' is outside"),
    ],
)
def test_argon2id_cost_read_from_the_file_is_bounded(tmp_path: Path, key: SigningKey,
                                                     field: str, value: object, why: str) -> None:
    path = save_key(tmp_path, "k", key, "pw", kdf=FAST)
    doc = _doc(path)
    doc["kdf"][field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match=why):
        load_key(path, "pw")


def test_save_refuses_a_cost_below_the_floor(tmp_path: Path, key: SigningKey) -> None:
    with pytest.raises(KeystoreError, match="outside the accepted range"):
        save_key(tmp_path, "k", key, "pw", kdf=KdfParams(1, 1, 1024))
    with pytest.raises(KeystoreError, match="outside the accepted range"):
        save_key(tmp_path, "k", key, "pw", kdf=KdfParams(3, 4, KDF_CEILING.memory_kib * 2))
    # Callers written for version 1 that asked for a cheap scrypt get the floor, not less.
    path = save_key(tmp_path, "legacy-caller", key, "pw", 2**12)
    kdf = _doc(path)["kdf"]
    assert (kdf["iterations"], kdf["lanes"], kdf["memory_kib"]) == (2, 1, 19 * 1024)
    # ... and those that passed version 1's default get the new default.
    kdf = _doc(save_key(tmp_path, "old-default", key, "pw", 2**15))["kdf"]
    assert (kdf["iterations"], kdf["lanes"], kdf["memory_kib"]) == (3, 4, 65536)


@pytest.mark.parametrize(
    ("content", "why"),
    [("not json", "not a GridLedger keystore file"), ("[1, 2]", "not a JSON object"),
     ('{"kdf": {"name": "pbkdf2", "salt": "00"}, "cipher": {}, "alg": "a", "address": "b"}',
      "unsupported key derivation 'pbkdf2'")],
)
def test_files_that_are_not_keystores(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "x.key.json"
    path.write_text(content)
    with pytest.raises(KeystoreError, match=why):
        load_key(path, "pw")
    with pytest.raises(KeystoreError, match="no keystore file"):
        load_key(tmp_path / "missing.key.json", "pw")
    with pytest.raises(KeystoreError, match="is a folder"):
        load_key(tmp_path, "pw")


def test_list_keys_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="does not exist"):
        list_keys(tmp_path / "nope")
    assert list_keys(tmp_path) == []
