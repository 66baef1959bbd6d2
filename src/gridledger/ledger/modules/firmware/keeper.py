"""The only code that touches ``fw/`` keys; what other modules call (through their own
``expected.py`` protocols) to check readings and traders against the registry.

Quarantine is not stored: it is computed from the cp's firmware of record, the release
its image belongs to and the advisories in force (``reason_of``). So an approval or an
advisory changes every affected meter at once, and no flag can go stale. Events mark each
transition (``meter_quarantined`` / ``meter_released``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import cbor2

from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.firmware.errors import ImageOpening, MeterQuarantined
from gridledger.ledger.modules.firmware.types import (
    Advisory,
    Config,
    Manifest,
    MeterFirmware,
    OpenItems,
    Reason,
    Release,
    Vendor,
    Vouch,
    image_commitment,
)
from gridledger.ledger.record import read
from gridledger.ledger.state import State
from gridledger.memo import memoize

CFG = b"fw/cfg"
VENDOR = b"fw/v/"          # + name -> Vendor
RELEASE = b"fw/r/"         # + release id -> Release
IMAGE = b"fw/img/"         # + image hash -> release id (an image belongs to one release)
VERSION = b"fw/ver/"       # + vendor/model/version -> release id
ADVISORY = b"fw/a/"        # + advisory id -> Advisory
ADVISED = b"fw/av/"        # + vendor/model/version -> ids of advisories in force, ascending
METER = b"fw/m/"           # + cp -> MeterFirmware
ON = b"fw/on/"             # + image hash (32) + cp -> marker: cps whose firmware is the image
OPEN = b"fw/open"          # OpenItems waiting for the quorum (absent when none)
VOUCHED = b"fw/vouch"      # Vouch: the DSO's latest review of the sealed records
LAST_ADVISORY = b"fw/lastadv"  # height at which the latest advisory came into force
_MARK = b"\x01"


def _triple(vendor: str, model: str, version: str) -> bytes:
    # names match [A-Za-z0-9._-] (types._NAME), so "/" cannot occur inside one
    return f"{vendor}/{model}/{version}".encode()


@memoize(4096)  # aged by block time (gridledger.memo)
def _release(raw: bytes) -> Release:
    return Release.from_obj(cbor2.loads(raw))


@memoize(16384)  # aged by block time (gridledger.memo)
def _meter(raw: bytes) -> MeterFirmware:
    return MeterFirmware.from_obj(cbor2.loads(raw))


# -- configuration and vendors --------------------------------------------------------------
def enforced(state: State) -> bool:
    """Whether the chain has a firmware policy (genesis had a ``firmware`` section)."""
    return state.get(CFG) is not None


def config(state: State) -> Config | None:
    return read(state, CFG, Config)


def put_config(state: State, cfg: Config) -> None:
    state.set_obj(CFG, cfg.to_obj())


def vendor(state: State, name: str) -> Vendor | None:
    return read(state, VENDOR + name.encode(), Vendor)


def put_vendor(state: State, v: Vendor) -> None:
    state.set_obj(VENDOR + v.name.encode(), v.to_obj())


def vendors(state: State) -> list[Vendor]:
    return [Vendor.from_obj(obj) for _, obj in state.items_with_prefix(VENDOR)]


# -- releases ------------------------------------------------------------------------------
def release(state: State, rid: bytes) -> Release | None:
    raw = state.get(RELEASE + rid)
    return None if raw is None else _release(raw)


def put_release(state: State, rec: Release, *, new: bool = False) -> None:
    """Store ``rec``; a ``new`` release is also indexed by image and by version.

    The vendor's signature is not kept in state: ML-DSA signing is hedged (two signatures
    of one manifest differ), so state would depend on which copy arrived; the signature is
    in the release transaction (or the genesis document) for anyone to re-verify."""
    m = rec.manifest
    rid = m.release_id()
    state.set_obj(RELEASE + rid, rec.to_obj())
    if new:
        state.set(IMAGE + m.image_sha3, rid)
        state.set(VERSION + _triple(m.vendor, m.model, m.version), rid)


def release_of_image(state: State, image: bytes) -> Release | None:
    rid = state.get(IMAGE + image)
    return None if rid is None else release(state, rid)


def release_of_version(state: State, vendor_name: str, model: str, version: str) -> bytes | None:
    """The id of the release of ``vendor_name`` ``model`` ``version``, if published."""
    return state.get(VERSION + _triple(vendor_name, model, version))


def releases(state: State) -> list[tuple[bytes, Release]]:
    """Every release, by id."""
    return [(k[len(RELEASE):], _release(state.get(k) or b""))
            for k in state.keys_with_prefix(RELEASE)]


# -- advisories ---------------------------------------------------------------------------
def advisory(state: State, aid: str) -> Advisory | None:
    return read(state, ADVISORY + aid.encode(), Advisory)


def put_advisory(state: State, adv: Advisory) -> None:
    state.set_obj(ADVISORY + adv.id.encode(), adv.to_obj())


def advisories(state: State) -> list[Advisory]:
    return [Advisory.from_obj(obj) for _, obj in state.items_with_prefix(ADVISORY)]


def advised_by(state: State, vendor_name: str, model: str, version: str) -> list[str]:
    """Ids of the advisories in force against this version, ascending."""
    return list(state.get_obj(ADVISED + _triple(vendor_name, model, version), []))


def last_advisory(state: State) -> int | None:
    """The height at which the latest advisory came into force (None: none yet)."""
    raw = state.get_obj(LAST_ADVISORY)
    return None if raw is None else int(raw)


def put_last_advisory(state: State, height: int) -> None:
    state.set_obj(LAST_ADVISORY, height)


def mark_advised(state: State, adv: Advisory) -> None:
    """Index an advisory that came into force under every version it names."""
    for v in adv.versions:
        key = ADVISED + _triple(adv.vendor, adv.model, v)
        state.set_obj(key, sorted({*state.get_obj(key, []), adv.id}))


# -- open items ---------------------------------------------------------------------------
def open_items(state: State) -> OpenItems:
    obj = read(state, OPEN, OpenItems)
    return OpenItems((), ()) if obj is None else obj


def set_open_items(state: State, items: OpenItems) -> None:
    if items.releases or items.advisories:
        state.set_obj(OPEN, OpenItems(tuple(sorted(set(items.releases))),
                                      tuple(sorted(set(items.advisories)))).to_obj())
    else:
        state.delete(OPEN)


# -- meters -------------------------------------------------------------------------------
def meter_from_raw(raw: bytes) -> MeterFirmware:
    """A stored ``fw/m/<cp>`` value (as ``State.block_writes`` returns it) decoded."""
    return _meter(raw)


def meter_record(state: State, cp: str) -> MeterFirmware | None:
    raw = state.get(METER + cp.encode())
    return None if raw is None else _meter(raw)


def put_meter_record(state: State, cp: str, rec: MeterFirmware) -> None:
    """Store the cp's firmware of record and keep the image -> cps index in step (a sealed,
    unopened record is not indexed: ``MeterFirmware.indexed``)."""
    old = meter_record(state, cp)
    if old is not None and old.indexed and (old.firmware != rec.firmware or not rec.indexed):
        state.delete(ON + old.firmware + cp.encode())
    state.set_obj(METER + cp.encode(), rec.to_obj())
    if rec.indexed:
        state.set(ON + rec.firmware + cp.encode(), _MARK)


def forget_meter(state: State, cp: str) -> None:
    """Drop the cp's firmware of record and its index entry (a retired pseudonym's stand-in
    cp: no reading can name it again)."""
    old = meter_record(state, cp)
    if old is not None:
        if old.indexed:
            state.delete(ON + old.firmware + cp.encode())
        state.delete(METER + cp.encode())


def meter_records(state: State) -> list[tuple[str, MeterFirmware]]:
    """Every cp with a firmware of record, in cp byte order."""
    return [(k[len(METER):].decode(), _meter(state.get(k) or b""))
            for k in state.keys_with_prefix(METER)]


def cps_on(state: State, image: bytes) -> list[str]:
    """The cps whose firmware of record is ``image``, in byte order."""
    prefix = ON + image
    return [k[len(prefix):].decode() for k in state.keys_with_prefix(prefix)]


# -- quarantine ---------------------------------------------------------------------------
def image_problem(state: State, image: bytes) -> Reason | None:
    """Why a meter attesting ``image`` would be quarantined (None: an approved release
    that no advisory in force names)."""
    rel = release_of_image(state, image)
    if rel is None:
        return "unknown-firmware"
    if rel.status != "approved":
        return "unapproved-firmware"
    m = rel.manifest
    if advised_by(state, m.vendor, m.model, m.version):
        return "advised-firmware"
    return None


def reason_of(state: State, rec: MeterFirmware) -> Reason | None:
    """Why the meter with this record is quarantined, or None. A sealed record (the DSO
    attested its committed image as approved) is quarantined only by a mismatch, until it
    is opened (``open_image``)."""
    if rec.mismatch is not None:
        return "firmware-mismatch"
    if rec.sealed:
        return None
    return image_problem(state, rec.firmware)


def quarantine_reason(state: State, cp: str) -> Reason | None:
    """Why ``cp``'s meter is quarantined; None if it is not (or the chain has no firmware
    policy, or the meter never reported)."""
    if not enforced(state):
        return None
    rec = meter_record(state, cp)
    return None if rec is None else reason_of(state, rec)


def quarantined(state: State, cp: str) -> bool:
    """Whether ``cp``'s meter is quarantined."""
    return quarantine_reason(state, cp) is not None


