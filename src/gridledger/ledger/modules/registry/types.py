"""Registry types: roles, onboarding rules and the messages proofs of possession sign."""

from __future__ import annotations

from gridledger.ledger import codec

ROLES = ("prosumer", "consumer", "dso", "validator", "trustee", "vendor", "aggregator", "meter",
         "pseudonym")
APPLICANT_ROLES = frozenset({"prosumer", "consumer"})
"""Roles onboarding can grant; the others are granted at genesis or by governance."""
ENDORSER_ROLES = frozenset({"prosumer", "consumer", "validator", "trustee"})
"""Existing members and validators may endorse applicants (and sponsor applications)."""
SPONSOR_ROLES = ENDORSER_ROLES | {"dso"}

APPLY_CONTEXT = b"gl/apply"
METER_CONTEXT = b"gl/meter-pop"
MAX_CP_LEN = 64


def apply_pop_message(chain_id: str, cp: str, roles: list[str], name: str) -> bytes:
    """What an applicant's new key signs (context ``gl/apply``) to prove it wants to join.

    The applicant has no registered key yet, so a member submits ``registry/apply`` on its
    behalf; this proof of possession stops anyone from enrolling a key they do not hold.
    """
    return codec.encode({"chain_id": chain_id, "cp": cp, "name": name, "roles": sorted(roles)})


def meter_pop_message(chain_id: str, cp: str, applicant: bytes) -> bytes:
    """What a meter's device key signs (context ``gl/meter-pop``) when the DSO attests it."""
    return codec.encode({"applicant": applicant, "chain_id": chain_id, "cp": cp})
