"""The EnergyTag granular certificate data model, filled from the ledger's bundles.

Field names are those of the EnergyTag Granular Certificate Scheme Standard v2 as the
open-source FEA demonstration registry models them (``ENERGYTAG_SOURCE``): one record per
GC bundle in the self-contained ``GranularCertificateBundleReadFull`` shape (bundle,
production device and issuing-body metadata together), plus ``beneficiary`` from
``GranularCertificateBundleBase`` for cancelled bundles. Nothing here is consensus data:
an export is a view of certified state, and ``ledger_index`` ties each record to the state
key an auditor proves (``gridledger.certificates.audit``).

``load_export`` / ``load_csv`` read an export back into ``EnergyTagBundle``, the model's
fields with its types and enumerations (the shape a registry importing it would check).

Mapping choices (the model leaves them to the registry):

* ``account_id`` and ``device_id`` are integers, as the model types them: 48 bits of the
  holder's ledger address (``account_number``) and of the SHA-256 of ``<cp>/<technology>``
  (``device_number``) — stable across exports; ``ledger_index`` gives the address and
  device name of each record. ``issuance_id``: ``<cp>/<technology>-<production start>``.
* ``face_value`` 1 Wh; ids are the ledger's global GC ids, so ``certificate_bundle_id_range_*``
  identify a bundle uniquely.
* Statuses: Active, Cancelled (claimed against consumption or allocated to a Storage Charge
  Record: both final on the ledger), Expired (uncancelled at the hour's close).
* Storage discharge GCs: ``is_storage`` true, ``energy_source`` the source of the charge,
  ``sdr_allocation_id`` the first GC id of the cancelled bundle its Storage Charge Record
  came from (GC ids are chain-wide, so the id names the record),
  ``storage_efficiency_factor`` the device's round-trip efficiency.
* ``expiry_datestamp``: when the hour's claim window closes. ``device_location``: null (a
  device attestation carries no coordinates; the one deviation from the model's types).
  ``hash``: SHA-256 over the immutable fields (the FEA registry's lineage hash; here without
  a parent, since splits keep the issuance).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, model_validator

from gridledger.errors import GridLedgerError
from gridledger.ledger.modules.certificates.types import hour_close, hour_of

ENERGYTAG_SOURCE = (
    "EnergyTag Granular Certificate Scheme Standard v2; field names as modelled by the FEA "
    "granular certificate registry (github.com/Future-Energy-Associates/"
    "granular_certificate_registry, commit 111858c, Dec 2024), gc_registry/certificate/"
    "schemas.py: GranularCertificateBundleReadFull, plus GranularCertificateBundleBase."
    "beneficiary")

# The standard's enumerations as the source model has them (gc_registry/core/models/base.py).
CertificateStatus = Literal["Active", "Cancelled", "Claimed", "Expired", "Withdrawn", "Locked",
                            "Reserved", "Bundle Split"]
EnergyCarrierType = Literal["electricity", "natural_gas", "hydrogen", "heat", "other"]
EnergySourceType = Literal["solar_pv", "wind", "hydro", "biomass", "nuclear", "electrolysis",
                           "geothermal", "battery_storage", "chp", "other"]
DeviceTechnologyType = Literal["solar_pv", "wind_turbine", "hydro", "battery_storage",
                               "ev_charger", "chp", "other"]
MAX_PRODUCTION_INTERVAL = timedelta(hours=1)
"""The standard's longest production period of one GC bundle."""


class ExportError(GridLedgerError):
    """An export document (or one record of it) that does not fit the EnergyTag model."""


