"""Schemathesis against the served OpenAPI spec: no 5xx, and every 4xx names the problem."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cbor2
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from gridledger.api import create_app
from gridledger.node.service import EmbeddedService
from gridledger.node.embedded import EmbeddedNetwork
from tests.conftest import make_chain

@schemathesis.serializer("application/cbor")
def _cbor(_ctx, value):  # type: ignore[no-untyped-def]
    # the spec says "binary": schemathesis generates bytes; send them as they are
    return value if isinstance(value, bytes) else cbor2.dumps(value)


_chain = make_chain()
_net = EmbeddedNetwork(_chain.genesis, _chain.validators, Path(tempfile.mkdtemp()) / "ledger")
_svc = EmbeddedService(_net)
_svc.submit(_chain.transfer(0, 1, 5))
_svc.tick(900)
app = create_app(_svc)

# the event stream is infinite by design; everything else is fuzzed
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/v1/events")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_names_every_rejection(case):
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:
        body = response.json()
        assert body.get("rule") and "detail" in body, body
