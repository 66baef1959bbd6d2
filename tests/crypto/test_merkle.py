from hypothesis import given, settings, strategies as st

from gridledger.crypto.merkle import (
    EMPTY_ROOT,
    FlatBucket,
    IncrementalRoot,
    bucket_hash,
    hash_leaf,
    hash_node,
    inclusion_proof,
    inclusion_proofs,
    merkle_root,
    root_of_hashes,
    verify_inclusion,
)


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70), st.data())
def test_every_leaf_proves_and_altered_proofs_fail(leaves, data):
    hashes = [hash_leaf(x) for x in leaves]
    root = root_of_hashes(hashes)
    assert root == merkle_root(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(hashes, i)
    assert verify_inclusion(root, hashes[i], i, len(leaves), proof)
    assert not verify_inclusion(root, hash_leaf(leaves[i] + b"x"), i, len(leaves), proof)
    if proof:
        bad = list(proof)
        bad[0] = bytes(32)
        assert not verify_inclusion(root, hashes[i], i, len(leaves), bad)
    if len(leaves) > 1:
        j = (i + 1) % len(leaves)
        assert hashes[j] == hashes[i] or not verify_inclusion(root, hashes[i], j, len(leaves), proof)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70))
def test_all_proofs_at_once_equal_one_by_one(hashes):
    assert inclusion_proofs(hashes) == [inclusion_proof(hashes, i) for i in range(len(hashes))]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 40),
       edits=st.lists(st.lists(st.tuples(st.integers(0, 39), st.binary(min_size=32, max_size=32)),
                               max_size=6), max_size=8),
       resize=st.integers(0, 40))
def test_incremental_root_is_root_of_hashes_after_every_edit(size, edits, resize) -> None:
    """Issue 17: the state's top tree rehashes only changed paths; the root must be exactly
    root_of_hashes' for every list, after any edits and a change of length."""
    leaves = [bytes([i]) * 32 for i in range(size)]
    inc = IncrementalRoot()
    assert inc.root(leaves) == root_of_hashes(leaves)
    for batch in edits:
        for i, h in batch:
            if i < len(leaves):
                leaves[i] = h
        assert inc.root(leaves) == root_of_hashes(leaves)
    leaves = (leaves + [b"\x07" * 32] * resize)[:resize]
    assert inc.root(leaves) == root_of_hashes(leaves)
    # told which positions changed (the state's top tree): the same roots
    told = IncrementalRoot()
    leaves = [bytes([i]) * 32 for i in range(size)]
    assert told.root(leaves, []) == root_of_hashes(leaves)
    for batch in edits:
        moved = []
        for i, h in batch:
            if i < len(leaves):
                leaves[i] = h
                moved.append(i)
        assert told.root(leaves, moved) == root_of_hashes(leaves)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.binary(max_size=2), st.binary(min_size=32, max_size=32), max_size=60),
       st.lists(st.lists(st.tuples(st.binary(max_size=2),
                                   st.one_of(st.none(), st.binary(min_size=32, max_size=32))),
                         max_size=12), max_size=8))
def test_flat_bucket_root_is_bucket_hash_after_every_batch(start, batches) -> None:
    """The state's buckets keep their sorted keys in place (a bisection per changed key):
    the root must be ``bucket_hash`` over the sorted leaves after any batch of writes,
    insertions and deletions, emptying included; a copy goes on independently."""
    entries = dict(start)
    tree = FlatBucket()
    assert tree.root(entries, entries) == bucket_hash([entries[k] for k in sorted(entries)])
    for batch in batches:
        before = (tree.copy(), dict(entries))
        for k, h in batch:
            if h is None:
                entries.pop(k, None)
            else:
                entries[k] = h
        want = bucket_hash([entries[k] for k in sorted(entries)])
        assert tree.root(entries, {k for k, _ in batch}) == want == tree.root_hash
        assert tree.keys(entries) == sorted(entries)
        old, old_entries = before
        assert old.root(old_entries, ()) == bucket_hash([old_entries[k]
                                                          for k in sorted(old_entries)])


def test_bucket_hash_is_domain_separated() -> None:
    """A flat bucket's hash is neither a leaf nor an interior node of the same bytes."""
    a, b = hash_leaf(b"a"), hash_leaf(b"b")
    assert bucket_hash([]) == EMPTY_ROOT
    assert bucket_hash([a, b]) != hash_node(a, b)
    assert bucket_hash([a]) != a and bucket_hash([a, b]) != bucket_hash([b, a])


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40),
       st.lists(st.tuples(st.integers(0, 39), st.binary(min_size=32, max_size=32)),
                max_size=10))
def test_incremental_root_paths_are_inclusion_proofs(leaves, changes) -> None:
    """``IncrementalRoot.path`` reads a leaf's path from the kept levels: the same as
    ``inclusion_proof`` over the leaves, after changes too."""
    tree = IncrementalRoot()
    tree.root(leaves)
    for i, h in changes:
        if i < len(leaves):
            leaves[i] = h
            tree.root(leaves, [i])
    assert tree.root(leaves, []) == root_of_hashes(leaves)
    for i in range(len(leaves)):
        assert tree.path(i) == inclusion_proof(leaves, i)
