"""Firmware registry invariants (run after every block by every node and test)."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.firmware import keeper
from gridledger.ledger.modules.firmware.types import IMAGE_HASH_LEN
from gridledger.ledger.state import State


def meter_index(state: State) -> None:
    """Invariant firmware-meter-index: every cp's firmware of record is indexed under its
    image exactly once, and the index holds nothing else (advisories find every meter); a
    sealed, unopened record (a salted commitment, no image) is not indexed at all.

    Inside a block only the cps whose record or index entry the block wrote are checked
    (the state before it held the invariant; under privacy mode every per-slot pseudonym's
    stand-in cp has a record, so the full scan after every block grew with the day)."""
    writes = state.block_writes_under((keeper.METER, keeper.ON))
    if writes is None:
        _meter_index_all(state)
        return
    old_image: dict[str, bytes | None] = {}   # touched cp -> its image before the block
    for key, old in writes.items():
        if key.startswith(keeper.METER):
            cp = key[len(keeper.METER):].decode()
            was = None if old is None else keeper.meter_from_raw(old)
            old_image[cp] = was.firmware if was is not None and was.indexed else None
        elif key.startswith(keeper.ON):
            cp = key[len(keeper.ON) + IMAGE_HASH_LEN:].decode()
            if cp not in old_image:   # record untouched: its image is the one before
                rec = keeper.meter_record(state, cp)
                old_image[cp] = rec.firmware if rec is not None and rec.indexed else None
            if state.get(key) is not None:
                rec = keeper.meter_record(state, cp)
                if rec is None or not rec.indexed or key != keeper.ON + rec.firmware + cp.encode():
                    raise InvariantViolation(f"firmware-meter-index: {cp!r} indexed under an "
                                             "image that is not its firmware of record")
    for cp in sorted(old_image):
        rec = keeper.meter_record(state, cp)
        if rec is not None and rec.indexed and \
                state.get(keeper.ON + rec.firmware + cp.encode()) is None:
            raise InvariantViolation(f"firmware-meter-index: {cp!r} not indexed under its image")
        before = old_image[cp]
        if (before is not None and (rec is None or not rec.indexed or rec.firmware != before)
                and state.get(keeper.ON + before + cp.encode()) is not None):
            raise InvariantViolation(f"firmware-meter-index: {cp!r} still indexed under its "
                                     "former image")


def _meter_index_all(state: State) -> None:
    records = [(cp, rec) for cp, rec in keeper.meter_records(state) if rec.indexed]
    indexed = state.keys_with_prefix(keeper.ON)
    if len(indexed) != len(records):
        raise InvariantViolation(f"firmware-meter-index: {len(indexed)} index entries for "
                                 f"{len(records)} meters")
    for cp, rec in records:
        if state.get(keeper.ON + rec.firmware + cp.encode()) is None:
            raise InvariantViolation(f"firmware-meter-index: {cp!r} not indexed under its image")


def releases_valid(state: State) -> None:
    """Invariant firmware-releases: every release has both indexes; an
    approved release was approved at genesis (height 0) or by the DSO and at least one
    validator; the pending ones are exactly the open list; every advisory in force is
    indexed under each version it names, and the open list holds exactly the pending ones."""
    open_now = keeper.open_items(state)
    pending = []
    for rid, rel in keeper.releases(state):
        m = rel.manifest
        if (state.get(keeper.IMAGE + m.image_sha3) != rid
                or keeper.release_of_version(state, m.vendor, m.model, m.version) != rid):
            raise InvariantViolation(f"firmware-releases: {m.model} {m.version} not indexed")
        if rel.status == "pending":
            pending.append(rid)
        elif rel.approved != 0 and not (rel.dso and rel.validators):
            raise InvariantViolation(f"firmware-releases: {m.model} {m.version} approved "
                                     "without the DSO and the validators")
    if sorted(pending) != list(open_now.releases):
        raise InvariantViolation("firmware-releases: open list differs from pending releases")
    waiting = []
    for adv in keeper.advisories(state):
        if adv.status == "pending":
            waiting.append(adv.id)
            continue
        for v in adv.versions:
            if adv.id not in keeper.advised_by(state, adv.vendor, adv.model, v):
                raise InvariantViolation(f"firmware-releases: advisory {adv.id} not indexed "
                                         f"under {adv.model} {v}")
    if sorted(waiting) != list(open_now.advisories):
        raise InvariantViolation("firmware-releases: open list differs from pending advisories")


INVARIANTS = (meter_index, releases_valid)
