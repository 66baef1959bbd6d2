"""``bucket_of`` remembers keys' buckets (issue 17, thirteenth session): the remembered
bucket is always the one SHA3 gives, under the bucket count in force, and the table stays
bounded."""

from __future__ import annotations

import hashlib
import os

import pytest

from gridledger.ledger import state as state_module
from gridledger.ledger.state import bucket_of


def _hashed(key: bytes, n: int) -> int:
    d = hashlib.sha3_256(key).digest()
    return ((d[0] << 8) | d[1]) % n


def test_a_remembered_bucket_is_the_hashed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from gridledger.memo import Memo

    monkeypatch.setattr(state_module, "_BUCKET_OF", Memo(100))
    keys = [os.urandom(1 + i % 40) for i in range(350)] + [b"", b"bank/bal/x"]
    for _ in range(2):   # asked again: from the table (or hashed again once dropped)
        assert [bucket_of(k) for k in keys] == [_hashed(k, 4096) for k in keys]
        assert len(state_module._BUCKET_OF) <= 200  # each generation within 100
    small = [os.urandom(8) for _ in range(20)]
    first = [bucket_of(k) for k in small]
    assert all(k in state_module._BUCKET_OF for k in small)
    state_module._BUCKET_OF.age()
    state_module._BUCKET_OF.age()          # two block-time generations unused: dropped
    assert not any(k in state_module._BUCKET_OF for k in small)
    assert [bucket_of(k) for k in small] == first
    # tests lower the bucket count: a key remembered under 4,096 buckets is hashed again
    key = keys[-1]
    bucket_of(key)
    monkeypatch.setattr(state_module, "N_BUCKETS", 64)
    assert bucket_of(key) == _hashed(key, 64)
    monkeypatch.setattr(state_module, "N_BUCKETS", 4096)
    assert bucket_of(key) == _hashed(key, 4096)


def test_states_built_with_and_without_the_table_have_one_root() -> None:
    from gridledger.ledger.state import State

    data = {os.urandom(24): os.urandom(40) for _ in range(300)}
    warm = State(data)
    warm.set(b"k", b"v")
    state_module._BUCKET_OF.clear()
    cold = State(data)
    cold.set(b"k", b"v")
    assert warm.root() == cold.root()
