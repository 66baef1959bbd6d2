"""Registry: participants, roles, keys, connection points, meters, validators, onboarding.

State, messages, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.registry.keeper import (
    ROLES,
    cp_holder,
    cp_of,
    get_participant,
    has_role,
    meter_of_cp,
    participant,
    require_participant,
    validator_set,
    validator_set_hash,
)
from gridledger.ledger.modules.registry.module import build

__all__ = ["ROLES", "build", "cp_holder", "cp_of", "get_participant", "has_role",
           "meter_of_cp", "participant", "require_participant", "validator_set",
           "validator_set_hash"]
