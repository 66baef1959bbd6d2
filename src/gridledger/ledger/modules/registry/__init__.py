"""Registry: participants, roles, keys, connection points, meters, validators, onboarding.

One connection point (cp), one trading identity. A meter is its own identity (role
``meter``, ML-DSA-44 allowed) bound to one cp; it signs readings and can do nothing else.
Onboarding has no single registrar: a new participant is admitted only with the DSO's
attestation of its cp (which also registers the cp's meter key) *and* ``k`` endorsements
(genesis param ``endorsements_required``, default 2) from existing members or validators,
none of them the attesting DSO, each with a score >= ``endorse_min_reputation``. An
unregistered key cannot send transactions, so a member (the sponsor) submits the
application carrying the applicant's key and its proof of possession; the sponsor's
submission counts as its endorsement. Whatever the order of apply / endorse / attest, the
transaction that completes the conditions admits the applicant.

State
  ``reg/p/<addr>``     {alg, pk, roles, cp, name, status} (+ ``meter_of`` for meters)
  ``reg/cp/<cp>``      addr holding the connection point
  ``reg/meter/<cp>``   the meter identity of the cp
  ``reg/att/<cp>``     pending DSO attestation {applicant, meter, dso}
  ``reg/app/<addr>``   pending application {alg, pk, cp, roles, name, endorsers, sponsor}
  ``reg/validators``   [addr, ...] in certificate (vote index) order: the active set. Changed
                       only by governance votes (``governance`` module, via
                       ``keeper.add_validator`` / ``keeper.remove_validator``); the set in the
                       state after block h certifies block h + 1.
Messages
  ``registry/rotate_key``  {alg, pk, pop}: replace the signing key (crypto agility); ``pop``
                           is the new key's signature over the sender address (``gl/rotate``).
                           A validator cannot rotate to another validator's key
                           (``validator-exists``).
  ``registry/attest_cp``   {cp, applicant, meter_alg, meter_pk, meter_pop} (dso): ``meter_pop``
                           is the meter key's signature (``gl/meter-pop``) over
                           ``types.meter_pop_message``. For a cp already held by ``applicant``
                           it only registers the meter.
  ``registry/apply``       {alg, pk, pop, cp, roles ⊆ {prosumer, consumer}, name} (members,
                           validators, dso): ``pop`` is the applicant key's signature
                           (``gl/apply``) over ``types.apply_pop_message``.
  ``registry/endorse``     {applicant} (members, validators)
Events
  ``key_rotated`` {addr, alg}; ``cp_attested`` {cp, applicant, meter, dso};
  ``meter_registered`` {cp, meter, holder, dso}; ``applied`` {addr, cp, roles, sponsor};
  ``endorsed`` {applicant, endorser, count}; ``admitted`` {addr, cp, roles, endorsers, dso, meter}
Invariants
  cp-unique: every connection point maps to exactly one participant and back.
  meter-unique: every cp has at most one meter, bound to that cp only.
  validator-set: the active set is non-empty, without duplicate address or public key, and
  every member is an active participant with the ``validator`` role.
"""

from gridledger.ledger.modules.registry.keeper import (
    ROLES,
    cp_holder,
    cp_of,
    get_participant,
    has_role,
    meter_of_cp,
    require_participant,
    validator_set,
    validator_set_hash,
)
from gridledger.ledger.modules.registry.module import MODULE

__all__ = ["MODULE", "ROLES", "cp_holder", "cp_of", "get_participant", "has_role",
           "meter_of_cp", "require_participant", "validator_set", "validator_set_hash"]
