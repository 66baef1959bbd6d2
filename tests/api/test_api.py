"""HTTP API over the embedded network: submissions, rejections named, queries, proofs, SSE."""

from __future__ import annotations

import cbor2
import pytest
from fastapi.testclient import TestClient

from gridledger.api import create_app
from gridledger.node.service import EmbeddedService
from gridledger.client import ApiRejected, Client
from gridledger.errors import RejectedTx
from gridledger.ledger import codec
from gridledger.ledger.state import MembershipProof, verify_membership
from gridledger.node.embedded import EmbeddedNetwork
from tests.conftest import make_chain


@pytest.fixture
def env(tmp_path):
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    svc = EmbeddedService(net)
    http = TestClient(create_app(svc))
    yield chain, svc, http
    net.close()


def test_submit_commit_and_query(env):
    chain, svc, http = env
    raw = chain.transfer(0, 1, 1234)
    r = http.post("/v1/tx", json={"tx": raw.hex()})
    assert r.status_code == 202, r.text
    h = r.json()["tx_hash"]
    assert http.get(f"/v1/tx/{h}").status_code == 404
    svc.tick(900)
    rec = http.get(f"/v1/tx/{h}").json()
    assert rec["height"] == 1 and rec["receipt"]["ok"] is True
    acct = http.get(f"/v1/accounts/{chain.users[1].address.hex()}").json()
    assert acct["balance_micro"] == 1_001_234
    blk = http.get("/v1/blocks/1").json()
    assert blk["txs"] == [h] and blk["header"]["height"] == 1
    cert = http.get("/v1/blocks/1/certificate").json()
    assert len(cert["votes"]) >= 3
    st = http.get("/v1/status").json()
    assert st["height"] == 1 and st["chain_id"] == "test-chain"
    assert acct["height"] == 1  # every read names the certified height it is from


def test_proof_from_api_verifies_as_a_light_client(env):
    chain, svc, http = env
    key = b"bank/bal/" + chain.users[2].address
    body = http.get(f"/v1/proofs/{key.hex()}").json()
    proof = MembershipProof.from_json(body["proof"])
    assert verify_membership(bytes.fromhex(body["state_root"]), proof)
    assert cbor2.loads(proof.value) == 1_000_000
    assert body["state_root"] == http.get("/v1/status").json()["state_root"]


@pytest.mark.parametrize("make, status, rule", [
    (lambda c: b"\xff\x00", 400, "malformed-encoding"),
    (lambda c: c.transfer(0, 1, 5, chain_id="elsewhere"), 400, "wrong-chain"),
    (lambda c: c.transfer(0, 1, 5, nonce=9), 409, "nonce-gap"),
    (lambda c: b"\x00" * 17_000, 413, "oversize"),
])
def test_rejections_are_4xx_naming_the_rule(env, make, status, rule):
    chain, _svc, http = env
    r = http.post("/v1/tx", content=make(chain), headers={"content-type": "application/cbor"})
    assert r.status_code == status and r.json()["rule"] == rule, r.text


