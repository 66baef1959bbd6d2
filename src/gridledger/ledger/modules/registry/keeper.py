"""The only code that touches ``reg/`` keys.

Typed records (``Participant``, ``Attestation``, ``Application``) in and out. The ``get_*``
functions returning plain maps are the pre-typed interface, kept while modules that read
participants (market, metering, privacy) convert; new code uses ``participant``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import cbor2

from gridledger.errors import UnknownSender
from gridledger.ledger import codec
from gridledger.ledger.execute import forget_nonce
from gridledger.ledger.modules.registry.errors import (
    CpHasMeter,
    CpTaken,
    MeterKeyRegistered,
    PseudonymSlot,
)
from gridledger.ledger.modules.registry.types import (
    PSEUDO_CP as PSEUDO_CP,  # re-exported
)
from gridledger.ledger.modules.registry.types import ROLES as ROLES  # re-exported
from gridledger.ledger.modules.registry.types import (
    Application,
    Attestation,
    Participant,
    pseudonym_address,
    pseudonym_cp,
)
from gridledger.ledger.state import State
from gridledger.ledger.valset import (
    KeyRegistered,
    LastValidator,
    UnknownValidator,
    ValidatorExists,
)
from gridledger.ledger.valset import keys_hash as keys_hash  # re-exported
from gridledger.memo import Memo

P = b"reg/p/"
CP = b"reg/cp/"
METER = b"reg/meter/"   # cp -> the meter identity bound to it
ATT = b"reg/att/"       # cp -> pending DSO attestation
APP = b"reg/app/"       # addr -> pending application
VALIDATORS = b"reg/validators"
PSEUDONYM_ROLES = ("consumer", "prosumer", "pseudonym")


# -- participants --------------------------------------------------------------------

_DECODED_MAX = 8192
_DECODED: Memo[bytes, Participant] = Memo(_DECODED_MAX)  # aged by block time
"""~3 KB an entry (a public key, decoded, and its raw record, which the memo keeps alive
after the state drops it): a slot's senders at 1,000 members fit; 16,384 took ~3 days to
fill at 30 members, 48 MiB more RSS day by day (issue 17)."""


def _participant(raw: bytes) -> Participant:
    # a pure function of the stored bytes (records are immutable), so decoded once
    rec = _DECODED.get(raw)
    if rec is None:
        rec = Participant.from_obj(cbor2.loads(raw))
        _remember(raw, rec)
    return rec


def _remember(raw: bytes, rec: Participant) -> None:
    _DECODED.put(raw, rec)


def _write(state: State, key: bytes, rec: Participant, decoded: bool) -> None:
    """Store ``rec`` under ``key``. ``decoded``: ``rec`` is what its bytes decode to (made
    by ``from_obj``, or built with tuples as ``from_obj`` makes them; tested), so it is
    remembered as their decoding — the block's invariants and later reads find it decoded
    (a registration block writes ~5,800 participant records)."""
    raw = codec.encode(rec.to_obj())
    state.set(key, raw)
    if decoded:
        _remember(raw, rec)


def decode_participant(raw: bytes) -> Participant:
    """A stored participant record's bytes, decoded (memoised)."""
    return _participant(raw)


def participant(state: State, addr: bytes) -> Participant | None:
    """The participant record of ``addr`` (None: not registered)."""
    raw = state.get(P + addr)
    return None if raw is None else _participant(raw)


def signer(state: State, addr: bytes) -> Participant | None:
    """``Accounts.signer`` for the envelope check: the record whose key signs for ``addr``."""
    return participant(state, addr)


def has_role(state: State, addr: bytes, role: str) -> bool:
    p = participant(state, addr)
    return p is not None and role in p.roles


def put_participant(state: State, addr: bytes, record: Participant | Mapping[str, Any]) -> None:
    """Write a participant record and claim its connection point; ``cp-taken`` if the cp
    belongs to another identity."""
    rec = record if isinstance(record, Participant) else Participant.from_obj(record)
    if rec.cp:
        holder = cp_holder(state, rec.cp)
        if holder is not None and holder != addr:
            raise CpTaken(f"connection point {rec.cp!r} already has a trading identity")
        state.set_obj(CP + rec.cp.encode(), addr)
    _write(state, P + addr, rec, decoded=not isinstance(record, Participant))


def get_participant(state: State, addr: bytes) -> dict[str, Any] | None:
    """The participant record as a map (pre-typed interface; use ``participant``)."""
    p = participant(state, addr)
    return None if p is None else p.to_obj()


def require_participant(state: State, addr: bytes) -> dict[str, Any]:
    """As ``get_participant``; ``unknown-sender`` if absent (pre-typed interface)."""
    p = get_participant(state, addr)
    if p is None:
        raise UnknownSender(f"{addr.hex()[:16]}… is not a registered participant")
    return p