def vouch(state: State) -> Vouch | None:
    """The DSO's latest vouch for the sealed records (None: none yet)."""
    return read(state, VOUCHED, Vouch)


def put_vouch(state: State, v: Vouch) -> None:
    state.set_obj(VOUCHED, v.to_obj())


def unvouched(state: State, rec: MeterFirmware) -> bool:
    """Whether ``rec`` is a sealed record (privacy mode) no DSO vouch covers: one made in a
    later block than the record's registration and than the latest advisory's coming into
    force, through at least the record's first slot.

    Why: the ledger cannot see a sealed image, so an advisory, or an image the DSO attested
    without opening, cannot reach the record by itself; the DSO holds each meter's image
    and salt. Rather than trust the DSO to open every affected pseudonym in time (a missed
    or late opening lets the pseudonym trade), a sealed record takes no market exposure
    until the DSO's signed vouch covers it: a DSO that is late holds trading up, and one
    that skips an opening has signed a false statement. The vouch names a slot number only.
    """
    if not rec.sealed:
        return False
    v = vouch(state)
    if v is None or v.height <= rec.since:
        return True
    last = last_advisory(state)
    if last is not None and v.height <= last:
        return True
    return rec.slot is not None and v.through_slot < rec.slot


def check_trading(state: State, cp: str) -> None:
    """Raise ``MeterQuarantined`` (rule ``meter-quarantined``) if ``cp``'s meter is
    quarantined: its holder takes no new market exposure until the meter is patched."""
    why = quarantine_reason(state, cp)
    if why is not None:
        raise MeterQuarantined(f"the meter of {cp!r} is quarantined ({why}) until it is "
                               "patched to an approved release")


