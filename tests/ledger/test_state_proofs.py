import dataclasses

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
    if proof.bucket_path:
        bad = [bytes(32)] + proof.bucket_path[1:]
        assert not verify_membership(root, dataclasses.replace(proof, bucket_path=bad))


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
