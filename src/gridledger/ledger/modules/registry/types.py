"""Registry types: roles, the participant record, onboarding rules and messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gridledger.ledger import codec
from gridledger.ledger.record import Record, optional

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


Status = Literal["active"]
"""A participant record's status. Only ``active`` is ever written: identities leave the
validator set by losing the role (governance) and nothing removes a participant, so no
other status exists (the key stays in the record so its bytes, and state roots, do not
change)."""


@dataclass(frozen=True)
class Participant(Record):
    """``reg/p/<addr>``: a registered identity and the key it signs with now.

    ``cp`` is the connection point a trading identity holds (None for validators, meters,
    trustees ...); ``meter_of`` the cp a meter identity is bound to; ``valid_slots`` the
    slot range a pseudonym may trade and report in (privacy module).
    """

    alg: str
    pk: bytes
    roles: tuple[str, ...]
    cp: str | None
    name: str
    status: Status = "active"
    meter_of: str | None = optional()
    valid_slots: tuple[int, int] | None = optional()

    def has_role(self, role: str) -> bool:
        return role in self.roles