class EnergyTagBundle(BaseModel):
    """One GC bundle in the shape of ``GranularCertificateBundleReadFull`` (+ ``beneficiary``),
    with the source model's types: integer account, device and id fields, UTC datetimes,
    the standard's enumerations. Field order = ``ENERGYTAG_FIELDS``.

    One deviation, on purpose: ``device_location`` is required there (GPS coordinates), and
    may be null here — a DSO's device attestation on the ledger carries no coordinates, and
    inventing some would be worse than saying so. Checked beyond types: the id range and
    quantity agree, the production period is positive and at most one hour, storage fields
    appear exactly on storage bundles, and ``hash`` is the hash of the immutable fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    certificate_bundle_status: CertificateStatus
    account_id: int
    certificate_bundle_id_range_start: int
    certificate_bundle_id_range_end: int
    bundle_quantity: int
    issuance_id: str
    energy_carrier: EnergyCarrierType
    energy_source: EnergySourceType
    face_value: int
    issuance_post_energy_carrier_conversion: bool
    registry_configuration: int
    device_id: int
    device_name: str
    device_technology_type: DeviceTechnologyType
    device_production_start_date: AwareDatetime
    device_capacity: int
    device_location: tuple[float, float] | None
    device_type: Literal["production", "storage"]
    production_starting_interval: AwareDatetime
    production_ending_interval: AwareDatetime
    expiry_datestamp: AwareDatetime
    is_storage: bool
    sdr_allocation_id: int | None
    discharging_start_datetime: AwareDatetime | None
    discharging_end_datetime: AwareDatetime | None
    storage_efficiency_factor: float | None
    country_of_issuance: str
    connected_grid_identification: str
    issuing_body: str
    legal_status: str | None
    issuance_purpose: str | None
    support_received: str | None
    quality_scheme_reference: str | None
    dissemination_level: str | None
    issue_market_zone: str
    emissions_factor_production_device: float | None
    emissions_factor_source: str | None
    hash: str
    is_deleted: bool
    beneficiary: str | None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        start, end = self.certificate_bundle_id_range_start, self.certificate_bundle_id_range_end
        if not 0 < start <= end or self.bundle_quantity != end - start + 1:
            raise ValueError(f"id range [{start}, {end}] does not hold bundle_quantity "
                             f"{self.bundle_quantity}")
        period = self.production_ending_interval - self.production_starting_interval
        if not timedelta(0) < period <= MAX_PRODUCTION_INTERVAL:
            raise ValueError(f"production period {period} is not within (0, 1 h]")
        storage = (self.sdr_allocation_id, self.discharging_start_datetime,
                   self.discharging_end_datetime)
        if self.is_storage != (self.device_type == "storage") or (
                not self.is_storage and any(v is not None for v in storage)):
            raise ValueError("storage fields on a bundle that is not storage (or the reverse)")
        if self.face_value < 1 or self.device_capacity < 0:
            raise ValueError("face_value must be >= 1 Wh and device_capacity >= 0 W")
        if self.hash != record_hash(self.model_dump(mode="json")):
            raise ValueError("hash is not the SHA-256 of the bundle's immutable fields")
        return self


ENERGYTAG_FIELDS: tuple[str, ...] = tuple(EnergyTagBundle.model_fields)
"""Every field of an exported record, in the order of the source model."""


class LedgerIndexEntry(BaseModel):
    """Where an exported record lives on the ledger: its bundle id (``<slot>:<start>``, for
    ``gridledger certificates prove``), state key, holder address, device and — once its hour
    was archived — that hour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    certificate_bundle_id_range_start: int
    bundle_id: str
    state_key: str
    account: str
    device: str
    archived_hour: int | None = None
    """The hour whose archive holds the bundle (``cert/arch/<hour>``: prove it in two levels),
    None while it is in live state."""


