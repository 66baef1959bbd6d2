"""A privacy run makes a pseudonym a member and slot, each with its escrow and two ML-DSA keys
(~8 KB of objects; ~800 MB a day at 1,000 members). Once its epoch's pool has paid out, the
simulator's households retire them (issue 17: memory flat over days)."""

from __future__ import annotations

import os
from types import SimpleNamespace

from gridledger.crypto.sig import SigningKey
from gridledger.sim.features.privacy import Held, PseudonymIdentities

MEMBERS = 3


def test_retired_pseudonyms_leave_memory_and_are_found_as_before(tmp_path, monkeypatch) -> None:
    """An epoch's pseudonyms are retired once its pool has paid out: ``held`` and the
    per-slot index keep only live ones (and those in an opening), however many epochs
    pass; ``of``, ``owner`` and ``owner_of_cp`` answer for retired ones as before."""
    import tempfile

    from gridledger.ledger.modules.privacy.records import pseudo_cp
    from gridledger.privacy.ledger_io import OwnPseudonym

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    members = [SimpleNamespace(index=i, address=bytes([i]) * 32, cp=f"cp{i}", name=f"m{i}")
               for i in range(MEMBERS)]
    ids = PseudonymIdentities(members)  # type: ignore[arg-type]
    epochs: list[list[Held]] = []
    before: dict[tuple[int, int], tuple[bytes, bytes, str]] = {}
    for e in range(6):                                   # six "days" of 8 slots
        held = []
        for s in range(8 * e, 8 * e + 8):
            for m in members:
                own = OwnPseudonym(SigningKey("ml-dsa-44", os.urandom(32)), None)  # type: ignore[arg-type]
                h = Held(m, own, SigningKey("ml-dsa-44", os.urandom(32)), s, s,  # type: ignore[arg-type]
                         b"img" if s % 2 else None, None)
                ids.add(h)
                held.append(h)
                before[(m.index, s)] = (h.address, h.reading_key.public_key.raw, h.cp)
        epochs.append(held)
        if e >= 1:                                       # the epoch before has paid out
            kept = {epochs[e - 1][3].address}            # one in an opening
            assert len(ids.retire(epochs[e - 1], kept)) == len(epochs[e - 1]) - 1
        assert len(ids.held) <= 2 * 8 * MEMBERS + e      # two epochs live, not the run
        assert len(ids._slot) <= 2 * 8 * MEMBERS + e
    assert ids.count == 6 * 8 * MEMBERS
    for (i, s), (addr, rpk, cp) in before.items():
        h = ids.of(members[i], s)
        assert h is not None and (h.address, h.reading_key.public_key.raw, h.cp) == (addr, rpk, cp)
        assert h.image == (b"img" if s % 2 else None)
        assert ids.owner(addr) is members[i] and ids.owner_of_cp(cp) is members[i]
        assert ids.owner_of_cp(pseudo_cp(addr)) is members[i]
    assert ids.of(members[0], 999) is None and ids.owner(b"\x07" * 32) is None
    assert ids.owner_of_cp("ps:not-base64!") is None and ids.owner_of_cp("cp1") is members[1]


