"""Certificate types: state records, messages and their stateless parsers, the matching
period and the capacity bound.

A granular certificate (GC, EnergyTag GC Scheme Standard v2) stands for one Wh of metered
export in one slot; GCs carry consecutive integer ids and are held in *bundles*, ranges
``[start, end]`` of ids with one owner and one status (as the EnergyTag API's
``certificate_bundle_id_range_start/_end``). A partial transfer or cancellation splits a
bundle from the start of its range, so every id always lies in exactly one bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gridledger.errors import ConfigError, InvalidBody
from gridledger.ledger.module import Body
from gridledger.ledger.modules.certificates.errors import CertificateListedTwice
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import (
    MAX_INT,
    require_addr,
    require_fields,
    require_int,
    require_str,
)

REGISTER_DEVICES = "certificates/register_devices"
PSEUDONYM_CLASS = "certificates/pseudonym_class"
STORAGE_READING = "certificates/storage_reading"
TRANSFER = "certificates/transfer"
CANCEL = "certificates/cancel"
STORE = "certificates/store"

Technology = Literal["solar_pv", "battery_storage"]
"""The production device behind a bundle (EnergyTag ``device_technology_type``)."""
Status = Literal["active", "cancelled", "expired"]
"""EnergyTag statuses used on this ledger: Active, Cancelled (final), Expired."""
Purpose = Literal["consumption", "storage"]
"""Why a bundle was cancelled: claimed against the holder's consumption, or allocated to a
Storage Charge Record (the energy went into the holder's battery)."""

MATCHING_PERIOD_S = 3600
"""Hourly (24/7) matching: a GC is claimed against consumption in its own hour."""
CAPACITY_TOLERANCE_PCT = 110
"""Issuance never exceeds capacity x interval x 1.1 (the FEA GC registry's issuance check)."""
MAX_ITEMS = 64
MAX_DEVICES = 256
MAX_CP_LEN = 64
MAX_POWER_W = 10**9
MAX_ENERGY_WH = 10**9
MAX_SLOT = 2**40
MAX_TEXT = 128


# -- time ------------------------------------------------------------------------------------

def period_seconds(slot_seconds: int) -> int:
    """The matching period: one hour when slots divide it, else one slot (EnergyTag: an
    interval of at most one hour)."""
    return MATCHING_PERIOD_S if MATCHING_PERIOD_S % slot_seconds == 0 else slot_seconds


def hour_of(slot: int, slot_seconds: int) -> int:
    """The matching period (hour) ``slot`` falls in, counted from block time 0."""
    return slot * slot_seconds // period_seconds(slot_seconds)


def slots_of_hour(hour: int, slot_seconds: int) -> range:
    """The slots of matching period ``hour``."""
    per = period_seconds(slot_seconds) // slot_seconds
    return range(hour * per, (hour + 1) * per)


def hour_close(hour: int, slot_seconds: int, settle_window_s: int, claim_window_s: int) -> int:
    """Block time from which ``hour`` is closed: its last slot's settlement deadline plus the
    claim window. Active certificates of the hour then expire."""
    return (hour + 1) * period_seconds(slot_seconds) + settle_window_s + claim_window_s


def capacity_wh(power_w: int, slot_seconds: int) -> int:
    """The most a device of ``power_w`` can deliver in one slot, with the 10 % tolerance."""
    return power_w * slot_seconds * CAPACITY_TOLERANCE_PCT // (3600 * 100)


# -- state records -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Config(Record):
    """``cert/config`` (genesis section ``certificates``): the issuing body's metadata
    (EnergyTag ``IssuanceMetaData``) and the claim window."""

    issuing_body: str
    country_of_issuance: str
    connected_grid_identification: str
    issue_market_zone: str
    time_origin_utc: str
    """ISO 8601 instant of block time 0 (exports turn slots into UTC intervals)."""
    claim_window_s: int
    """How long after an hour's last settlement deadline its GCs can still be cancelled."""


DEFAULT_CONFIG = Config(
    issuing_body="validator quorum", country_of_issuance="ZZ",
    connected_grid_identification="community grid", issue_market_zone="community",
    time_origin_utc="1970-01-01T00:00:00Z", claim_window_s=3600)


@dataclass(frozen=True)
class Device(Record):
    """``cert/dev/<cp>``: the production devices behind a connection point, attested by the
    DSO (``register_devices``). ``solar_w`` / ``storage_w`` are rated powers (0: none)."""

    solar_w: int
    storage_w: int
    storage_wh: int
    efficiency_pct: int
    """Round-trip efficiency: a Storage Charge Record of E Wh backs E x pct / 100 Wh of
    storage discharge certificates (EnergyTag: losses allocated to the charge)."""
    registered_at: int


@dataclass(frozen=True)
class SlotRecord(Record):
    """``cert/s/<slot>``: the slot was issued (written at its settlement) — the ids
    ``[first_id, next_id)`` and what happened to its metered export."""

    first_id: int
    next_id: int
    issued_wh: int
    storage_wh: int
    transferred_wh: int
    withheld_wh: int
    """Export of readings settlement does not trust — flagged by the DSO (false-data
    detection) or sent by a quarantined meter: no certificate."""
    capped_wh: int
    """Solar export above the device's capacity bound: no certificate."""
    uncertified_wh: int
    """Export certified by nothing else: storage discharge without a stored charge, export of
    a device without solar."""
    height: int


@dataclass(frozen=True)
class Issuance(Record):
    """``cert/i/<slot><cp>``: one device's issuance for one slot (EnergyTag issuance id
    ``<cp>-<slot start>``), from its settled reading."""

    owner: bytes
    export_wh: int
    """The metered export of the reading it was issued from."""
    solar_wh: int
    storage_wh: int
    flagged: bool
    """The reading was not trusted (flagged by the DSO, or from a quarantined meter):
    nothing issued."""
    zone: str


@dataclass(frozen=True)
class Bundle(Record):
    """``cert/b/<slot><start>``: GCs ``[start, end]`` of one issuance, one owner, one status.

    Storage discharge bundles carry the source of the energy that charged the battery and
    the Storage Charge Record they draw on (``charge_slot``, ``charge_start``: the cancelled
    bundle allocated to it).
    """

    end: int
    cp: str
    technology: Technology
    energy_source: str
    owner: bytes
    status: Status
    issued_height: int
    charge_slot: int | None = optional()
    charge_start: int | None = optional()
    cancelled_at: int | None = optional()
    purpose: Purpose | None = optional()

    def size(self, start: int) -> int:
        return self.end - start + 1


@dataclass(frozen=True)
class StorageReading(Record):
    """``cert/sr/<slot><cp>``: the battery sub-meter for one slot (signed by the cp's meter)
    and how much of the charge has been allocated to cancelled GCs (``stored_wh``)."""

    charged_wh: int
    discharged_wh: int
    meter: bytes
    stored_wh: int


@dataclass(frozen=True)
class Charge(Record):
    """One Storage Charge Record still backing discharge: Wh deliverable (after losses),
    from the cancelled bundle ``(slot, start)`` of ``source``."""

    slot: int
    start: int
    source: str
    energy_wh: int


@dataclass(frozen=True)
class SourceTotal(Record):
    """A battery's cumulative charge, deliverable charge and certified discharge of one
    energy source (Wh)."""

    source: str
    charged_wh: int
    deliverable_wh: int
    discharged_wh: int


@dataclass(frozen=True)
class StorageAccount(Record):
    """``cert/st/<cp>``: the battery's Storage Charge Records, first in first out (the fixed
    allocation method the EnergyTag storage guidance asks for), and totals by source."""

    queue: tuple[Charge, ...]
    totals: tuple[SourceTotal, ...]


@dataclass(frozen=True)
class Matching(Record):
    """``cert/m/<hour><addr>``: a holder's metered import in one hour and the GCs it
    cancelled against it (consumption) or allocated to its battery (storage)."""

    consumption_wh: int
    cancelled_wh: int
    stored_wh: int


@dataclass(frozen=True)
class HourRecord(Record):
    """``cert/h/<hour>``: written when the hour closes (its active GCs expire)."""

    consumption_wh: int
    cancelled_wh: int
    stored_wh: int
    expired_wh: int
    residual_wh: int
    """Consumption no GC covers: the grid's residual mix."""
    closed_at: int


@dataclass(frozen=True)
class Archive(Record):
    """``cert/arch/<hour>``: a closed hour whose dispute window has passed, folded out of live
    state (``archive.py``). ``root`` is the Merkle root over the ``records`` (key, value)
    pairs removed, in key order; the pairs themselves are in the ``certificates_archived``
    event of block ``height`` (every node's store keeps it; the header's receipts root
    commits to it). The rest is the hour's closing record and what its records add up to."""

    root: bytes
    records: int
    height: int
    issued_wh: int
    """GCs issued for the hour's slots (its slot records)."""
    consumption_wh: int
    cancelled_wh: int
    stored_wh: int
    expired_wh: int
    residual_wh: int
    closed_at: int


@dataclass(frozen=True)
class ArchiveTotals(Record):
    """``cert/atot``: what every archived hour adds up to (``archive-accounted``: the running
    totals are these plus what live records hold)."""

    hours: int = 0
    records: int = 0
    issued_wh: int = 0
    consumption_wh: int = 0
    cancelled_wh: int = 0
    stored_wh: int = 0
    expired_wh: int = 0


@dataclass(frozen=True)
class Totals(Record):
    """``cert/tot``: running totals (Wh) since genesis."""

    issued_wh: int = 0
    storage_issued_wh: int = 0
    transferred_wh: int = 0
    cancelled_wh: int = 0
    stored_wh: int = 0
    expired_wh: int = 0
    consumption_wh: int = 0
    withheld_wh: int = 0
    capped_wh: int = 0
    uncertified_wh: int = 0


# -- messages ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceEntry(Record):
    cp: str
    solar_w: int
    storage_w: int
    storage_wh: int
    efficiency_pct: int


@dataclass(frozen=True)
class RegisterDevices(Record):
    """``certificates/register_devices`` (dso): attest the devices behind connection points
    (replaces an earlier registration of the same cp)."""

    devices: tuple[DeviceEntry, ...]


@dataclass(frozen=True)
class PseudonymClass(Record):
    """``certificates/pseudonym_class`` (dso): the one device class every pseudonym's
    stand-in connection point is certified under (privacy mode, issue 19): rated bounds
    over the community's households, the same for all, so the class names no household."""

    solar_w: int
    storage_w: int
    storage_wh: int
    efficiency_pct: int


@dataclass(frozen=True)
class StorageReadingMsg(Record):
    """``certificates/storage_reading`` (meter): the battery sub-meter of the sender's cp."""

    slot: int
    charged_wh: int
    discharged_wh: int


@dataclass(frozen=True)
class Item(Record):
    """``energy_wh`` GCs from the start of bundle ``(slot, start)``."""

    slot: int
    start: int
    energy_wh: int


@dataclass(frozen=True)
class Transfer(Record):
    """``certificates/transfer``: move GCs the sender holds to ``to``."""

    to: bytes
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Cancel(Record):
    """``certificates/cancel``: claim GCs against the sender's consumption in their hour
    (final)."""

    items: tuple[Item, ...]


@dataclass(frozen=True)
class Store(Record):
    """``certificates/store``: allocate GCs to a Storage Charge Record of the sender's
    battery for the charge its sub-meter measured in the GCs' slot (final)."""

    items: tuple[Item, ...]


def _list(body: Body, name: str, most: int) -> list[object]:
    v = body.get(name)
    if not isinstance(v, list) or not 1 <= len(v) <= most:
        raise InvalidBody(f"field {name!r} must be a list of 1..{most} entries")
    return v


def _items(body: Body) -> tuple[Item, ...]:
    out: list[Item] = []
    seen: set[tuple[int, int]] = set()
    for i, raw in enumerate(_list(body, "items", MAX_ITEMS)):
        if not isinstance(raw, list) or len(raw) != 3:
            raise InvalidBody(f"items[{i}] must be [slot, start, energy_wh]")
        entry = {"slot": raw[0], "start": raw[1], "energy_wh": raw[2]}
        item = Item(require_int(entry, "slot", maximum=MAX_SLOT),
                    require_int(entry, "start", minimum=1, maximum=MAX_INT),
                    require_int(entry, "energy_wh", minimum=1, maximum=MAX_ENERGY_WH))
        if (item.slot, item.start) in seen:
            raise CertificateListedTwice(f"bundle {item.slot}:{item.start} is listed twice")
        seen.add((item.slot, item.start))
        out.append(item)
    return tuple(out)


def parse_register_devices(body: Body) -> RegisterDevices:
    """Exactly ``devices``: 1..256 ``[cp, solar_w, storage_w, storage_wh, efficiency_pct]``
    with distinct cps (1..64 chars), powers 0..1e9 W, energy 0..1e12 Wh, efficiency
    1..100 %; a device with storage power needs storage energy. Raises ``InvalidBody``."""
    require_fields(body, REGISTER_DEVICES, ("devices",))
    out: list[DeviceEntry] = []
    for i, raw in enumerate(_list(body, "devices", MAX_DEVICES)):
        if not isinstance(raw, list) or len(raw) != 5:
            raise InvalidBody(f"devices[{i}] must be [cp, solar_w, storage_w, storage_wh, "
                              "efficiency_pct]")
        e = dict(zip(("cp", "solar_w", "storage_w", "storage_wh", "efficiency_pct"), raw,
                     strict=True))
        d = DeviceEntry(require_str(e, "cp", max_len=MAX_CP_LEN),
                        require_int(e, "solar_w", maximum=MAX_POWER_W),
                        require_int(e, "storage_w", maximum=MAX_POWER_W),
                        require_int(e, "storage_wh", maximum=10**12),
                        require_int(e, "efficiency_pct", minimum=1, maximum=100))
        if (d.storage_w == 0) != (d.storage_wh == 0):
            raise InvalidBody(f"devices[{i}]: storage needs both power and energy, or neither")
        out.append(d)
    if len({d.cp for d in out}) != len(out):
        raise InvalidBody("devices name a connection point twice")
    return RegisterDevices(tuple(out))


def parse_pseudonym_class(body: Body) -> PseudonymClass:
    """Exactly ``solar_w``, ``storage_w`` (0..1e9 W), ``storage_wh`` (0..1e12 Wh),
    ``efficiency_pct`` (1..100); storage needs both power and energy, or neither. Raises
    ``InvalidBody``."""
    require_fields(body, PSEUDONYM_CLASS, ("solar_w", "storage_w", "storage_wh",
                                           "efficiency_pct"))
    c = PseudonymClass(require_int(body, "solar_w", maximum=MAX_POWER_W),
                       require_int(body, "storage_w", maximum=MAX_POWER_W),
                       require_int(body, "storage_wh", maximum=10**12),
                       require_int(body, "efficiency_pct", minimum=1, maximum=100))
    if (c.storage_w == 0) != (c.storage_wh == 0):
        raise InvalidBody("pseudonym class: storage needs both power and energy, or neither")
    return c


def parse_storage_reading(body: Body) -> StorageReadingMsg:
    """Exactly ``slot``, ``charged_wh``, ``discharged_wh`` (0..1e9 Wh). Raises
    ``InvalidBody``."""
    require_fields(body, STORAGE_READING, ("slot", "charged_wh", "discharged_wh"))
    return StorageReadingMsg(require_int(body, "slot", maximum=MAX_SLOT),
                             require_int(body, "charged_wh", maximum=MAX_ENERGY_WH),
                             require_int(body, "discharged_wh", maximum=MAX_ENERGY_WH))


def parse_transfer(body: Body) -> Transfer:
    """Exactly ``to`` (32-byte address) and ``items`` (1..64 ``[slot, start, energy_wh]``,
    no bundle twice: ``certificate-listed-twice``). Raises ``InvalidBody``."""
    require_fields(body, TRANSFER, ("to", "items"))
    return Transfer(require_addr(body, "to"), _items(body))


def parse_cancel(body: Body) -> Cancel:
    """Exactly ``items`` (as ``parse_transfer``)."""
    require_fields(body, CANCEL, ("items",))
    return Cancel(_items(body))


def parse_store(body: Body) -> Store:
    """Exactly ``items`` (as ``parse_transfer``)."""
    require_fields(body, STORE, ("items",))
    return Store(_items(body))


def parse_config(section: dict[str, object]) -> Config:
    """The genesis section ``certificates`` over the defaults; unknown keys are refused.

    Raises ``ConfigError`` naming the field."""
    base = DEFAULT_CONFIG.to_obj()
    unknown = set(section) - set(base)
    if unknown:
        raise ConfigError(f"genesis certificates: unknown field(s) {sorted(unknown)}")
    merged = {**base, **section}
    for k, v in merged.items():
        if k == "claim_window_s":
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 10**9:
                raise ConfigError("genesis certificates: claim_window_s must be an integer "
                                  "in [0, 1e9]")
        elif not isinstance(v, str) or not v or len(v) > MAX_TEXT:
            raise ConfigError(f"genesis certificates: {k} must be a non-empty string of at "
                              f"most {MAX_TEXT} chars")
    return Config.from_obj(merged)
