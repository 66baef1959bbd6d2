"""Granular certificates outside the ledger: the EnergyTag export, hourly matching scores,
and the auditor's proof of one certificate against a certified header.

The ledger side (issuance, transfer, cancellation, invariants) is the ``certificates``
module (``gridledger.ledger.modules.certificates``); this package only reads what its views
and a validator's store give.
"""

from gridledger.certificates.audit import (
    BundleProof,
    Handoff,
    check_proof,
    follow_handoffs,
    genesis_validator_keys,
    handoff_at,
    make_proof,
)
from gridledger.certificates.energytag import (
    ENERGYTAG_FIELDS,
    ENERGYTAG_REQUIRED,
    ENERGYTAG_SOURCE,
    EnergyTagBundle,
    EnergyTagExport,
    ExportError,
    account_number,
    csv_rows,
    device_name,
    device_number,
    load_csv,
    load_export,
    to_energytag,
)
from gridledger.certificates.matching import MemberMatching, matching_by_member, score_mean

__all__ = ["ENERGYTAG_FIELDS", "ENERGYTAG_REQUIRED", "ENERGYTAG_SOURCE", "BundleProof",
           "EnergyTagBundle", "EnergyTagExport", "ExportError", "Handoff", "MemberMatching",
           "account_number", "check_proof", "csv_rows", "device_name", "device_number",
           "follow_handoffs", "genesis_validator_keys", "handoff_at",
           "load_csv", "load_export", "make_proof", "matching_by_member", "score_mean",
           "to_energytag"]