def test_tampered_signature_and_bad_json(env):
    chain, _svc, http = env
    obj = cbor2.loads(chain.transfer(0, 1, 5))
    obj["body"]["amount_micro"] = 99
    r = http.post("/v1/tx", json={"tx": codec.encode(obj).hex()})
    assert r.status_code == 403 and r.json()["rule"] == "bad-signature"
    # requests that do not match the schema: 422, rule bad-request
    for bad in ('{"tx": "zz"}', "not json", '{"nope": 1}', '{"tx": ""}', '{"tx": "00", "x": 1}'):
        r = http.post("/v1/tx", content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["rule"] == "bad-request", bad
    r = http.post("/v1/tx", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["rule"] == "unsupported-media-type"
    for path in ("/v1/accounts/abcd", "/v1/accounts/0", "/v1/blocks/0", "/v1/tx/zz",
                 "/v1/events?limit=" + "9" * 40, f"/v1/state/{'00' * 300}"):
        r = http.get(path)
        assert r.status_code == 422 and r.json()["rule"] == "bad-request", path
    assert http.get("/v1/blocks/99").json()["rule"] == "unknown-block"


def test_a_batch_lists_each_rejection_whatever_its_length(env):
    """A batch of one refused transaction was a plain-text 500 (``admit_many`` raised the
    rejection of a one-item batch instead of listing it); bytes after the batch's array
    were ignored. Every answer names the rule, and nothing is admitted."""
    chain, svc, http = env
    cbor = {"content-type": "application/cbor"}
    for batch in ([chain.transfer(0, 1, 5, nonce=9)],
                  [chain.transfer(0, 1, 5, nonce=9), chain.transfer(0, 1, 5, nonce=8)]):
        r = http.post("/v1/txs", content=cbor2.dumps(batch), headers=cbor)
        assert r.status_code == 200, r.text
        assert [x["rule"] for x in r.json()["results"]] == ["nonce-gap"] * len(batch)
    with pytest.raises(RejectedTx):  # the single submission still raises its rule
        svc.net.mempool.admit(chain.transfer(0, 1, 5, nonce=9), 0.0)
    r = http.post("/v1/txs", content=cbor2.dumps([chain.transfer(0, 1, 5)]) + b"\x00",
                  headers=cbor)
    assert r.status_code == 400 and r.json()["rule"] == "bad-request", r.text
    assert "1 bytes follow" in r.json()["detail"]
    assert len(svc.net.mempool) == 0


def test_a_nonce_taken_by_a_pending_transaction_says_so(env):
    """A second `tx transfer` while the first waited for a quorum read the account's nonce
    and was told "nonce 2 already used (next is 3)" while the account still said 2."""
    chain, svc, http = env
    cbor = {"content-type": "application/cbor"}
    first = chain.transfer(0, 1, 5, nonce=0)
    assert http.post("/v1/tx", content=first, headers=cbor).status_code == 202
    r = http.post("/v1/tx", content=chain.transfer(0, 1, 6, nonce=0), headers=cbor)
    assert r.status_code == 409 and r.json()["rule"] == "replayed-nonce", r.text
    assert "waiting to be committed" in r.json()["detail"]
    assert "the chain's next is 0, the next free here is 1" in r.json()["detail"]
    svc.tick(900)
    r = http.post("/v1/tx", content=chain.transfer(0, 1, 7, nonce=0), headers=cbor)  # committed
    assert r.json()["detail"] == "nonce 0 already used (next is 1)", r.text


def test_a_defect_answers_500_naming_the_rule(tmp_path):
    """An exception no route expects is a JSON ``internal-error``, not starlette's text."""
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    svc = EmbeddedService(net)

    def broken() -> dict[str, object]:
        raise ZeroDivisionError("boom")

    svc.status = broken  # type: ignore[method-assign]
    try:
        http = TestClient(create_app(svc), raise_server_exceptions=False)
        r = http.get("/v1/status")
        assert r.status_code == 500
        assert r.json()["rule"] == "internal-error" and "ZeroDivisionError" in r.json()["detail"]
    finally:
        net.close()


def test_python_client_signs_submits_and_waits(env):
    chain, svc, http = env
    client = Client("http://test", chain.users[3], http=http)
    acc = client.transfer(chain.users[4].address, 77)
    svc.tick(900)
    assert client.receipt(acc["tx_hash"])["receipt"]["ok"]
    with pytest.raises(ApiRejected) as ei:
        client.submit_raw(chain.transfer(3, 4, 1, nonce=0))
    assert ei.value.rule == "replayed-nonce" and ei.value.status == 409


def test_openapi_spec_is_served(env):
    _c, _s, http = env
    spec = http.get("/openapi.json").json()
    assert "/v1/tx" in spec["paths"] and "/v1/proofs/{key}" in spec["paths"]


def test_event_stream_delivers_block_events(env):
    chain, svc, http = env
    import threading

    def later():
        import time

        time.sleep(0.3)
        svc.submit(chain.transfer(0, 1, 5))
        svc.tick(900)

    threading.Thread(target=later).start()
    with http.stream("GET", "/v1/events?limit=1") as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[0] == "event: block"
    import json

    ev = json.loads(lines[1][len("data: "):])
    assert ev["height"] == 1 and ev["txs"] == 1 and ev["ok"] == 1


def test_absent_key_gets_an_absence_proof(env):
    from gridledger.ledger.state import AbsenceProof, verify_absence

    chain, svc, http = env
    key = b"bank/bal/" + b"\x07" * 32
    body = http.get(f"/v1/proofs/{key.hex()}").json()
    assert body["present"] is False and body["proof"] is None
    assert verify_absence(bytes.fromhex(body["state_root"]), AbsenceProof.from_json(body["absence"]))
    st = http.get("/v1/status").json()
    assert body["height"] == st["height"] and body["state_root"] == st["state_root"]


def test_every_rule_of_the_chain_maps_to_one_documented_status(env):
    """Issue 12.2 / 18.6: each rule in the chain-wide registry has exactly one HTTP status
    (its category's), and /v1/tx documents every one of those statuses."""
    from gridledger.api.app import status_of
    from gridledger.ledger.rules import CORE_RULES, category_of

    chain, svc, http = env
    rules = svc.rules()
    names = [r.name for r in rules]
    assert len(names) == len(set(names)) and {c.rule for c in CORE_RULES} <= set(names)
    spec = http.get("/openapi.json").json()
    documented = {int(s) for s in spec["paths"]["/v1/tx"]["post"]["responses"]}
    for r in rules:
        assert r.category is category_of(r.error)
        assert status_of(r) in documented, (r.name, status_of(r))
    assert len({(r.name, status_of(r)) for r in rules}) == len(rules)


def test_module_views_are_served_at_the_certified_height(env):
    chain, svc, http = env
    svc.submit(chain.transfer(0, 1, 10))
    svc.tick(900)
    money = http.get("/v1/views/bank/money").json()
    assert money["height"] == 1 and money["view"] == "bank/money"
    assert money["value"]["total_micro"] == money["value"]["supply_micro"]
    acct = http.get(f"/v1/views/bank/account/{chain.users[1].address.hex()}").json()
    assert acct["value"]["balance_micro"] == 1_000_010
    r = http.get("/v1/views/nope/thing")
    assert r.status_code == 404 and r.json()["rule"] == "unknown-view"
    assert http.get("/v1/views/bank/account/zz").status_code == 404


def test_docs_pages_load_nothing_from_outside(env):
    """Issue 20.5: /docs (Swagger UI) and /redoc were blank offline (scripts from a CDN).
    Every script, style and icon they name is served by the node itself, from the
    installed package."""
    import re

    _chain, _svc, http = env
    for page in ("/docs", "/redoc"):
        r = http.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""", r.text)
        refs += re.findall(r"""url\s*:\s*['"]([^'"]+)['"]""", r.text)
        assert refs, page
        assert not [u for u in refs if "//" in u], (page, refs)
        for u in refs:
            got = http.get(u)
            assert got.status_code == 200 and got.content, (page, u)
    js = http.get("/docs-assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in js.text and "javascript" in js.headers["content-type"]
