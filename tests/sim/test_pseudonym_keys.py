"""A privacy run makes two ML-DSA keys a member and slot (the pseudonym's, its meter's reading
key); OpenSSL's parsed form of each is ~10-20 KB of native memory, ~2 GB a day at 1,000
members. Once a pseudonym's slots are past, its parsed keys are dropped (issue 17: memory flat
over days); a key that must sign again (a dispute, a claim) is re-derived from its seed and
signs as before."""

from __future__ import annotations

import os
from types import SimpleNamespace

from gridledger.crypto.sig import SigningKey, verify_signature
from gridledger.sim.features.privacy import Held, PseudonymIdentities

MEMBERS = 3
SLOTS = 40


def _parsed(k: SigningKey) -> bool:
    return "_key" in k.__dict__


def test_a_released_key_signs_the_same_under_the_same_public_key() -> None:
    k = SigningKey("ml-dsa-44", os.urandom(32))
    pk = k.public_key.raw
    assert _parsed(k)
    k.release()
    assert not _parsed(k) and k.public_key.raw == pk      # the address stays known
    sig = k.sign(b"a dispute, a day later", b"ctx")
    assert verify_signature("ml-dsa-44", pk, b"a dispute, a day later", sig, b"ctx")


def test_pseudonyms_keys_are_released_once_their_slots_are_past() -> None:
    members = [SimpleNamespace(index=i, address=bytes([i]) * 32, cp=f"cp{i}")
               for i in range(MEMBERS)]
    ids = PseudonymIdentities(members)  # type: ignore[arg-type]
    made: dict[int, list[Held]] = {}
    for s in range(SLOTS):
        for m in members:
            own = SimpleNamespace(key=SigningKey("ml-dsa-44", os.urandom(32)),
                                  address=os.urandom(32))
            rk = SigningKey("ml-dsa-44", os.urandom(32))
            own.key.sign(b"order")
            rk.sign(b"reading")
            h = Held(m, own, rk, s, s)  # type: ignore[arg-type]
            ids.add(h)
            made.setdefault(s, []).append(h)
        ids.release_keys(s - 4)          # as after block C of slot s (KEYS_KEPT_SLOTS = 4)
        parsed = [h for hs in made.values() for h in hs if _parsed(h.own.key) or _parsed(h.reading_key)]
        # only the last few slots' keys stay parsed, however long the run
        assert len(parsed) <= 5 * MEMBERS, (s, len(parsed))
        assert len(ids._in_use) <= 5
    assert all(not _parsed(h.reading_key) for h in made[0])
    assert ids.of(members[1], 3) is made[3][1]  # the pseudonyms themselves stay known


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
            assert ids.retire(epochs[e - 1], kept) == len(epochs[e - 1]) - 1
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
