import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings, strategies as st

from gridledger.crypto.kem import KemKey, seal
from gridledger.crypto.keystore import list_keys, load_key, save_key
from gridledger.crypto.sig import PQ_SIG_ALGS, PublicKey, SigningKey, check_backend, verify_signature
from gridledger.errors import ClassicalKey, CryptoError, KeystoreError


def test_backend_supports_mldsa_and_mlkem():
    check_backend()


@pytest.mark.parametrize("alg", PQ_SIG_ALGS)
def test_sign_verify_each_level(alg):
    k = SigningKey.generate(alg)
    sig = k.sign(b"reading", b"gl/tx")
    assert k.public_key.verify(b"reading", sig, b"gl/tx")
    assert not k.public_key.verify(b"reading!", sig, b"gl/tx")
    # FIPS 204 context separates purposes: a tx signature is not a vote signature
    assert not k.public_key.verify(b"reading", sig, b"gl/vote")


def test_addresses_are_algorithm_tagged():
    seed = bytes(32)
    a = SigningKey.from_seed("ml-dsa-44", seed).address
    b = SigningKey.from_seed("ml-dsa-65", seed).address
    assert a != b and len(a) == 32


def test_classical_algorithms_are_rejected_by_name():
    ed = Ed25519PrivateKey.generate()
    pk = ed.public_key().public_bytes_raw()
    with pytest.raises(ClassicalKey):
        verify_signature("ed25519", pk, b"m", ed.sign(b"m"))
    with pytest.raises(ClassicalKey):
        PublicKey("ecdsa-p256", b"\x04" * 65)
    with pytest.raises(CryptoError):
        verify_signature("rot13", pk, b"m", b"s")


def test_garbage_signature_or_key_fails_cleanly():
    k = SigningKey.generate("ml-dsa-65")
    assert not verify_signature("ml-dsa-65", k.public_key.raw, b"m", b"\x00" * 3309)
    assert not verify_signature("ml-dsa-65", b"\x00" * 10, b"m", k.sign(b"m"))


@settings(max_examples=10, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=64))
def test_kem_seal_open_roundtrip(msg, aad):
    k = KemKey.generate()
    assert k.open(seal(k.public_key, msg, aad), aad) == msg


def test_kem_tamper_and_wrong_key_rejected():
    k, other = KemKey.generate(), KemKey.generate()
    sealed = seal(k.public_key, b"meter 42: 1234 Wh", b"slot-7")
    flipped = bytearray(sealed)
    flipped[-5] ^= 1
    with pytest.raises(CryptoError):
        k.open(bytes(flipped), b"slot-7")
    with pytest.raises(CryptoError):
        k.open(sealed, b"slot-8")
    with pytest.raises(CryptoError):
        other.open(sealed, b"slot-7")


def test_keystore_roundtrip_and_wrong_passphrase(tmp_path):
    k = SigningKey.generate("ml-dsa-87")
    path = save_key(tmp_path, "root", k, "correct horse", scrypt_n=2**12)
    assert load_key(path, "correct horse") == k
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        load_key(path, "battery staple")
    with pytest.raises(KeystoreError, match="already exists"):
        save_key(tmp_path, "root", k, "x", scrypt_n=2**12)
    assert [i.name for i in list_keys(tmp_path)] == ["root"]
    assert "ml-dsa-87" in path.read_text() and k.seed.hex() not in path.read_text()


def test_signing_keys_do_not_hold_their_expanded_key() -> None:
    # regression (issue 17): each SigningKey kept its PyCA key object (~30 KiB of native
    # memory); a privacy-mode day of 1,000 members holds 96,000 pseudonym keys (~3 GB)
    from gridledger.crypto import sig

    keys = [SigningKey.from_seed("ml-dsa-65", bytes([i]) * 32) for i in range(3)]
    sigs = [k.sign(b"m", b"gl/tx") for k in keys]
    assert all("_key" not in vars(k) for k in keys)  # only the seed (and public key) stay
    assert sig._load_private.memo.cap == sig.PRIVATE_KEYS_CACHED
    sig._load_private.cache_clear()  # expanded again from the seed: same key, same address
    assert all(k.public_key.verify(b"m", s, b"gl/tx") for k, s in zip(keys, sigs, strict=True))
    assert keys[0].sign(b"m2") and keys[0].address == SigningKey.from_seed(
        "ml-dsa-65", bytes([0]) * 32).address


def test_tally_counts_distinct_signatures_by_algorithm() -> None:
    from gridledger.crypto.sig import tally_verifications

    k44, k65 = SigningKey.generate("ml-dsa-44"), SigningKey.generate("ml-dsa-65")
    s44, s65 = k44.sign(b"m", b"ctx"), k65.sign(b"m", b"ctx")
    assert verify_signature("ml-dsa-44", k44.public_key.raw, b"m", s44, b"ctx")  # not counted
    with tally_verifications() as tally:
        for _ in range(3):   # the same signature checked again counts once
            assert verify_signature("ml-dsa-44", k44.public_key.raw, b"m", s44, b"ctx")
        assert verify_signature("ml-dsa-65", k65.public_key.raw, b"m", s65, b"ctx")
        with pytest.raises(RuntimeError), tally_verifications():
            pass
    assert tally.counts() == {"ml-dsa-44": 1, "ml-dsa-65": 1}
    with tally_verifications() as again:   # closed: a new tally starts empty
        pass
    assert again.counts() == {}
