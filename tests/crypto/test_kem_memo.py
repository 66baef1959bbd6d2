"""``crypto.kem.seal`` parses each recipient's public key once (issue 17, fifteenth session):
a run seals to a few keys (the trustees', the DSO's) thousands of times, and parsing an
ML-KEM-768 key costs about what the encapsulation does. What is sealed is unchanged."""

from __future__ import annotations

import pytest

from gridledger.crypto import kem
from gridledger.errors import CryptoError
from gridledger.memo import clear_all


def test_seal_parses_a_recipient_key_once_and_each_opens_only_for_its_key():
    a, b = kem.KemKey(bytes(range(64))), kem.KemKey(bytes(range(1, 65)))
    clear_all()
    assert kem._public_key(a.public_key) is kem._public_key(a.public_key)
    sealed = [(k, kem.seal(k.public_key, b"share %d" % i, b"aad"))
              for i, k in enumerate((a, b, a, b))]
    for i, (k, ct) in enumerate(sealed):
        assert k.open(ct, b"aad") == b"share %d" % i
        other = b if k is a else a
        with pytest.raises(CryptoError):
            other.open(ct, b"aad")
    clear_all()  # the memo removed: the same results
    assert a.open(kem.seal(a.public_key, b"x"), b"") == b"x"
    with pytest.raises(CryptoError, match="1184 bytes"):
        kem.seal(a.public_key[:-1], b"x")
