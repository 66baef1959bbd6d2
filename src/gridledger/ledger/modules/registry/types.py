"""Registry types: roles, the participant and onboarding records, messages and their
stateless parsers, and the messages proofs of possession sign."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

from gridledger.errors import InvalidBody
from gridledger.ledger import codec
from gridledger.ledger.committee import COMMITTEE_ALG, MAX_MEMBERS, parse_committee
from gridledger.ledger.module import Body
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import (
    MAX_KEY_BYTES,
    require_addr,
    require_alg,
    require_bytes,
    require_fields,
    require_key,
    require_sig,
    require_str,
)
from gridledger.memo import memoize

ROLES = ("prosumer", "consumer", "dso", "validator", "trustee", "vendor", "aggregator", "meter",
         "pseudonym")
APPLICANT_ROLES = frozenset({"prosumer", "consumer"})
"""Roles onboarding can grant; the others are granted at genesis or by governance."""
ENDORSER_ROLES = frozenset({"prosumer", "consumer", "validator", "trustee"})
"""Existing members and validators may endorse applicants (and sponsor applications)."""
SPONSOR_ROLES = ENDORSER_ROLES | {"dso"}

PSEUDO_CP = "ps:"


def pseudonym_cp(addr: bytes) -> str:
    """A pseudonym's stand-in connection point: ``ps:`` + its whole 32-byte address in
    unpadded base64url (46 characters; a cp holds at most ``MAX_CP_LEN`` = 64, which the
    hex of the address does not fit). It names the address, so the holder and the meter of
    such a cp are found from its own record, without cp / meter index entries (two state
    keys fewer for each of a privacy day's ~2,880 pseudonyms; issue 19)."""
    return PSEUDO_CP + base64.urlsafe_b64encode(addr).rstrip(b"=").decode()


@memoize(65536)   # pure; each stand-in cp is looked up ~20 times a day; aged by block time
def pseudonym_address(cp: str) -> bytes | None:
    """The address a stand-in cp names (None: not ``pseudonym_cp`` of any 32-byte address;
    only the canonical encoding counts)."""
    if not cp.startswith(PSEUDO_CP) or len(cp) != len(PSEUDO_CP) + 43:
        return None
    try:
        addr = base64.urlsafe_b64decode(cp[len(PSEUDO_CP):] + "=")
    except (binascii.Error, ValueError):
        return None
    return addr if len(addr) == 32 and pseudonym_cp(addr) == cp else None


ROTATE_CONTEXT = b"gl/rotate"
APPLY_CONTEXT = b"gl/apply"
METER_CONTEXT = b"gl/meter-pop"
MAX_CP_LEN = 64
MAX_NAME_LEN = 64
MAX_COMMITTEE_BYTES = MAX_MEMBERS * (MAX_KEY_BYTES + 16)
"""Longest committee descriptor a body may carry."""
SINGLE_KEY_ROLES = frozenset({"validator", "meter"})
"""Roles whose key signs alone (block votes, meter readings): never a committee."""

ROTATE_KEY = "registry/rotate_key"
ATTEST_CP = "registry/attest_cp"
APPLY = "registry/apply"
ENDORSE = "registry/endorse"


def apply_pop_message(chain_id: str, cp: str, roles: list[str] | tuple[str, ...], name: str) -> bytes:
    """What an applicant's new key signs (context ``gl/apply``) to prove it wants to join.

    The applicant has no registered key yet, so a member submits ``registry/apply`` on its
    behalf; this proof of possession stops anyone from enrolling a key they do not hold.
    """
    return codec.encode({"chain_id": chain_id, "cp": cp, "name": name, "roles": sorted(roles)})


def meter_pop_message(chain_id: str, cp: str, applicant: bytes) -> bytes:
    """What a meter's device key signs (context ``gl/meter-pop``) when the DSO attests it."""
    return codec.encode({"applicant": applicant, "chain_id": chain_id, "cp": cp})


# -- state records ---------------------------------------------------------------------

Status = Literal["active"]
"""A participant record's status. Only ``active`` is ever written: identities leave the
validator set by losing the role (governance) and nothing removes a participant, so no
other status exists. The key stays in the record so its bytes, and state roots, do not
change; a status with meaning (e.g. a suspended meter) would be a new module version."""


@dataclass(frozen=True)
class Participant(Record):
    """``reg/p/<addr>``: a registered identity and the key it signs with now.

    ``cp`` is the connection point a trading identity holds (None for validators, meters,
    trustees ...); ``meter_of`` the cp a meter identity is bound to; ``valid_slots`` the
    slot range ``[first, last]`` a pseudonym may trade and report in (privacy module);
    ``meter`` a pseudonym's meter identity (its reading key), which its stand-in cp is
    bound to — kept here instead of in the cp and meter indexes (``keeper.put_pseudonym``).
    """

    alg: str
    pk: bytes
    roles: tuple[str, ...]
    cp: str | None
    name: str
    status: Status = "active"
    meter_of: str | None = optional()
    valid_slots: tuple[int, int] | None = optional()
    meter: bytes | None = optional()

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Attestation(Record):
    """``reg/att/<cp>``: the DSO's pending attestation of a connection point."""

    applicant: bytes
    meter: bytes
    dso: bytes


@dataclass(frozen=True)
class Application(Record):
    """``reg/app/<addr>``: a pending application and the endorsements it has (sorted)."""

    alg: str
    pk: bytes
    cp: str
    roles: tuple[str, ...]
    name: str
    endorsers: tuple[bytes, ...]
    sponsor: bytes


# -- messages --------------------------------------------------------------------------

@dataclass(frozen=True)
class RotateKey(Record):
    """``registry/rotate_key``: replace the sender's signing key (crypto agility)."""

    alg: str
    pk: bytes
    pop: bytes


@dataclass(frozen=True)
class AttestCp(Record):
    """``registry/attest_cp`` (dso): ``cp`` exists, its meter has key (meter_alg,
    meter_pk), and its trading identity is ``applicant``."""

    cp: str
    applicant: bytes
    meter_alg: str
    meter_pk: bytes
    meter_pop: bytes


@dataclass(frozen=True)
class Apply(Record):
    """``registry/apply``: a sponsor submits an applicant's key and its proof of possession."""

    alg: str
    pk: bytes
    pop: bytes
    cp: str
    roles: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True)
