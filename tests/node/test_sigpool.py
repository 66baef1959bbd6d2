"""The signature pool signs and maps on its processes what the main process did inline
(issues 17/19: the demo's clients' signing and the first epoch's issuance)."""

from __future__ import annotations

import pickle

import pytest

from gridledger.crypto.kem import KemKey, seal
from gridledger.crypto.sig import SigningKey
from gridledger.errors import CryptoError
from gridledger.node.sigpool import SigPool

SEEDS = [bytes([i]) * 32 for i in range(5)]


@pytest.mark.parametrize("workers", [1, 2])
def test_sign_many_signs_each_message_with_its_key_in_order(workers: int) -> None:
    pool = SigPool(workers=workers, min_sign_batch=4)
    try:
        items = [("ml-dsa-44" if i % 2 else "ml-dsa-65", SEEDS[i % 5], b"m%d" % i, b"ctx")
                 for i in range(23)]
        sigs = pool.sign_many(items)
        assert len(sigs) == len(items)
        for (alg, seed, msg, ctx), sig in zip(items, sigs, strict=True):
            pk = SigningKey(alg, seed).public_key
            assert pk.verify(msg, sig, ctx)
            assert not pk.verify(msg + b"x", sig, ctx)
        assert pool.sign_many(items[:2]) and pool.sign_many([]) == []  # inline below the batch
    finally:
        pool.close()


def test_sign_many_names_a_bad_seed() -> None:
    pool = SigPool(workers=2, min_sign_batch=1)
    try:
        with pytest.raises(CryptoError, match="32 bytes"):
            pool.sign_many([("ml-dsa-44", b"short", b"m", b"")] * 4)
    finally:
        pool.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_map_keeps_order(workers: int) -> None:
    pool = SigPool(workers=workers)
    try:
        assert pool.map(abs, [-3, 1, -2, 0]) == [3, 1, 2, 0]
        it = pool.imap(abs, [-3, 1, -2, 0])    # the same, one result at a time
        assert next(it) == 3 and list(it) == [1, 2, 0]
    finally:
        pool.close()


def test_private_keys_pickle_as_their_seeds_after_use() -> None:
    k = SigningKey.from_seed("ml-dsa-44", SEEDS[1])
    sig = k.sign(b"m")  # the PyCA key object is cached now (it does not pickle)
    back = pickle.loads(pickle.dumps(k))
    assert back == k and back.public_key.verify(b"m", sig)
    kem = KemKey(bytes(range(64)))
    sealed = seal(kem.public_key, b"share", b"aad")
    back_kem = pickle.loads(pickle.dumps(kem))
    assert back_kem == kem and back_kem.open(sealed, b"aad") == b"share"