class EnergyTagExport(BaseModel):
    """The document ``gridledger certificates export --format energytag`` writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_model: str
    fields: list[str]
    chain_id: str
    height: int
    state_root: str
    header_hash: str
    granular_certificate_bundles: list[EnergyTagBundle]
    ledger_index: list[LedgerIndexEntry]

    @model_validator(mode="after")
    def _aligned(self) -> Self:
        if tuple(self.fields) != ENERGYTAG_FIELDS:
            raise ValueError("fields is not the EnergyTag field list of this export format")
        if len(self.ledger_index) != len(self.granular_certificate_bundles):
            raise ValueError("ledger_index is not aligned with granular_certificate_bundles")
        for i, (rec, ix) in enumerate(zip(self.granular_certificate_bundles, self.ledger_index,
                                          strict=True)):
            if (ix.certificate_bundle_id_range_start != rec.certificate_bundle_id_range_start
                    or account_number(bytes.fromhex(ix.account)) != rec.account_id
                    or device_number(ix.device) != rec.device_id):
                raise ValueError(f"ledger_index[{i}] does not describe record {i}")
        return self


def account_number(address: bytes) -> int:
    """The export's integer ``account_id`` of a ledger address: its first 6 bytes (48 bits,
    exact as a JSON number in any reader). Stable across exports; ``check_unique`` refuses
    an export in which two holders would share one."""
    return int.from_bytes(address[:6], "big")


def device_number(device: str) -> int:
    """The export's integer ``device_id`` of ``<cp>/<technology>`` (48 bits of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(device.encode()).digest()[:6], "big")