def cp_holder(state: State, cp: str) -> bytes | None:
    """The trading identity holding connection point ``cp``."""
    v: bytes | None = state.get_obj(CP + cp.encode())
    if v is None and cp.startswith(PSEUDO_CP):
        found = pseudonym_of_cp(state, cp)
        return None if found is None else found[0]
    return v


def pseudonym_of_cp(state: State, cp: str) -> tuple[bytes, Participant] | None:
    """The pseudonym whose stand-in connection point is ``cp`` (``types.pseudonym_cp``),
    with its record; None if no registered pseudonym holds it. A pseudonym's cp and meter
    are named by its own record, not by index entries (``put_pseudonym``)."""
    addr = pseudonym_address(cp)
    p = None if addr is None else participant(state, addr)
    if p is None or p.cp != cp or "pseudonym" not in p.roles:
        return None
    assert addr is not None
    return addr, p


def cp_of(state: State, addr: bytes) -> str | None:
    """The connection point a trading identity holds (None for identities without one)."""
    p = participant(state, addr)
    return None if p is None else p.cp


def require_in_slot(state: State, addr: bytes, slot: int) -> None:
    """``addr`` may act in ``slot``: always, unless it is a pseudonym whose certificate
    names other slots (``valid_slots``).

    Raises:
        PseudonymSlot: ``slot`` is outside the pseudonym's ``[first, last]``.
    """
    p = participant(state, addr)
    valid = p.valid_slots if p is not None else None
    if valid is not None and not valid[0] <= slot <= valid[1]:
        raise PseudonymSlot(f"this pseudonym acts only in slots {valid[0]}..{valid[1]}")


def retire_pseudonym(state: State, addr: bytes) -> bool:
    """Forget a pseudonym whose epoch has paid out: its record, its stand-in connection
    point, the meter identity (reading key) bound to that cp, and both nonces. Afterwards
    it signs nothing (``unknown-sender``) and receives no transfer (``unknown-recipient``).
    Returns False (nothing changed) if ``addr`` is not a registered pseudonym."""
    p = participant(state, addr)
    if p is None or "pseudonym" not in p.roles or not p.cp:
        return False
    meter = meter_of_cp(state, p.cp)
    if meter is not None:
        state.delete(P + meter)
        forget_nonce(state, meter)
        state.delete(METER + p.cp.encode())   # bound through the index (not put_pseudonym)
    state.delete(CP + p.cp.encode())
    state.delete(P + addr)
    forget_nonce(state, addr)
    return True


# -- validator set -------------------------------------------------------------------

def validator_set(state: State) -> list[bytes]:
    """Addresses of the active validator set, in vote-index order."""
    return list(state.get_obj(VALIDATORS, []))


def set_validators(state: State, addrs: list[bytes]) -> None:
    state.set_obj(VALIDATORS, addrs)


def validator_keys(state: State) -> list[tuple[str, bytes]]:
    """(alg, public key) of each validator, in certificate order."""
    out = []
    for a in validator_set(state):
        p = participant(state, a)
        if p is None:
            raise UnknownSender(f"validator {a.hex()[:16]}… is not a registered participant")
        out.append((p.alg, p.pk))
    return out


def validator_set_hash(state: State) -> bytes:
    return keys_hash(validator_keys(state))


def validator_problem(state: State, addr: bytes, alg: str,
                      pk: bytes) -> ValidatorExists | KeyRegistered | None:
    """Why ``(alg, pk)`` at ``addr`` cannot join the active set now (None: it can)."""
    if addr in validator_set(state):
        return ValidatorExists("this key is already a validator")
    if any(vpk == pk for _a, vpk in validator_keys(state)):
        return ValidatorExists("another validator uses this public key")
    p = participant(state, addr)
    if p is not None and (p.alg != alg or p.pk != pk or "meter" in p.roles):
        return KeyRegistered("this key's address belongs to another (rotated or meter) identity")
    return None


def add_validator(state: State, addr: bytes, alg: str, pk: bytes, name: str) -> None:
    """Append ``addr`` to the active set (certificate order), registering it if needed.

    An existing participant keeps its record and gains the ``validator`` role. Raises the
    rule ``validator_problem`` finds.
    """
    problem = validator_problem(state, addr, alg, pk)
    if problem is not None:
        raise problem
    p = participant(state, addr)
    if p is None:
        p = Participant(alg, pk, ("validator",), None, name)
    else:
        p = dataclasses.replace(p, roles=tuple(sorted(set(p.roles) | {"validator"})))
    state.set_obj(P + addr, p.to_obj())
    set_validators(state, [*validator_set(state), addr])


