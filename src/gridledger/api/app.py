"""The GridLedger HTTP API. The OpenAPI spec it serves is the contract.

* Every read is answered from the node's last certified state and names its ``height``.
* Every input is bounded in the schema (path patterns and lengths, integer ranges, body
  sizes), and bodies are limited while they stream (``api.limits``).
* Every status a route can answer is documented with its body: a rejection is always
  ``{"rule": ..., "detail": ...}``, the rule being the stable name a receipt of a failed
  transaction carries. 413 too large, 415 unsupported media type, 422 a request that does
  not match the schema, 404 unknown objects; a transaction refused by the ledger's rules
  gets the status of its rule's category (``STATUS_BY_CATEGORY``).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import cbor2
from fastapi import HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridledger.api.dashboard import GridSource, RunPanel, add_dashboard
from gridledger.api.limits import BodyLimit
from gridledger.api.openadr import BODY_LIMITS as OPENADR_BODY_LIMITS
from gridledger.api.openadr import openadr_router
from gridledger.api.service import NodeService
from gridledger.crypto.hashing import sha3_256
from gridledger.errors import (
    BadSignature,
    ClassicalKey,
    CommitteeSignature,
    CommitteeThreshold,
    DuplicateSigner,
    InsufficientFunds,
    InternalError,
    InvalidBody,
    MalformedEncoding,
    MempoolFull,
    NonceGap,
    Oversize,
    QuotaExceeded,
    RejectedTx,
    ReplayedNonce,
    Unauthorized,
    UnknownAlgorithm,
    UnknownKind,
    UnknownMember,
    UnknownSender,
    WrongChain,
)
from gridledger.ledger.rules import Rule, category_of
from gridledger.ledger.state import MembershipProof
from gridledger.ledger.tx import MAX_TX_BYTES, decode_tx

STATUS_BY_CATEGORY: dict[type[RejectedTx], int] = {
    Oversize: 413, MalformedEncoding: 400, WrongChain: 400, UnknownKind: 400,
    UnknownAlgorithm: 400, InvalidBody: 400, ClassicalKey: 403, UnknownSender: 403,
    BadSignature: 403, Unauthorized: 403, InsufficientFunds: 402, ReplayedNonce: 409,
    NonceGap: 409, QuotaExceeded: 429, MempoolFull: 429, InternalError: 500,
    CommitteeSignature: 403, UnknownMember: 403, DuplicateSigner: 403, CommitteeThreshold: 403,
}
"""One HTTP status per rule category (``ledger.rules``): every rule of the chain gets the
status of its category — 400 the request's content is wrong, 402 money, 403 who may do it,
409 nonce order, 413 size, 429 this node's quotas, 500 a defect of ours (``internal-error``)."""


def status_of(rule: Rule) -> int:
    """The HTTP status of a rejection by ``rule`` (KeyError: a category without one)."""
    return STATUS_BY_CATEGORY[rule.category]


def rule_statuses(rules: Sequence[Rule]) -> dict[str, int]:
    """Rule name -> status, for every rule of the chain."""
    return {r.name: status_of(r) for r in rules}


MAX_BATCH_TXS = 1000
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_JSON_TX_BYTES = 2 * MAX_TX_BYTES + 64
MAX_EVENT_STREAMS = 32
MAX_EVENTS = 100_000
HEX64 = "^[0-9a-fA-F]{64}$"
MAX_KEY_BYTES = 256


# -- bodies ------------------------------------------------------------------------------------
class Rejection(BaseModel):
    """Every 4xx/5xx body: the rule broken, and what was wrong."""

    rule: str
    detail: str


class SubmitJson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tx: str = Field(description="The signed transaction's canonical CBOR bytes, hex encoded.",
                    min_length=2, max_length=2 * MAX_TX_BYTES, pattern="^([0-9a-fA-F]{2})+$")


class Accepted(BaseModel):
    tx_hash: str = Field(description="Transaction id (hash of the signed content).")
    sender: str
    nonce: int
    kind: str


class BatchItem(BaseModel):
    """Per submitted transaction: its id, or the rule that refused it."""

    tx_hash: str | None = None
    rule: str | None = None
    detail: str | None = None


