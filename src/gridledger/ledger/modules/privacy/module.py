"""The privacy module object."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules import Module
from gridledger.ledger.modules.privacy import handlers as h
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.aggregation import (
    handle_aggregator_evidence,
    handle_partial,
)
from gridledger.ledger.modules.privacy.hooks import end_block
from gridledger.ledger.modules.privacy.roaming import (
    handle_roaming_authorise,
    handle_roaming_charge,
)
from gridledger.ledger.modules.privacy.types import parse_config
from gridledger.ledger.state import State

_MEMBERS = frozenset({"prosumer", "consumer"})


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    raw = genesis.get("privacy")
    if raw is not None:
        keeper.put_config(state, parse_config(raw))


def tickets_cover_pseudonyms(state: State) -> None:
    """Invariant tickets-cover-pseudonyms: registered <= certified <= tickets per epoch."""
    for epoch in keeper.open_epochs(state):
        r = keeper.get_epoch(state, epoch)
        if not r["registered"] <= r["certified"] <= r["tickets"]:
            raise InvariantViolation(f"tickets-cover-pseudonyms: epoch {epoch} has {r}")


MODULE = Module(
    name="privacy",
    version=1,
    handlers={"privacy/join": h.handle_join,
              "privacy/certify": h.handle_certify,
              "privacy/register": h.handle_register,
              "privacy/reading": h.handle_reading,
              "privacy/claim": h.handle_claim,
              "privacy/request_opening": h.handle_request_opening,
              "privacy/escrow": h.handle_escrow,
              "privacy/release": h.handle_release,
              "privacy/partial": handle_partial,
              "privacy/aggregator_evidence": handle_aggregator_evidence,
              "privacy/roaming_authorise": handle_roaming_authorise,
              "privacy/roaming_charge": handle_roaming_charge},
    roles={"privacy/join": _MEMBERS, "privacy/claim": _MEMBERS,
           "privacy/certify": frozenset({"trustee"}), "privacy/release": frozenset({"trustee"}),
           "privacy/reading": frozenset({"pseudonym"}),
           "privacy/partial": frozenset({"aggregator"}),
           "privacy/roaming_authorise": frozenset({"dso"}),
           "privacy/roaming_charge": frozenset({"dso"})},
    init_genesis=init_genesis,
    end_block=end_block,
    invariants=(tickets_cover_pseudonyms,),
)
