"""Registry read-only views, served by ``Application.query("registry/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.crypto.sig import address_of
from gridledger.ledger.committee import COMMITTEE_ALG, parse_committee
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.state import State


def participant(state: State, arg: str) -> dict[str, Any] | None:
    """``registry/participant/<addr hex>``: the participant record as stored (None: not
    registered)."""
    p = keeper.participant(state, bytes.fromhex(arg))
    return None if p is None else p.to_obj()


def validator_keys(state: State, _arg: str) -> list[list[Any]]:
    """``registry/validator_keys``: ``[[alg, pk], ...]`` of the active set, vote-index order."""
    return [[alg, pk] for alg, pk in keeper.validator_keys(state)]


def committee(state: State, arg: str) -> dict[str, Any] | None:
    """``registry/committee/<addr hex>``: a k-of-n committee identity's ``{threshold,
    members: [{index, alg, pk, address}]}`` (None: not registered or not a committee)."""
    p = keeper.participant(state, bytes.fromhex(arg))
    if p is None or p.alg != COMMITTEE_ALG:
        return None
    c = parse_committee(p.pk)
    return {"threshold": c.threshold,
            "members": [{"index": i, "alg": a, "pk": pk, "address": address_of(a, pk)}
                        for i, (a, pk) in enumerate(c.members)]}


VIEWS = {"participant": participant, "validator_keys": validator_keys, "committee": committee}