class BatchResults(BaseModel):
    results: list[BatchItem]


class Status(BaseModel):
    model_config = ConfigDict(extra="allow")
    chain_id: str
    height: int = Field(description="Last certified height; every value here is from it.")
    state_root: str
    block_hash: str
    slot_time: int
    validators: int
    validator_index: int
    vote_index: int | None
    mempool: int
    offenders: dict[str, list[str]]


class Certified(BaseModel):
    """A value read from the certified state at ``height``."""

    model_config = ConfigDict(extra="allow")
    height: int


class ViewValue(BaseModel):
    height: int
    view: str
    value: Any


class Account(BaseModel):
    height: int
    address: str
    balance_micro: int
    locked_micro: int
    nonce: int
    participant: dict[str, Any]


class StateValue(BaseModel):
    height: int
    key: str
    value: Any


class ProofJson(BaseModel):
    key: str
    value: str
    bucket: int
    index: int
    bucket_size: int
    bucket_leaves: list[str] = Field(description="The bucket's leaf hashes in key order.")
    top_path: list[str]


class NeighbourJson(BaseModel):
    key: str
    value: str
    index: int


class AbsenceJson(BaseModel):
    key: str
    bucket: int
    bucket_size: int
    left: NeighbourJson | None
    right: NeighbourJson | None
    bucket_leaves: list[str] = Field(description="The bucket's leaf hashes in key order.")
    top_path: list[str]


class Proof(BaseModel):
    """``present``: a membership ``proof`` (``verify_membership``); otherwise an ``absence``
    proof (``verify_absence``) — both against ``state_root``, the root of block ``height``."""

    height: int
    state_root: str = Field(description="The state root of block `height` (certified).")
    present: bool
    proof: ProofJson | None
    absence: AbsenceJson | None


class HeaderJson(BaseModel):
    chain_id: str
    height: int
    prev_hash: str
    slot_time: int
    tx_root: str
    state_root: str
    receipts_root: str
    validator_set_hash: str


class Block(BaseModel):
    header: HeaderJson
    hash: str
    txs: list[str]
    receipts: dict[str, Any]


class CertVote(BaseModel):
    validator: int
    sig: str


class CertificateJson(BaseModel):
    height: int
    header_hash: str
    votes: list[CertVote]


class BlockEvent(BaseModel):
    """The ``data`` of an event-stream ``block`` event: a finalized (certified) block."""

    type: str = Field(pattern="^block$")
    height: int
    hash: str
    slot_time: int
    txs: int
    ok: int
    events: list[dict[str, Any]]
    rejected: dict[str, int] = Field(default_factory=dict,
                                     description="Failed transactions of the block, by rule")
    alerts: list[dict[str, Any]] = Field(default_factory=list, description=(
        "Transactions' alert events: reading_flagged, meter_quarantined, reputation losses"))


SSE_SCHEMA = {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string", "enum": ["block"]},
    "data": {"type": "string", "contentMediaType": "application/json",
             "contentSchema": BlockEvent.model_json_schema()}}}


class TxReceipt(BaseModel):
    height: int
    receipt: dict[str, Any]


# -- parameters ------------------------------------------------------------------------------
Height = Annotated[int, Path(ge=1, le=2**62, description="Block height (blocks start at 1)")]
Address = Annotated[str, Path(pattern=HEX64, description="32-byte address, hex")]
TxId = Annotated[str, Path(pattern=HEX64, description="32-byte transaction id, hex")]
Name = Annotated[str, Path(pattern="^[a-z][a-z0-9_]{0,31}$", description="Module or view name")]
ViewArg = Annotated[str, Path(pattern="^[0-9A-Za-z:_-]{1,128}$", description="The view's argument")]
StateKey = Annotated[str, Path(min_length=2, max_length=2 * MAX_KEY_BYTES,
                               pattern=f"^([0-9a-fA-F]{{2}}){{1,{MAX_KEY_BYTES}}}$",
                               description="State key, hex")]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _reject(status: int, rule: str, detail: str) -> HTTPException:
    return HTTPException(status, {"rule": rule, "detail": detail})


