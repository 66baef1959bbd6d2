"""The registry module object."""

from __future__ import annotations

from gridledger.ledger.module import Module
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.views import VIEWS
from gridledger.ledger.modules.registry.handlers import (
    handle_apply,
    handle_attest_cp,
    handle_endorse,
    handle_rotate_key,
    init_genesis,
)
from gridledger.ledger.modules.registry.invariants import (
    cp_unique,
    meter_unique,
    validator_set_consistent,
)
from gridledger.ledger.modules.registry.types import ENDORSER_ROLES, SPONSOR_ROLES

MODULE = Module(
    name="registry",
    version=2,
    handlers={"registry/rotate_key": handle_rotate_key,
              "registry/attest_cp": handle_attest_cp,
              "registry/apply": handle_apply,
              "registry/endorse": handle_endorse},
    roles={"registry/attest_cp": frozenset({"dso"}),
           "registry/apply": SPONSOR_ROLES,
           "registry/endorse": ENDORSER_ROLES},
    init_genesis=init_genesis,
    invariants=(cp_unique, meter_unique, validator_set_consistent),
    accounts=keeper,
    views=VIEWS,
)
