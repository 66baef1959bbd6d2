from hypothesis import given, settings, strategies as st

from gridledger.crypto.merkle import (
    IncrementalRoot,
    SortedLeaves,
    hash_leaf,
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
def test_sorted_leaves_root_is_root_of_hashes_after_every_batch(start, batches) -> None:
    """The state's buckets update their trees in place (values rehash their paths, insertions
    and deletions rehash from their position on): the root must be root_of_hashes' over the
    sorted leaves after any batch of writes, insertions and deletions, emptying included."""
    entries = dict(start)
    tree = SortedLeaves()
    assert tree.root(entries, entries) == root_of_hashes([entries[k] for k in sorted(entries)])
    for batch in batches:
        for k, h in batch:
            if h is None:
                entries.pop(k, None)
            else:
                entries[k] = h
        want = root_of_hashes([entries[k] for k in sorted(entries)])
        assert tree.root(entries, {k for k, _ in batch}) == want == tree.root_hash
