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
