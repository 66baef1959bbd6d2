"""The EnergyTag granular certificate data model, filled from the ledger's bundles.

Field names are those of the EnergyTag Granular Certificate Scheme Standard v2 as the
open-source FEA demonstration registry models them (``ENERGYTAG_SOURCE``): one record per
GC bundle in the self-contained ``GranularCertificateBundleReadFull`` shape (bundle,
production device and issuing-body metadata together), plus ``beneficiary`` from
``GranularCertificateBundleBase`` for cancelled bundles. Nothing here is consensus data:
an export is a view of certified state, and ``ledger_index`` ties each record to the state
key an auditor proves (``gridledger.certificates.audit``).

Mapping choices (the model leaves them to the registry):

* ``account_id``: the holder's ledger address (hex); ``device_id``: ``<cp>/<technology>``;
  ``issuance_id``: ``<device_id>-<production_starting_interval>`` (as the FEA registry).
* ``face_value`` 1 Wh; ids are the ledger's global GC ids, so ``certificate_bundle_id_range_*``
  identify a bundle uniquely.
* Statuses: Active, Cancelled (claimed against consumption or allocated to a Storage Charge
  Record: both final on the ledger), Expired (uncancelled at the hour's close).
* Storage discharge GCs: ``is_storage`` true, ``energy_source`` the source of the charge,
  ``sdr_allocation_id`` the cancelled bundle (``<slot>:<start>``) its Storage Charge Record
  came from, ``storage_efficiency_factor`` the device's round-trip efficiency.
* ``expiry_datestamp``: when the hour's claim window closes. ``device_location``: null (a
  device attestation carries no coordinates). ``hash``: SHA-256 over the immutable fields
  (the FEA registry's lineage hash; here without a parent, since splits keep the issuance).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gridledger.ledger.modules.certificates.types import hour_close, hour_of

ENERGYTAG_SOURCE = (
    "EnergyTag Granular Certificate Scheme Standard v2; field names as modelled by the FEA "
    "granular certificate registry (github.com/Future-Energy-Associates/"
    "granular_certificate_registry, commit 111858c, Dec 2024), gc_registry/certificate/"
    "schemas.py: GranularCertificateBundleReadFull, plus GranularCertificateBundleBase."
    "beneficiary")
ENERGYTAG_FIELDS: tuple[str, ...] = (
    "certificate_bundle_status", "account_id", "certificate_bundle_id_range_start",
    "certificate_bundle_id_range_end", "bundle_quantity", "issuance_id", "energy_carrier",
    "energy_source", "face_value", "issuance_post_energy_carrier_conversion",
    "registry_configuration", "device_id", "device_name", "device_technology_type",
    "device_production_start_date", "device_capacity", "device_location", "device_type",
    "production_starting_interval", "production_ending_interval", "expiry_datestamp",
    "is_storage", "sdr_allocation_id", "discharging_start_datetime", "discharging_end_datetime",
    "storage_efficiency_factor", "country_of_issuance", "connected_grid_identification",
    "issuing_body", "legal_status", "issuance_purpose", "support_received",
    "quality_scheme_reference", "dissemination_level", "issue_market_zone",
    "emissions_factor_production_device", "emissions_factor_source", "hash", "is_deleted",
    "beneficiary")
"""Every field of an exported record, in the order of the source model."""
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
    """
    origin = time_origin(cfg)
    s = int(cfg["slot_seconds"])
    slot, start, end = int(bundle["slot"]), int(bundle["start"]), int(bundle["end"])
    storage = bundle["technology"] == "battery_storage"
    dev = device or {}
    device_id = f"{bundle['cp']}/{bundle['technology']}"
    begin, finish = _utc(origin, slot * s), _utc(origin, (slot + 1) * s)
    close = hour_close(hour_of(slot, s), s, int(cfg["settle_window_s"]),
                       int(cfg["claim_window_s"]))
    eff = dev.get("efficiency_pct")
    rec: dict[str, Any] = {
        "certificate_bundle_status": STATUS[str(bundle["status"])],
        "account_id": bytes(bundle["owner"]).hex(),
        "certificate_bundle_id_range_start": start,
        "certificate_bundle_id_range_end": end,
        "bundle_quantity": end - start + 1,
        "issuance_id": f"{device_id}-{begin}",
        "energy_carrier": "electricity",
        "energy_source": bundle["energy_source"],
        "face_value": 1,
        "issuance_post_energy_carrier_conversion": False,
        "registry_configuration": 1,
        "device_id": device_id,
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
        "sdr_allocation_id": (f"{bundle['charge_slot']}:{bundle['charge_start']}"
                              if storage and bundle.get("charge_slot") is not None else None),
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
    immutable = {k: v for k, v in rec.items() if k not in _MUTABLE}
    rec["hash"] = hashlib.sha256(json.dumps(immutable, sort_keys=True).encode()).hexdigest()
    return rec


def csv_rows(records: Sequence[Mapping[str, Any]],
             index: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for a CSV export: the EnergyTag fields, then the ledger bundle id and
    state key of each record (``index`` aligned with ``records``)."""
    header = [*ENERGYTAG_FIELDS, "ledger_bundle_id", "ledger_state_key"]
    rows = []
    for rec, ix in zip(records, index, strict=True):
        rows.append([_cell(rec[f]) for f in ENERGYTAG_FIELDS]
                    + [str(ix["bundle_id"]), str(ix["state_key"])])
    return header, rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