def check_orders(state: State, cp: str) -> None:
    """``check_trading`` for market orders, which a slot's pseudonym places one slot after
    the DSO's vouch: also refused while ``cp``'s record is sealed and no DSO vouch covers it
    (``unvouched``). Flexibility offers (made three slots ahead) call ``check_trading``."""
    check_trading(state, cp)
    rec = meter_record(state, cp) if enforced(state) else None
    if rec is not None and unvouched(state, rec):
        raise MeterQuarantined(f"the meter of {cp!r} has a sealed firmware image no DSO "
                               "vouch covers yet (firmware/vouch after its registration and "
                               "the latest advisory)")


def firmware_status(state: State, firmware: bytes) -> Reason | None:
    """Why a meter attesting ``firmware`` would be quarantined (None: fine, or no policy)."""
    return image_problem(state, firmware) if enforced(state) else None


def quarantine_event(cp: str, rec: MeterFirmware, reason: Reason) -> dict[str, Any]:
    return {"type": "meter_quarantined", "cp": cp, "meter": rec.meter, "reason": reason,
            "firmware": rec.mismatch if rec.mismatch is not None else rec.firmware}


def release_event(cp: str, rec: MeterFirmware, was: Reason) -> dict[str, Any]:
    return {"type": "meter_released", "cp": cp, "meter": rec.meter, "firmware": rec.firmware,
            "was": was}