def test_a_kept_pseudonym_is_seeds_and_addresses_and_signs_as_issued() -> None:
    """The simulator keeps a pseudonym as ``Kept`` (issue 17: no escrow, no proof of
    possession, no public keys: ~0.5 KB instead of ~16 KB); the ``Held`` made from it
    names the same addresses without deriving a public key, and signs as the issued keys."""
    import pickle
    import sys

    from gridledger.crypto.sig import verify_signature
    from gridledger.privacy.ledger_io import OwnPseudonym
    from gridledger.sim.features.privacy import Kept

    m = SimpleNamespace(index=4, address=b"\x04" * 32, cp="cp4", name="m4")
    key, reading = SigningKey("ml-dsa-44", os.urandom(32)), SigningKey("ml-dsa-44", os.urandom(32))
    issued = Held(m, OwnPseudonym(key, None), reading, 7, 7, b"img", b"salt")  # type: ignore[arg-type]
    kept = Kept.of(issued)
    assert pickle.loads(pickle.dumps(kept)) == kept
    fields = [getattr(kept, f) for f in Kept.__slots__]
    assert sys.getsizeof(kept) + sum(sys.getsizeof(f) for f in fields) < 1024
    h = kept.held(m)  # type: ignore[arg-type]
    assert (h.address, h.cp, h.first_slot, h.image, h.salt) == \
        (issued.address, issued.cp, 7, b"img", b"salt")
    assert h.reading_key.address == reading.address and h.member is m
    for k in (h.own.key, h.reading_key):
        assert "public_key" not in vars(k)         # named from the record, nothing derived
    sig = h.own.key.sign(b"order", b"ctx")
    assert verify_signature("ml-dsa-44", key.public_key.raw, b"order", sig, b"ctx")
    ids = PseudonymIdentities([m])  # type: ignore[list-item]
    ids.add(kept)
    assert ids.live(kept.address) == h and ids.member(kept.address) is m
    assert ids.image_opening(m, 7) == (b"img", b"salt") and ids.ledger_cp(m, 7) == issued.cp  # type: ignore[arg-type]
    assert ids.retire([kept]) == [kept.address] and ids.live(kept.address) is None
    assert ids.of(m, 7) == h and ids.image_opening(m, 7) == (b"img", b"salt")  # type: ignore[arg-type]


def test_blob_map_keeps_objects_on_the_side_file(tmp_path, monkeypatch) -> None:
    """The trustees' escrows live on the run's side file (``BlobMap``): put in chunks, read
    one, discarded at retirement."""
    import tempfile

    from gridledger.sim.records import BlobMap

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    b: BlobMap[dict[str, int]] = BlobMap()
    assert b.get(b"x") is None
    b.discard([b"x"])
    b.put((i.to_bytes(4, "big"), {"i": i}) for i in range(2_500))   # three chunks
    assert b.get((1234).to_bytes(4, "big")) == {"i": 1234}
    b.discard(i.to_bytes(4, "big") for i in range(0, 2_500, 2))
    assert b.get((1234).to_bytes(4, "big")) is None and b.get((1235).to_bytes(4, "big")) == {"i": 1235}
    b.put([(b"x", {"i": -1})])
    assert b.get(b"x") == {"i": -1}


def test_a_key_with_a_known_address_needs_no_expansion() -> None:
    key = SigningKey("ml-dsa-65", os.urandom(32))
    known = SigningKey.known("ml-dsa-65", key.seed, key.address)
    assert known == key and known.address == key.address and "public_key" not in vars(known)
    assert known.public_key == key.public_key    # still derivable


def test_a_registered_entry_is_the_entry_without_escrow_payload_or_proof() -> None:
    """The batch keeps what its root and the registrations read of each entry
    (``_registered``): the same leaf, key and escrow digest, no ciphertexts, no proof of
    possession (the escrow is in the trustees' store)."""
    from gridledger.privacy.ledger_io import make_pseudonyms
    from gridledger.privacy.pseudonyms import TrusteeKeys, TrusteeSet
    from gridledger.privacy.pseudonyms.batch import entry_leaf
    from gridledger.sim.features.privacy import _registered

    tks = [TrusteeKeys.generate(f"t{i}") for i in range(3)]
    ts = TrusteeSet("c", 2, tuple(t.info() for t in tks))
    own = make_pseudonyms(SigningKey("ml-dsa-65", os.urandom(32)), ts, 3, [(5, 5), (6, 6)], "f1")
    for p in own:
        r = _registered(p.entry)
        assert entry_leaf("c", r) == entry_leaf("c", p.entry)
        assert r.request.escrow.digest() == p.escrow.digest()
        assert r.request.pseudonym_key == p.key.public_key
        assert (r.first_slot, r.last_slot, r.feeder) == (p.entry.first_slot, p.entry.last_slot, "f1")
        assert r.request.pop_signature == b"" and r.request.escrow.sealed_shares == ()
        assert r.request.escrow.record_ciphertext == b""