def record_hash(rec: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over a record's immutable fields, as JSON with sorted keys."""
    immutable = {k: v for k, v in rec.items() if k not in _MUTABLE}
    return hashlib.sha256(json.dumps(immutable, sort_keys=True).encode()).hexdigest()


def load_export(text: str | bytes) -> EnergyTagExport:
    """Parse an EnergyTag export document (JSON) into the typed model, strictly (a string is
    not an int, an int not a bool). Raises ``ExportError`` naming the record and field."""
    try:
        return EnergyTagExport.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise ExportError(f"not an EnergyTag export: {_first_error(exc)}") from None


def load_csv(text: str) -> list[EnergyTagBundle]:
    """Parse a CSV export (header = ``ENERGYTAG_FIELDS`` then the ledger columns) into typed
    records: empty cells are null, ``true``/``false`` booleans. Raises ``ExportError``."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0][:len(ENERGYTAG_FIELDS)]) != ENERGYTAG_FIELDS:
        raise ExportError("not an EnergyTag CSV export: the header is not ENERGYTAG_FIELDS")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        rec = {f: (None if v == "" else v) for f, v in zip(ENERGYTAG_FIELDS, row, strict=False)}
        try:
            out.append(EnergyTagBundle.model_validate(rec))
        except ValidationError as exc:
            raise ExportError(f"CSV line {n}: {_first_error(exc)}") from None
    return out


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "document"
    return f"{where}: {e['msg']} ({exc.error_count()} error(s))"


ENERGYTAG_REQUIRED: tuple[str, ...] = (
    "certificate_bundle_status", "account_id", "certificate_bundle_id_range_start",
    "certificate_bundle_id_range_end", "bundle_quantity", "issuance_id", "energy_carrier",
    "energy_source", "face_value", "issuance_post_energy_carrier_conversion", "device_id",
    "device_name", "device_technology_type", "device_production_start_date",
    "device_capacity", "device_type", "production_starting_interval",
    "production_ending_interval", "expiry_datestamp", "is_storage", "country_of_issuance",
    "connected_grid_identification", "issuing_body", "issue_market_zone", "hash")
"""The model's required fields this export always fills (``device_location`` is required
there too, but the ledger has no coordinates: it is exported as null)."""
STATUS = {"active": "Active", "cancelled": "Cancelled", "expired": "Expired"}
_MUTABLE = {"certificate_bundle_status", "account_id", "sdr_allocation_id",
            "storage_efficiency_factor", "is_deleted", "certificate_bundle_id_range_start",
            "certificate_bundle_id_range_end", "bundle_quantity", "beneficiary", "hash"}


def _utc(origin: datetime, seconds: int) -> str:
    return (origin + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def time_origin(cfg: Mapping[str, Any]) -> datetime:
    """Block time 0 as a UTC datetime (``time_origin_utc`` of the module's config)."""
    t = datetime.fromisoformat(str(cfg["time_origin_utc"]).replace("Z", "+00:00"))
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def to_energytag(bundle: Mapping[str, Any], device: Mapping[str, Any] | None,
                 cfg: Mapping[str, Any], zone: str | None = None) -> dict[str, Any]:
    """One EnergyTag record (``ENERGYTAG_FIELDS``, in order) for a ledger bundle.

    ``bundle``: the ``certificates/bundle`` view; ``device``: its ``certificates/devices``
    entry (None if the registration was replaced since: capacity then 0); ``cfg``: the
    ``certificates/config`` view (issuing body, time origin, slot and window lengths);
    ``zone``: the issuance's zone (``certificates/issuances``), else the config's.
    The record fits ``EnergyTagBundle``.
    """
    origin = time_origin(cfg)
    s = int(cfg["slot_seconds"])
    slot, start, end = int(bundle["slot"]), int(bundle["start"]), int(bundle["end"])
    storage = bundle["technology"] == "battery_storage"
    dev = device or {}
    name = device_name(bundle)
    begin, finish = _utc(origin, slot * s), _utc(origin, (slot + 1) * s)
    close = hour_close(hour_of(slot, s), s, int(cfg["settle_window_s"]),
                       int(cfg["claim_window_s"]))
    eff = dev.get("efficiency_pct")
    rec: dict[str, Any] = {
        "certificate_bundle_status": STATUS[str(bundle["status"])],
        "account_id": account_number(bytes(bundle["owner"])),
        "certificate_bundle_id_range_start": start,
        "certificate_bundle_id_range_end": end,
        "bundle_quantity": end - start + 1,
        "issuance_id": f"{name}-{begin}",
        "energy_carrier": "electricity",
        "energy_source": bundle["energy_source"],
        "face_value": 1,
        "issuance_post_energy_carrier_conversion": False,
        "registry_configuration": 1,
        "device_id": device_number(name),
        "device_name": bundle["cp"],
        "device_technology_type": bundle["technology"],
        "device_production_start_date": _utc(origin, int(dev.get("registered_at", 0))),
        "device_capacity": int(dev.get("storage_w" if storage else "solar_w", 0)),
        "device_location": None,
        "device_type": "storage" if storage else "production",
        "production_starting_interval": begin,
        "production_ending_interval": finish,
        "expiry_datestamp": _utc(origin, close),
        "is_storage": storage,
        "sdr_allocation_id": (int(bundle["charge_start"])
                              if storage and bundle.get("charge_start") is not None else None),
        "discharging_start_datetime": begin if storage else None,
        "discharging_end_datetime": finish if storage else None,
        "storage_efficiency_factor": (int(eff) / 100 if storage and eff is not None else None),
        "country_of_issuance": cfg["country_of_issuance"],
        "connected_grid_identification": cfg["connected_grid_identification"],
        "issuing_body": cfg["issuing_body"],
        "legal_status": None,
        "issuance_purpose": None,
        "support_received": None,
        "quality_scheme_reference": None,
        "dissemination_level": "public grid",
        "issue_market_zone": zone or cfg["issue_market_zone"],
        "emissions_factor_production_device": None,
        "emissions_factor_source": None,
        "hash": "",
        "is_deleted": False,
        "beneficiary": (bytes(bundle["owner"]).hex() if bundle["status"] == "cancelled"
                        else None),
    }
    rec["hash"] = record_hash(rec)
    return rec


def device_name(bundle: Mapping[str, Any]) -> str:
    """``<cp>/<technology>``: a bundle's device as the ledger names it."""
    return f"{bundle['cp']}/{bundle['technology']}"


def csv_rows(records: Sequence[Mapping[str, Any]],
             index: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for a CSV export: the EnergyTag fields, then the ledger bundle id,
    state key, holder address and device of each record (``index`` aligned with
    ``records``, as ``LedgerIndexEntry``)."""
    header = [*ENERGYTAG_FIELDS, "ledger_bundle_id", "ledger_state_key", "ledger_account",
              "ledger_device"]
    rows = []
    for rec, ix in zip(records, index, strict=True):
        rows.append([_cell(rec[f]) for f in ENERGYTAG_FIELDS]
                    + [str(ix[k]) for k in ("bundle_id", "state_key", "account", "device")])
    return header, rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
