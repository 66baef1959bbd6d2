import dataclasses

import pytest

from hypothesis import given, settings, strategies as st

from gridledger.ledger.state import MembershipProof, State, verify_membership

keys = st.binary(min_size=1, max_size=24)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(keys, st.binary(max_size=40), min_size=1, max_size=120), st.data())
def test_membership_proofs_verify_and_fail_when_altered(data_map, data):
    s = State(data_map)
    root = s.root()
    key = data.draw(st.sampled_from(sorted(data_map)))
    proof = s.prove(key)
    assert verify_membership(root, proof)
    assert verify_membership(root, MembershipProof.from_json(proof.to_json()))
    assert not verify_membership(root, dataclasses.replace(proof, value=proof.value + b"!"))
    assert not verify_membership(root, dataclasses.replace(proof, key=proof.key + b"!"))
    assert not verify_membership(bytes(32), proof)
    bad = [bytes(32)] + proof.bucket_leaves[1:]
    assert not verify_membership(root, dataclasses.replace(proof, bucket_leaves=bad))
    extra = proof.bucket_leaves + [bytes(32)]
    assert not verify_membership(root, dataclasses.replace(
        proof, bucket_leaves=extra, bucket_size=proof.bucket_size + 1))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(keys, st.one_of(st.none(), st.binary(max_size=8))), max_size=60))
def test_root_depends_on_content_not_history(ops):
    a = State()
    for k, v in ops:
        a.set(k, v) if v is not None else a.delete(k)
    b = State(dict(a.snapshot_items()))
    assert a.root() == b.root()


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(keys, st.binary(max_size=8), max_size=30),
       st.lists(st.tuples(keys, st.one_of(st.none(), st.binary(max_size=8))), max_size=30))
def test_rollback_restores_exact_root(initial, ops):
    s = State(initial)
    root = s.root()
    s.begin()
    for k, v in ops:
        s.set(k, v) if v is not None else s.delete(k)
    s.begin()
    s.set(b"nested", b"1")
    s.commit()
    s.rollback()
    assert s.root() == root and dict(s.snapshot_items()) == initial


# -- issue 21.7: index and bucket size are authenticated; absence proofs ------------------

from gridledger.crypto.merkle import bucket_hash  # noqa: E402
from gridledger.ledger.state import (  # noqa: E402
    N_BUCKETS,
    AbsenceProof,
    bucket_of,
    verify_absence,
)


def _same_bucket_keys(n: int, bucket: int | None = None) -> list[bytes]:
    """``n`` distinct keys that fall into one bucket."""
    out: list[bytes] = []
    i = 0
    while len(out) < n:
        k = b"k%d" % i
        if bucket is None:
            bucket = bucket_of(k)
        if bucket_of(k) == bucket:
            out.append(k)
        i += 1
    return sorted(out)


def test_membership_proof_index_and_size_are_authenticated():
    keys = _same_bucket_keys(3)
    s = State({k: b"v" for k in keys})
    root = s.root()
    last = s.prove(keys[2])
    assert (last.index, last.bucket_size) == (2, 3) and verify_membership(root, last)
    # the flat bucket: its leaves in key order, hashed once (issue 17, eleventh session)
    leaves = [s._buckets[last.bucket][k] for k in keys]
    assert last.bucket_leaves == leaves and s._bucket_roots[last.bucket] == bucket_hash(leaves)
    for index, size in [(1, 2), (2, 4), (0, 3), (3, 3)]:
        assert not verify_membership(root, dataclasses.replace(last, index=index, bucket_size=size))
    # a shorter bucket (the last entry dropped) or leaves in another order do not verify
    first = s.prove(keys[0])
    assert not verify_membership(root, dataclasses.replace(first, bucket_leaves=leaves[:2],
                                                           bucket_size=2))
    assert not verify_membership(root, dataclasses.replace(
        first, bucket_leaves=[leaves[1], leaves[0], leaves[2]], index=1))
    assert not verify_membership(root, dataclasses.replace(first, bucket_leaves=leaves[:2]))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, st.binary(max_size=16), max_size=80), keys, st.data())
def test_absence_proofs_verify_for_absent_keys_and_never_for_present_ones(data_map, probe, data):
    s = State(data_map)
    root = s.root()
    if probe in data_map:
        with pytest.raises(KeyError):
            s.prove_absence(probe)
        # a prover that hides the entry (proves against the state without it) is caught
        without = State({k: v for k, v in data_map.items() if k != probe})
        assert not verify_absence(root, without.prove_absence(probe))
        return
    proof = s.prove_absence(probe)
    assert verify_absence(root, proof)
    assert verify_absence(root, AbsenceProof.from_json(proof.to_json()))
    assert not verify_absence(bytes(32), proof)
    with_it = State({**data_map, probe: data.draw(st.binary(max_size=4))})
    assert not verify_absence(with_it.root(), proof)


def test_absence_proof_cannot_skip_entries_or_claim_a_shorter_bucket():
    keys = _same_bucket_keys(5)
    present, absent_after = keys[:4], keys[4]  # absent_after sorts after every present key
    s = State({k: b"v" for k in present})
    root = s.root()
    honest = s.prove_absence(absent_after)
    assert honest.left is not None and honest.left.index == 3 and honest.right is None
    assert verify_absence(root, honest)
    # claim the bucket ends at entry 2 (so "k > last" would hide entry 3)
    third = s.prove(present[2])
    from gridledger.ledger.state import Neighbour

    fake_left = Neighbour(third.key, third.value, 2)
    for size in (3, 4):
        assert not verify_absence(root, dataclasses.replace(honest, left=fake_left,
                                                             bucket_size=size))
        assert not verify_absence(root, dataclasses.replace(
            honest, left=fake_left, bucket_size=size, bucket_leaves=honest.bucket_leaves[:size]))
    # claim two non-adjacent entries are neighbours around a present key
    first, third_p = s.prove(present[0]), s.prove(present[2])
    hide = present[1]
    forged = AbsenceProof(hide, bucket_of(hide), 4,
                          Neighbour(first.key, first.value, 0),
                          Neighbour(third_p.key, third_p.value, 1),
                          honest.bucket_leaves, honest.top_path)
    assert not verify_absence(root, forged)
    assert not verify_absence(root, dataclasses.replace(
        forged, right=Neighbour(third_p.key, third_p.value, 2)))
    # the bucket's leaves without the hidden entry: a bucket of 3 the top tree never had
    without = [h for i, h in enumerate(honest.bucket_leaves) if i != 1]
    assert not verify_absence(root, dataclasses.replace(
        forged, bucket_size=3, bucket_leaves=without))


def test_empty_bucket_absence():
    s = State({b"a": b"1"})
    root = s.root()
    probe = next(b"x%d" % i for i in range(10_000) if bucket_of(b"x%d" % i) != bucket_of(b"a"))
    proof = s.prove_absence(probe)
    assert proof.bucket_size == 0 and proof.left is None and proof.right is None
    assert verify_absence(root, proof) and 0 <= proof.bucket < N_BUCKETS
