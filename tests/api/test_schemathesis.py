"""Schemathesis against the served OpenAPI spec with **every** check (issue 18.6): the spec is
the contract. Each status a route answers is documented with its body, every input is
constrained in the schema, schema-invalid input is refused and schema-valid input accepted.

One exception is configured, for the two submission routes: a schema cannot say "a
transaction signed by a registered key", so schema-valid bytes that are not such a
transaction are refused with the documented 400/402/403/409 of the ledger rule they break
(``malformed-encoding``, ``bad-signature`` ...); that is acceptance of the request's shape,
not a refusal of valid data. Bounded in time: a fixed number of examples per operation.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import cbor2
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from gridledger.api import create_app
from gridledger.api.app import MAX_EVENTS
from gridledger.api.dashboard import MAX_SNAPSHOTS
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.service import EmbeddedService
from tests.conftest import make_chain


@schemathesis.serializer("application/cbor")
def _cbor(_ctx, value):  # type: ignore[no-untyped-def]
    # the spec says "binary": schemathesis generates bytes; send them as they are
    return value if isinstance(value, bytes) else cbor2.dumps(value)


CONFIG = SchemathesisConfig.from_str('''
seed = 20261130

# a body over its documented size is refused with 413 (Content Too Large), not 400
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

# the OpenADR VTN: a schema cannot say "a bearer token /auth/token issued" or "a client id
# enrolled on the ledger": schema-valid requests without them get the documented 401
[[operations]]
include-path-regex = "^/openadr3/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404"]

[[operations]]
include-path-regex = "^/v1/txs?$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "402", "403", "409", "429"]

''')

_chain = make_chain()
_net = EmbeddedNetwork(_chain.genesis, _chain.validators, Path(tempfile.mkdtemp()) / "ledger")
_svc = EmbeddedService(_net)
_svc.submit(_chain.transfer(0, 1, 5))
_svc.tick(900)
app = create_app(_svc)

schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec_under_every_check(case):
    if case.path == "/v1/events":
        limit = str((case.query or {}).get("limit", 0))
        if limit.isdigit() and int(limit) <= MAX_EVENTS:  # a valid limit: stop after one
            case.query = {**(case.query or {}), "limit": 1}
        # the block event the stream will carry, once it has subscribed
        threading.Timer(0.2, lambda: _svc.tick(_net.entry.app.slot_time + 1)).start()
    if case.path == "/v1/dashboard/events":  # a snapshot at connect: a valid limit stops at one
        limit = str((case.query or {}).get("limit", 0))
        if limit.isdigit() and int(limit) <= MAX_SNAPSHOTS:
            case.query = {**(case.query or {}), "limit": 1}
    response = case.call()
    case.validate_response(response)  # every built-in check, as configured above
    if response.status_code >= 400:
        body = response.json()
        assert body.get("rule") and "detail" in body, body