class Endorse(Record):
    """``registry/endorse``: an existing member or validator endorses ``applicant``."""

    applicant: bytes


def parse_rotate_key(body: Body) -> RotateKey:
    """The new key: an ML-DSA key with its proof of possession, or a committee descriptor
    (``alg = "committee"``, checked here: rule ``bad-committee``) with an empty ``pop``.

    A committee's new members prove nothing themselves: the envelope already carries k
    signatures of the current committee, and k more of the new one would not fit the
    16 KiB transaction limit (3 ML-DSA-65 keys + 4 signatures). Listing a key one does not
    hold only grants its holder a share of the committee's own signing power.
    """
    require_fields(body, ROTATE_KEY, ("alg", "pk", "pop"))
    if body.get("alg") == COMMITTEE_ALG:
        pk = require_bytes(body, "pk", max_len=MAX_COMMITTEE_BYTES)
        parse_committee(pk)
        require_bytes(body, "pop", max_len=0)
        return RotateKey(COMMITTEE_ALG, pk, b"")
    return RotateKey(require_alg(body, "alg"), require_key(body, "pk"), require_sig(body, "pop"))


def parse_attest_cp(body: Body) -> AttestCp:
    require_fields(body, ATTEST_CP, ("cp", "applicant", "meter_alg", "meter_pk", "meter_pop"))
    return AttestCp(require_str(body, "cp", max_len=MAX_CP_LEN), require_addr(body, "applicant"),
                    require_alg(body, "meter_alg"), require_key(body, "meter_pk"),
                    require_sig(body, "meter_pop"))


def parse_apply(body: Body) -> Apply:
    require_fields(body, APPLY, ("alg", "pk", "pop", "cp", "roles"), optional=("name",))
    alg, pk = require_alg(body, "alg"), require_key(body, "pk")
    pop = require_sig(body, "pop")
    cp = require_str(body, "cp", max_len=MAX_CP_LEN)
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_LEN:
        raise InvalidBody(f"field 'name' must be a string of at most {MAX_NAME_LEN} chars")
    roles = body.get("roles")
    if (not isinstance(roles, list) or not roles or len(set(roles)) != len(roles)
            or not all(isinstance(r, str) and r in APPLICANT_ROLES for r in roles)):
        raise InvalidBody(f"field 'roles' must be a non-empty list from {sorted(APPLICANT_ROLES)}")
    return Apply(alg, pk, pop, cp, tuple(sorted(roles)), name)


def parse_endorse(body: Body) -> Endorse:
    require_fields(body, ENDORSE, ("applicant",))
    return Endorse(require_addr(body, "applicant"))
