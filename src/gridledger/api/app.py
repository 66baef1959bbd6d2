"""The GridLedger HTTP API.

Every rejection is a 4xx whose JSON body names the rule broken (``{"rule": ..., "detail":
...}``), with the status chosen by the kind of problem: 413 too large, 400 malformed or
invalid, 403 not authorised / bad signature / classical key, 409 nonce conflicts, 429 quota
or mempool full, 404 unknown objects.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from gridledger.api.service import NodeService
from gridledger.errors import GridLedgerError, RejectedTx
from gridledger.ledger.tx import MAX_TX_BYTES

STATUS_BY_RULE = {
    "oversize": 413, "malformed-encoding": 400, "wrong-chain": 400, "invalid-body": 400,
    "unknown-kind": 400, "bad-signature": 403, "classical-key": 403, "unknown-sender": 403,
    "unauthorized": 403, "replayed-nonce": 409, "nonce-gap": 409, "quota-exceeded": 429,
    "mempool-full": 429, "insufficient-funds": 402,
}


class SubmitJson(BaseModel):
    tx: str = Field(description="The signed transaction's canonical CBOR bytes, hex encoded.",
                    max_length=2 * MAX_TX_BYTES + 2, pattern="^([0-9a-fA-F]{2})*$")


class Rejection(BaseModel):
    rule: str
    detail: str


class Accepted(BaseModel):
    tx_hash: str
    sender: str
    nonce: int
    kind: str


Height = Annotated[int, Path(ge=1, le=2**62, description="Block height (genesis is 0; blocks start at 1)")]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _hex(value: str, name: str, length: int | None = None) -> bytes:
    try:
        b = bytes.fromhex(value)
    except ValueError:
        raise HTTPException(400, {"rule": "bad-request", "detail": f"{name} must be hex"})
    if length is not None and len(b) != length:
        raise HTTPException(400, {"rule": "bad-request", "detail": f"{name} must be {length} bytes"})
    return b


def create_app(node: NodeService) -> FastAPI:
    api = FastAPI(title="GridLedger", version="1",
                  description="Post-quantum ledger and transactive energy market.")

    @api.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        # framework errors (404 unknown route, 405 method) get a rule name like ours
        if isinstance(exc.detail, dict):
            body = exc.detail
        else:
            rule = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
            body = {"rule": rule, "detail": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @api.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        where = ".".join(str(x) for x in errs[0].get("loc", ())) if errs else ""
        msg = errs[0].get("msg", "invalid request") if errs else "invalid request"
        return JSONResponse({"rule": "bad-request", "detail": f"{where}: {msg}"}, status_code=422)

    responses: dict[int | str, dict[str, Any]] = {
        s: {"model": Rejection} for s in (400, 402, 403, 409, 413, 429)}

    tx_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": SubmitJson.model_json_schema()},
        "application/cbor": {"schema": {"type": "string", "format": "binary"}}}}}

    @api.post("/v1/tx", status_code=202, response_model=Accepted, responses=responses,
              summary="Submit a signed transaction (JSON hex, or raw application/cbor body)",
              openapi_extra=tx_body)
    async def submit(request: Request) -> Accepted:
        ctype = request.headers.get("content-type", "")
        body = await request.body()
        if len(body) > 2 * MAX_TX_BYTES + 64:
            raise HTTPException(413, {"rule": "oversize", "detail": f"request over {2 * MAX_TX_BYTES} bytes"})
        if ctype.startswith("application/cbor"):
            raw = body
        else:
            try:
                payload = SubmitJson.model_validate_json(body)
            except Exception as exc:
                raise HTTPException(400, {"rule": "bad-request",
                                          "detail": f"expected JSON {{\"tx\": hex}}: {str(exc)[:200]}"})
            raw = bytes.fromhex(payload.tx)
        try:
            tx = await asyncio.to_thread(node.submit, raw)
        except RejectedTx as exc:
            raise HTTPException(STATUS_BY_RULE.get(exc.rule, 400), {"rule": exc.rule, "detail": exc.detail})
        return Accepted(tx_hash=tx.id.hex(), sender=tx.sender.hex(), nonce=tx.nonce, kind=tx.kind)

    @api.post("/v1/txs", summary="Submit up to 1,000 signed transactions (CBOR array of byte strings)",
              responses={400: {"model": Rejection}, 413: {"model": Rejection}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/cbor": {"schema": {"type": "string", "format": "binary"}}}}})
    async def submit_many(request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > 1000 * (MAX_TX_BYTES + 8):
            raise HTTPException(413, {"rule": "oversize", "detail": "batch over 1,000 maximal transactions"})
        try:
            import cbor2

            raws = cbor2.loads(body)
            if not isinstance(raws, list) or not all(isinstance(r, bytes) for r in raws):
                raise ValueError("not an array of byte strings")
        except Exception as exc:
            raise HTTPException(400, {"rule": "bad-request", "detail": f"expected a CBOR array of "
                                                                      f"transaction bytes: {exc}"})
        if len(raws) > 1000:
            raise HTTPException(413, {"rule": "oversize", "detail": "at most 1,000 transactions per batch"})
        results = await asyncio.to_thread(node.submit_many, raws)
        return {"results": [{"rule": r.rule, "detail": r.detail} if isinstance(r, RejectedTx)
                            else {"tx_hash": r.id.hex()} for r in results]}

    @api.get("/v1/status", summary="Chain id, height, state root, validators")
    def status() -> dict[str, Any]:
        return node.status()

    @api.get("/v1/validators", summary="Active validator set, quorum, open validator-set proposals")
    def validators() -> dict[str, Any]:
        height, (view,) = node.query(["validators"])
        return {"height": height, **_jsonable(view)}

    @api.get("/v1/accounts/{address}", summary="Balance, locked funds, nonce and registry record")
    def account(address: str) -> dict[str, Any]:
        addr = _hex(address, "address", 32).hex()
        height, (p, bal, nonce) = node.query([f"participant/{addr}", f"balance/{addr}", f"nonce/{addr}"])
        if p is None:
            raise HTTPException(404, {"rule": "unknown-account", "detail": f"{address} is not registered"})
        return {"height": height, "address": addr, **bal, "nonce": nonce,
                "participant": _jsonable({k: v for k, v in p.items() if k != "pk"})}

    @api.get("/v1/state/{key}", summary="Raw state value (decoded) for a hex key")
    def state_value(key: str) -> dict[str, Any]:
        k = _hex(key, "key")
        height, (v,) = node.query([f"raw/{k.hex()}"])
        if v is None:
            raise HTTPException(404, {"rule": "unknown-key", "detail": "no such state key"})
        return {"height": height, "key": k.hex(), "value": _jsonable(v)}

    @api.get("/v1/proofs/{key}", summary="Membership proof of a state key against the state root")
    def proof(key: str) -> dict[str, Any]:
        k = _hex(key, "key")
        try:
            height, root, pr = node.prove(k)
        except KeyError:
            raise HTTPException(404, {"rule": "unknown-key", "detail": "no such state key"})
        return {"height": height, "state_root": root.hex(), "proof": pr.to_json()}

    @api.get("/v1/blocks/{height}", summary="A certified block: header, transactions, receipts")
    def block(height: Height) -> dict[str, Any]:
        got = node.block(height)
        if got is None:
            raise HTTPException(404, {"rule": "unknown-block", "detail": f"no block {height}"})
        header, txs, receipts, _cert = got
        return {"header": _jsonable(header.to_obj()), "hash": header.hash.hex(),
                "txs": [_tx_id(t) for t in txs], "receipts": _jsonable(receipts)}

    @api.get("/v1/blocks/{height}/certificate", summary="The block's quorum certificate")
    def certificate(height: Height) -> dict[str, Any]:
        got = node.block(height)
        if got is None:
            raise HTTPException(404, {"rule": "unknown-block", "detail": f"no block {height}"})
        cert = got[3]
        return {"height": cert.height, "header_hash": cert.header_hash.hex(),
                "votes": [{"validator": i, "sig": s.hex()} for i, s in cert.votes]}

    @api.get("/v1/tx/{tx_hash}", summary="Receipt of a committed transaction")
    def receipt(tx_hash: str) -> dict[str, Any]:
        h = _hex(tx_hash, "tx_hash", 32)
        got = node.receipt(h)
        if got is None:
            raise HTTPException(404, {"rule": "unknown-tx", "detail": "not committed (yet)"})
        return {"height": got[0], "receipt": _jsonable(got[1])}

    @api.get("/v1/events", summary="Server-sent events: one 'block' event per finalized block")
    async def events(request: Request, limit: int = 0) -> StreamingResponse:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        loop = asyncio.get_running_loop()

        def push(ev: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(lambda: queue.full() or queue.put_nowait(ev))

        cancel = node.subscribe(push)

        async def gen() -> Any:
            sent = 0
            try:
                while limit <= 0 or sent < limit:
                    if await request.is_disconnected():
                        break
                    try:
                        ev = await asyncio.wait_for(queue.get(), timeout=15)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n"
                    sent += 1
            finally:
                cancel()

        return StreamingResponse(gen(), media_type="text/event-stream")

    @api.exception_handler(GridLedgerError)
    async def _gl(_req: Request, exc: GridLedgerError) -> JSONResponse:
        return JSONResponse({"rule": type(exc).__name__, "detail": str(exc)}, status_code=400)

    return api


def _tx_id(raw: bytes) -> str:
    """A block entry's transaction id (``Tx.id``); the wire hash if it does not decode."""
    from gridledger.crypto.hashing import sha3_256
    from gridledger.errors import RejectedTx
    from gridledger.ledger.tx import decode_tx

    try:
        return decode_tx(raw).id.hex()
    except RejectedTx:
        return sha3_256(raw).hex()