def _docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the rejection statuses a route can answer."""
    return {s: {"model": Rejection} for s in statuses}


def _tx_id(raw: bytes) -> str:
    """A block entry's transaction id (``Tx.id``); the wire hash if it does not decode."""
    try:
        return decode_tx(raw).id.hex()
    except RejectedTx:
        return sha3_256(raw).hex()


DOCS_ASSETS = "/docs-assets"
"""Where the API documentation pages' scripts and styles are served (from the package)."""


def create_app(node: NodeService, grid: GridSource | None = None,
               run: RunPanel | None = None) -> Any:
    """The API over ``node``, wrapped in the streaming body limits (an ASGI app); the live
    dashboard at ``/`` (``api.dashboard``; ``grid`` feeds its network panel, ``run`` is a
    run driver's panel: the attack lab's table)."""
    # /docs (Swagger UI) and /redoc load their scripts from the installed fastapi-offline
    # package, never from a CDN: an operator's node is often offline or air-gapped
    api = FastAPIOffline(title="GridLedger", version="1", static_url=DOCS_ASSETS,
                         description="Post-quantum ledger and transactive energy market. Every "
                                     "read is from the last certified block and names its height.")
    statuses = rule_statuses(node.rules())
    views = frozenset(node.views())
    active = [0]  # event streams open
    counted = threading.Lock()

    @api.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        # framework errors (404 unknown route, 405 method) get a rule name like ours
        if isinstance(exc.detail, dict):
            body = exc.detail
        else:
            rule = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
            body = {"rule": rule, "detail": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @api.exception_handler(Exception)
    async def _defect(_req: Request, exc: Exception) -> JSONResponse:
        # a defect of ours met while serving (the server logs its traceback): the body still
        # names a rule, as every 4xx/5xx body does, never starlette's plain-text 500
        return JSONResponse({"rule": "internal-error",
                             "detail": f"a defect of this node ({type(exc).__name__}; "
                                       "its log has the traceback)"}, status_code=500)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        where = ".".join(str(x) for x in errs[0].get("loc", ())) if errs else ""
        msg = errs[0].get("msg", "invalid request") if errs else "invalid request"
        return JSONResponse({"rule": "bad-request", "detail": f"{where}: {msg}"}, status_code=422)

    tx_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": SubmitJson.model_json_schema()},
        "application/cbor": {"schema": {"type": "string", "format": "binary",
                                        "maxLength": MAX_TX_BYTES}}}}}

    async def _body_tx(request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()  # already bounded by BodyLimit
        if ctype == "application/cbor":
            return body
        if ctype != "application/json":
            raise _reject(415, "unsupported-media-type",
                          "send application/json {\"tx\": hex} or application/cbor bytes")
        try:
            return bytes.fromhex(SubmitJson.model_validate_json(body).tx)
        except ValidationError as exc:
            raise _reject(422, "bad-request",
                          f"expected JSON {{\"tx\": hex}}: {exc.errors()[0]['msg']}") from exc

    @api.post("/v1/tx", status_code=202, response_model=Accepted,
              responses=_docs(400, 402, 403, 409, 413, 415, 422, 429, 500, 503),
              summary="Submit a signed transaction (JSON hex, or raw application/cbor body)",
              openapi_extra=tx_body)
    async def submit(request: Request) -> Accepted:
        raw = await _body_tx(request)
        try:
            tx = await asyncio.to_thread(node.submit, raw)
        except RejectedTx as exc:
            status = statuses.get(exc.rule) or STATUS_BY_CATEGORY.get(category_of(type(exc)), 400)
            raise _reject(status, exc.rule, exc.detail) from exc
        return Accepted(tx_hash=tx.id.hex(), sender=tx.sender.hex(), nonce=tx.nonce, kind=tx.kind)

    @api.post("/v1/txs", response_model=BatchResults, responses=_docs(400, 413, 415, 503),
              summary=f"Submit up to {MAX_BATCH_TXS:,} signed transactions (CBOR array of byte strings)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/cbor": {"schema": {"type": "string", "format": "binary",
                                                  "maxLength": MAX_BATCH_BYTES}}}}})
    async def submit_many(request: Request) -> BatchResults:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/cbor":
            raise _reject(415, "unsupported-media-type", "send a CBOR array (application/cbor)")
        body = await request.body()
        try:
            stream = io.BytesIO(body)
            raws = cbor2.CBORDecoder(stream).decode()
        except Exception as exc:  # cbor2 raises several types for bad input
            raise _reject(400, "bad-request", f"not CBOR: {str(exc)[:200]}") from exc
        if stream.tell() != len(body):  # cbor2.loads stops at the first item's end
            raise _reject(400, "bad-request", f"{len(body) - stream.tell()} bytes follow the "
                                              "CBOR array: send exactly one array")
        if not isinstance(raws, list) or not all(isinstance(r, bytes) for r in raws):
            raise _reject(400, "bad-request", "expected a CBOR array of transaction byte strings")
        if len(raws) > MAX_BATCH_TXS:
            raise _reject(413, "oversize", f"at most {MAX_BATCH_TXS:,} transactions per batch")
        results = await asyncio.to_thread(node.submit_many, raws)
        return BatchResults(results=[
            BatchItem(rule=r.rule, detail=r.detail) if isinstance(r, RejectedTx)
            else BatchItem(tx_hash=r.id.hex()) for r in results])

    @api.get("/v1/status", response_model=Status,
             summary="Chain id, last certified height and its state root, validators")
    def status() -> dict[str, Any]:
        return node.status()

    @api.get("/v1/validators", response_model=Certified,
             summary="Active validator set, quorum, open validator-set proposals")
    def validators() -> dict[str, Any]:
        height, (view,) = node.query(["validators"])
        return {"height": height, **_jsonable(view)}

    @api.get("/v1/views/{module}/{view}", response_model=ViewValue, responses=_docs(404, 422),
             summary="A module's published view of the certified state (no argument)")
    def view(module: Name, view: Name) -> dict[str, Any]:
        return _view(f"{module}/{view}")

    @api.get("/v1/views/{module}/{view}/{arg}", response_model=ViewValue,
             responses=_docs(404, 422),
             summary="A module's published view of the certified state, for one argument "
                     "(an address, a slot, …; e.g. the market book of a slot)")
    def view_arg(module: Name, view: Name, arg: ViewArg) -> dict[str, Any]:
        return _view(f"{module}/{view}/{arg}")

    def _view(path: str) -> dict[str, Any]:
        name = "/".join(path.split("/")[:2])
        if name not in views:
            raise _reject(404, "unknown-view", f"no view {name}; published: {', '.join(views)}")
        try:
            height, (value,) = node.query([path])
        except (KeyError, ValueError) as exc:
            raise _reject(404, "not-found", f"{path}: {str(exc)[:200]}") from exc
        return {"height": height, "view": name, "value": _jsonable(value)}

    @api.get("/v1/accounts/{address}", response_model=Account, responses=_docs(404, 422),
             summary="Balance, locked funds, next nonce and registry record")
    def account(address: Address) -> dict[str, Any]:
        addr = address.lower()
        height, (p, bal, nonce) = node.query([f"participant/{addr}", f"balance/{addr}", f"nonce/{addr}"])
        if p is None:
            raise _reject(404, "unknown-account", f"{address} is not registered")
        return {"height": height, "address": addr, **bal, "nonce": nonce,
                "participant": _jsonable({k: v for k, v in p.items() if k != "pk"})}

    @api.get("/v1/state/{key}", response_model=StateValue, responses=_docs(404, 422),
             summary="Raw state value (decoded) for a hex key")
    def state_value(key: StateKey) -> dict[str, Any]:
        k = key.lower()
        height, (v,) = node.query([f"raw/{k}"])
        if v is None:
            raise _reject(404, "unknown-key", "no such state key")
        return {"height": height, "key": k, "value": _jsonable(v)}

    @api.get("/v1/proofs/{key}", response_model=Proof, responses=_docs(422),
             summary="Membership or absence proof of a state key against the certified state root")
    def proof(key: StateKey) -> dict[str, Any]:
        height, root, pr = node.prove(bytes.fromhex(key))
        present = isinstance(pr, MembershipProof)
        return {"height": height, "state_root": root.hex(), "present": present,
                "proof": pr.to_json() if present else None,
                "absence": None if present else pr.to_json()}

    @api.get("/v1/blocks/{height}", response_model=Block, responses=_docs(404, 422),
             summary="A certified block: header, transaction ids, receipts")
    def block(height: Height) -> dict[str, Any]:
        got = node.block(height)
        if got is None:
            raise _reject(404, "unknown-block", f"no block {height}")
        header, txs, receipts, _cert = got
        return {"header": _jsonable(header.to_obj()), "hash": header.hash.hex(),
                "txs": [_tx_id(t) for t in txs], "receipts": _jsonable(receipts)}

    @api.get("/v1/blocks/{height}/certificate", response_model=CertificateJson,
             responses=_docs(404, 422), summary="The block's quorum certificate")
    def certificate(height: Height) -> dict[str, Any]:
        got = node.block(height)
        if got is None:
            raise _reject(404, "unknown-block", f"no block {height}")
        cert = got[3]
        return {"height": cert.height, "header_hash": cert.header_hash.hex(),
                "votes": [{"validator": i, "sig": s.hex()} for i, s in cert.votes]}

    @api.get("/v1/tx/{tx_hash}", response_model=TxReceipt, responses=_docs(404, 422),
             summary="Receipt and height of a committed transaction")
    def receipt(tx_hash: TxId) -> dict[str, Any]:
        got = node.receipt(bytes.fromhex(tx_hash))
        if got is None:
            raise _reject(404, "unknown-tx", "not committed (yet)")
        return {"height": got[0], "receipt": _jsonable(got[1])}

    @api.get("/v1/events", response_class=StreamingResponse,
             responses={200: {"description": "Server-sent events: `event: block`, `data: {json}`"
                                             " (keep-alive comments every 15 s)",
                              "content": {"text/event-stream": {"itemSchema": SSE_SCHEMA}}},
                        **_docs(422, 429)},
             summary="Server-sent events: one 'block' event per finalized (certified) block")
    async def events(request: Request,
                     limit: Annotated[int, Query(ge=0, le=MAX_EVENTS, description=(
                         "Stop after this many events (0: until the client disconnects)"))] = 0,
                     ) -> StreamingResponse:
        if active[0] >= MAX_EVENT_STREAMS:
            raise _reject(429, "too-many-streams",
                          f"at most {MAX_EVENT_STREAMS} event streams at a time")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        loop = asyncio.get_running_loop()

        def enqueue(ev: dict[str, Any]) -> None:
            if not queue.full():  # a reader that falls 1,000 blocks behind loses events
                queue.put_nowait(ev)

        def push(ev: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(enqueue, ev)

        async def gen() -> AsyncIterator[str]:
            # subscribe and count inside the generator: its ``finally`` is what runs when
            # the client goes away, so nothing leaks however the stream ends
            with counted:
                if active[0] >= MAX_EVENT_STREAMS:
                    return
                active[0] += 1
            cancel = node.subscribe(push)
            sent = 0
            try:
                while limit <= 0 or sent < limit:
                    if await request.is_disconnected():
                        break
                    try:
                        ev = await asyncio.wait_for(queue.get(), timeout=15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n"
                    sent += 1
            finally:
                cancel()
                with counted:
                    active[0] -= 1

        return StreamingResponse(gen(), media_type="text/event-stream")

    def tx_status(exc: RejectedTx) -> int:
        return statuses.get(exc.rule) or STATUS_BY_CATEGORY.get(category_of(type(exc)), 400)

    # OpenADR 3.0.1 VTN over the flexibility module (issue 15): /openadr3/...
    api.include_router(openadr_router(node, tx_status))
    add_dashboard(api, node, grid, max_streams=MAX_EVENT_STREAMS // 2, rejections=_docs(422),
                  run=run)
    return BodyLimit(api, {("POST", "/v1/tx"): MAX_JSON_TX_BYTES,
                           ("POST", "/v1/txs"): MAX_BATCH_BYTES, **OPENADR_BODY_LIMITS})