def reasons(state: State, cps: Iterable[str]) -> dict[str, Reason | None]:
    """The quarantine reason of each cp (for ``transitions`` after a change)."""
    out: dict[str, Reason | None] = {}
    for cp in cps:
        rec = meter_record(state, cp)
        out[cp] = None if rec is None else reason_of(state, rec)
    return out


def transitions(state: State, before: dict[str, Reason | None]) -> list[dict[str, Any]]:
    """``meter_quarantined`` / ``meter_released`` events for the cps of ``before`` whose
    reason changed since (in cp byte order)."""
    out = []
    for cp in sorted(before, key=str.encode):
        rec = meter_record(state, cp)
        now = None if rec is None else reason_of(state, rec)
        was = before[cp]
        if rec is None or now == was:
            continue
        if now is not None:
            out.append(quarantine_event(cp, rec, now))
        elif was is not None:
            out.append(release_event(cp, rec, was))
    return out


def check_reading(state: State, ctx: TxContext, cp: str, meter: bytes,
                  firmware: bytes, *, sealed: bool = False,
                  slot: int | None = None) -> Reason | None:
    """Check a reading's attested firmware against the registry; returns the quarantine
    reason the reading is taken under (None: the meter is fine).

    Call it from every reading handler before the reading is stored. The first reading of
    a meter makes its hash the firmware of record (a new meter at the cp starts afresh);
    a later reading with another hash is a ``firmware-mismatch`` until a patch. Emits
    ``meter_quarantined`` into ``ctx`` when the cp enters quarantine (or its reason
    changes). Does nothing on a chain without a firmware policy.

    ``sealed`` (a pseudonym's registration, privacy mode): ``firmware`` is the salted
    commitment the DSO attested, and a new record keeps it sealed, with ``slot`` (the
    pseudonym's first slot: the DSO's vouch must reach it, ``unvouched``). Readings are compared
    with what the record's meter attests (``MeterFirmware.attested``): the image, or the
    commitment to it.
    """
    if not enforced(state):
        return None
    rec = meter_record(state, cp)
    before = None if rec is None else reason_of(state, rec)
    if rec is None or rec.meter != meter:
        rec = MeterFirmware(meter, firmware, ctx.block.height, sealed=True if sealed else None,
                            slot=slot if sealed else None)
        put_meter_record(state, cp, rec)
    elif firmware not in (rec.attested, rec.mismatch):
        rec = dataclasses.replace(rec, mismatch=firmware)
        put_meter_record(state, cp, rec)
    now = reason_of(state, rec)
    if now is not None and now != before:
        ctx.events.append(quarantine_event(cp, rec, now))
    return now


def open_image(state: State, ctx: TxContext, cp: str, image: bytes, salt: bytes, *,
               announce: bool = True) -> MeterFirmware:
    """Open ``cp``'s sealed firmware of record: ``image`` and ``salt`` must hash to its
    commitment (rule ``image-opening`` otherwise, state untouched). The record then holds
    the image (indexed under it, so advisories reach it like any meter's) and the salt
    (later readings still attest the commitment). Emits ``image_opened`` and, if the image
    is advised, unknown or unapproved, ``meter_quarantined`` (not when ``announce`` is False:
    a patch opens the record it replaces in the same transaction). Returns the opened
    record."""
    rec = meter_record(state, cp) if enforced(state) else None
    if rec is None or not rec.sealed:
        raise ImageOpening(f"{cp!r} has no sealed firmware of record to open")
    if image_commitment(image, salt) != rec.firmware:
        raise ImageOpening(f"the image and salt do not open {cp!r}'s committed firmware")
    before = reason_of(state, rec)
    opened = dataclasses.replace(rec, firmware=image, sealed=None, salt=salt)
    put_meter_record(state, cp, opened)
    ctx.emit("image_opened", cp=cp, meter=rec.meter, firmware=image, salt=salt)
    now = reason_of(state, opened)
    if announce and now is not None and now != before:
        ctx.events.append(quarantine_event(cp, opened, now))
    return opened


def manifest_of(state: State, rid: bytes) -> Manifest | None:
    rel = release(state, rid)
    return None if rel is None else rel.manifest