def remove_validator(state: State, addr: bytes) -> None:
    """Drop ``addr`` from the active set and its ``validator`` role (it stays a participant:
    its balance and history remain, it can no longer vote, propose or endorse as validator).
    Rules ``unknown-validator``, ``last-validator``.
    """
    current = validator_set(state)
    if addr not in current:
        raise UnknownValidator("not in the active validator set")
    if len(current) == 1:
        raise LastValidator("the chain cannot lose its last validator")
    set_validators(state, [a for a in current if a != addr])
    p = participant(state, addr)
    if p is not None:
        roles = tuple(r for r in p.roles if r != "validator")
        state.set_obj(P + addr, dataclasses.replace(p, roles=roles).to_obj())


def rotate_key(state: State, addr: bytes, alg: str, pk: bytes) -> None:
    """``addr`` signs with (alg, pk) from now on (its identity and address stay)."""
    p = participant(state, addr)
    if p is None:
        raise UnknownSender(f"{addr.hex()[:16]}… is not a registered participant")
    state.set_obj(P + addr, dataclasses.replace(p, alg=alg, pk=pk).to_obj())


# -- meters and onboarding ------------------------------------------------------------

def meter_of_cp(state: State, cp: str) -> bytes | None:
    """The meter identity registered for connection point ``cp``."""
    v: bytes | None = state.get_obj(METER + cp.encode())
    if v is None and cp.startswith(PSEUDO_CP):
        found = pseudonym_of_cp(state, cp)
        return None if found is None else found[1].meter
    return v


def meters(state: State) -> list[tuple[str, bytes]]:
    """(cp, meter address) of every registered meter, by cp."""
    return [(k[len(METER):].decode(), v) for k, v in state.items_with_prefix(METER)]


def cps(state: State) -> list[tuple[str, bytes]]:
    """(cp, holder address) of every held connection point, by cp."""
    return [(k[len(CP):].decode(), v) for k, v in state.items_with_prefix(CP)]


def put_meter(state: State, addr: bytes, alg: str, pk: bytes, cp: str) -> None:
    """Register a meter identity (role ``meter``) bound to ``cp``; rules ``cp-has-meter``,
    ``meter-key-registered``."""
    if meter_of_cp(state, cp) is not None:
        raise CpHasMeter(f"connection point {cp!r} already has a meter")
    if participant(state, addr) is not None:
        raise MeterKeyRegistered("this meter key is already registered")
    rec = Participant(alg, pk, ("meter",), None, f"meter:{cp}", meter_of=cp)
    _write(state, P + addr, rec, decoded=True)
    state.set_obj(METER + cp.encode(), addr)


def put_pseudonym(state: State, addr: bytes, alg: str, pk: bytes, cp: str,
                  valid_slots: tuple[int, int], meter: bytes, meter_alg: str,
                  meter_pk: bytes) -> None:
    """Register a pseudonym (roles consumer, prosumer, pseudonym) holding the stand-in
    connection point ``cp`` (``types.pseudonym_cp`` of its address) in
    ``valid_slots``, and its meter identity ``meter`` (role ``meter``) bound to ``cp``.
    The cp and its meter are found through the pseudonym's record (``pseudonym_of_cp``),
    not the cp and meter indexes. Rules ``cp-taken``, ``cp-has-meter``,
    ``meter-key-registered``; ``ValueError`` if ``cp`` is not ``addr``'s stand-in cp."""
    if cp != pseudonym_cp(addr):
        raise ValueError(f"{cp!r} is not the stand-in connection point of this pseudonym")
    holder = cp_holder(state, cp)
    if holder is not None and holder != addr:
        raise CpTaken(f"connection point {cp!r} already has a trading identity")
    if meter_of_cp(state, cp) is not None:
        raise CpHasMeter(f"connection point {cp!r} already has a meter")
    if participant(state, meter) is not None:
        raise MeterKeyRegistered("this meter key is already registered")
    _write(state, P + meter, Participant(meter_alg, meter_pk, ("meter",), None,
                                         f"meter:{cp}", meter_of=cp), decoded=True)
    _write(state, P + addr, Participant(alg, pk, PSEUDONYM_ROLES, cp, "",
                                        valid_slots=valid_slots, meter=meter), decoded=True)


def attestation(state: State, cp: str) -> Attestation | None:
    obj = state.get_obj(ATT + cp.encode())
    return None if obj is None else Attestation.from_obj(obj)


def put_attestation(state: State, cp: str, att: Attestation) -> None:
    state.set_obj(ATT + cp.encode(), att.to_obj())


def application(state: State, addr: bytes) -> Application | None:
    obj = state.get_obj(APP + addr)
    return None if obj is None else Application.from_obj(obj)


def put_application(state: State, addr: bytes, app: Application) -> None:
    state.set_obj(APP + addr, app.to_obj())


def admit(state: State, addr: bytes, app: Application) -> None:
    """Turn an application into a participant and drop the pending records."""
    put_participant(state, addr, Participant(app.alg, app.pk, app.roles, app.cp, app.name))
    state.delete(APP + addr)
    state.delete(ATT + app.cp.encode())
