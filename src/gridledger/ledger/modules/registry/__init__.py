"""Registry: participants, roles, public keys, connection points, the validator set.

State
  ``reg/p/<addr>``     {alg, pk, roles, cp, name, status}
  ``reg/cp/<cp>``      addr holding the connection point (one connection point, one identity)
  ``reg/validators``   [addr, ...] in certificate order
Messages
  ``registry/rotate_key``  {alg, pk, pop}: replace the signing key (crypto agility); ``pop``
                           is the new key's signature over the sender address (proof of
                           possession, context ``gl/rotate``).
Invariants
  cp-unique: every connection point maps to exactly one participant and back.
"""

from gridledger.ledger.modules.registry.keeper import (
    ROLES,
    get_participant,
    has_role,
    require_participant,
    validator_set,
    validator_set_hash,
)
from gridledger.ledger.modules.registry.module import MODULE

__all__ = ["MODULE", "ROLES", "get_participant", "has_role", "require_participant",
           "validator_set", "validator_set_hash"]
