"""OpenADR 3.0.1 VTN over the ledger's flexibility module (issue 15): a standard VEN reads
the DSO's flexibility orders as **events** and posts delivery **reports**, each of which
becomes a ``flex/report`` transaction signed with the VEN's ledger key.

Mapping (spec: grid-coordination/openadr3-specification ``3.0.1/openadr3.yaml``)

=============  ===========================================================================
program        one, ``gridledger-flex``: the DSO's flexibility programme (USEF); binding
               events
event          one per *activated offer* of the VEN's member (``flex/activations``): id =
               the offer id (hex), ``intervalPeriod`` = the request's first slot (start,
               slot duration), interval ``id`` k = the request's k-th slot, payload
               ``DISPATCH_SETPOINT_RELATIVE`` in ``WH`` = the change of consumption ordered
               (negative: consume less / export more, direction ``up``); a report
               descriptor asks for ``DELTA_USAGE`` in ``WH`` per interval
report         what the member's VEN claimed per activated slot (the offer's ``claims_wh``);
               POST: each interval's ``DELTA_USAGE`` value becomes a ``flex/report``
               ``{request, offer, slot: first_slot + interval id, delivered_wh}`` with
               ``delivered_wh = max(0, -value)`` for ``up`` (``max(0, value)`` for
               ``down``). A claim is evidence only: settlement pays on meters.
auth           ``POST /auth/token``: OAuth2 client credentials (HTTP Basic or form);
               ``client_id`` = the VEN name enrolled with ``flex/ven``; the secret is
               checked against the enrolment (its hash, and the key derived from it,
               ``gridledger.flex.ven``). Tokens are opaque, in memory, ``TOKEN_TTL_S``.
=============  ===========================================================================

Every read is from the node's certified state. Event and report times are ledger time
``slot × slot_seconds`` after ``origin`` (default 2016-01-01T00:00Z, the SimBench profile
year the simulator's slot 0 starts). Errors are OpenADR ``Problem`` bodies ``{type, title,
status, detail}`` with ``title`` = the ledger rule's name where there is one.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridledger.api.service import NodeService
from gridledger.crypto.sig import SigningKey
from gridledger.errors import RejectedTx
from gridledger.flex.ven import secret_hash, ven_key
from gridledger.ledger.tx import sign_tx

PREFIX = "/openadr3"
PROGRAM_ID = "gridledger-flex"
ORIGIN = datetime(2016, 1, 1, tzinfo=UTC)
TOKEN_TTL_S = 3600
MAX_TOKENS = 10_000
MAX_LIMIT = 50
ID = r"^[a-zA-Z0-9_-]{1,128}$"
OFFER_ID = r"^[0-9a-f]{64}$"
SCOPES = "read_all write_reports write_vens"
BODY_LIMITS = {("POST", f"{PREFIX}/auth/token"): 4 * 1024,
               ("POST", f"{PREFIX}/reports"): 64 * 1024}
"""Per-route body limits the API's ``BodyLimit`` must apply to these routes."""


class Problem(Exception):
    """An OpenADR error answer; ``title`` is the rule broken."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail

    def response(self) -> JSONResponse:
        # OpenADR's Problem, plus the API's ``rule`` (the same name, for every client)
        return JSONResponse({"type": "about:blank", "title": self.title, "status": self.status,
                             "detail": self.detail, "rule": self.title},
                            status_code=self.status)

    def oauth(self) -> JSONResponse:
        """The answer of the token endpoint (RFC 6749 §5.2), with the API's rule/detail."""
        return JSONResponse({"error": self.title, "error_description": self.detail,
                             "rule": self.title, "detail": self.detail}, status_code=self.status)


class ProblemBody(BaseModel):
    """Every 4xx/5xx body of the VTN: ``rule`` and ``detail`` (as the whole API), plus
    OpenADR's Problem fields (``type``, ``title``, ``status``) or, from ``/auth/token``,
    OAuth2's ``error``/``error_description``."""

    rule: str
    detail: str
    type: str | None = None
    title: str | None = None
    status: int | None = None
    error: str | None = None
    error_description: str | None = None


def _docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ProblemBody} for s in statuses}


READ_DOCS = _docs(401, 404, 422)
TOKEN_BODY = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["grant_type"],
        "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                       "client_id": {"type": "string", "maxLength": 128},
                       "client_secret": {"type": "string", "maxLength": 256},
                       "scope": {"type": "string", "maxLength": 256}}}}}}}


# -- bodies the VTN accepts (extra fields such as objectType or nulls are tolerated) -----------
class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class PayloadIn(_Loose):
    type: str = Field(min_length=1, max_length=128)
    values: list[int | float | str | bool] = Field(min_length=1, max_length=16)


class IntervalIn(_Loose):
    id: int = Field(ge=0, le=95)
    payloads: list[PayloadIn] = Field(min_length=1, max_length=8)


class ResourceIn(_Loose):
    resource_name: str = Field(alias="resourceName", min_length=1, max_length=128)
    intervals: list[IntervalIn] = Field(min_length=1, max_length=96)


class ReportIn(_Loose):
    program_id: str = Field(alias="programID", pattern=ID)
    event_id: str = Field(alias="eventID", pattern=ID)
    client_name: str = Field(alias="clientName", min_length=1, max_length=128)
    report_name: str | None = Field(alias="reportName", default=None, max_length=128)
    resources: list[ResourceIn] = Field(min_length=1, max_length=8)


@dataclass
class Session:
    """An authenticated VEN: its name, ledger key, member and token expiry (monotonic s)."""

    name: str
    key: SigningKey
    member: bytes
    expires: float


class Tokens:
    """Opaque bearer tokens in memory, bounded, expiring."""

    def __init__(self, clock: Callable[[], float], ttl_s: int = TOKEN_TTL_S) -> None:
        self.clock, self.ttl_s = clock, ttl_s
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def issue(self, name: str, key: SigningKey, member: bytes) -> str:
        now = self.clock()
        with self._lock:
            for t in [t for t, s in self._by_token.items() if s.expires <= now]:
                del self._by_token[t]
            if len(self._by_token) >= MAX_TOKENS:
                raise Problem(503, "too-many-tokens", "the VTN holds too many live tokens")
            token = secrets.token_urlsafe(32)
            self._by_token[token] = Session(name, key, member, now + self.ttl_s)
        return token

    def session(self, authorization: str | None) -> Session:
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            s = self._by_token.get(token.strip()) if scheme.lower() == "bearer" else None
        if s is None or s.expires <= self.clock():
            raise Problem(401, "unauthenticated", "send a bearer token from /auth/token")
        return s


class Vtn:
    """The VTN's logic over a ``NodeService``: credentials, events, reports."""

    def __init__(self, node: NodeService, status_of: Callable[[RejectedTx], int],
                 origin: datetime = ORIGIN, clock: Callable[[], float] = time.monotonic) -> None:
        self.node, self.status_of, self.origin = node, status_of, origin
        self.tokens = Tokens(clock)
        self._nonces: dict[bytes, int] = {}
        self._nonce_lock = threading.Lock()

    # -- credentials -------------------------------------------------------------------------
    def token(self, client_id: str, client_secret: str) -> dict[str, Any]:
        """Client credentials -> ``{access_token, token_type, expires_in, scope}``.
        Raises ``Problem(401, 'invalid_client')`` for an unknown VEN or a wrong secret."""
        _, (b,) = self.node.query([f"flex/ven/{client_id}"]) if _valid_id(client_id) else (0, (None,))
        if b is None or secret_hash(client_id, client_secret) != b["secret_hash"]:
            raise Problem(401, "invalid_client", "unknown client id or wrong secret")
        _, (p,) = self.node.query([f"registry/participant/{b['address'].hex()}"])
        key = ven_key(client_id, client_secret, p["alg"] if p else "ml-dsa-44")
        if p is None or key.address != b["address"]:
            raise Problem(401, "invalid_client", "the secret does not derive the enrolled key")
        token = self.tokens.issue(client_id, key, b["member"])
        return {"access_token": token, "token_type": "Bearer",
                "expires_in": self.tokens.ttl_s, "scope": SCOPES}

    # -- objects ---------------------------------------------------------------------------
    def _time(self, ledger_s: int) -> str:
        return (self.origin + timedelta(seconds=ledger_s)).isoformat()

    def _cfg(self) -> dict[str, Any]:
        _, (cfg,) = self.node.query(["flex/config"])
        result: dict[str, Any] = cfg
        return result

    def program(self) -> dict[str, Any]:
        cfg = self._cfg()
        created = self._time(0)
        return {"id": PROGRAM_ID, "createdDateTime": created, "modificationDateTime": created,
                "objectType": "PROGRAM", "programName": PROGRAM_ID,
                "programLongName": "GridLedger DSO flexibility (USEF request, offer, order)",
                "retailerName": "dso", "programType": "DSO_FLEXIBILITY",
                "bindingEvents": True, "localPrice": False,
                "intervalPeriod": {"start": created, "duration": _iso_duration(cfg["slot_seconds"])},
                "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                                        "payloadType": "DISPATCH_SETPOINT_RELATIVE",
                                        "units": "WH"}],
                "targets": None}

    def activations(self, s: Session) -> list[dict[str, Any]]:
        _, (acts,) = self.node.query([f"flex/activations/{s.member.hex()}"])
        out: list[dict[str, Any]] = sorted(acts, key=lambda a: (a["first_slot"], a["id"]))
        return out

    def event(self, s: Session, a: dict[str, Any], slot_s: int) -> dict[str, Any]:
        sign = -1 if a["direction"] == "up" else 1
        start = a["first_slot"] * slot_s
        created = self._time(start - slot_s)
        return {
            "id": a["id"].hex(), "createdDateTime": created, "modificationDateTime": created,
            "objectType": "EVENT", "programID": PROGRAM_ID,
            "eventName": f"flex {a['direction']} {a['area']}"[:128], "priority": 0,
            "targets": [{"type": "VEN_NAME", "values": [s.name]},
                        {"type": "RESOURCE_NAME", "values": [a["device"]]}],
            "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                                    "payloadType": "DISPATCH_SETPOINT_RELATIVE",
                                    "units": "WH"}],
            "reportDescriptors": [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                                   "payloadType": "DELTA_USAGE", "readingType": "DIRECT_READ",
                                   "units": "WH", "aggregate": False, "startInterval": -1,
                                   "numIntervals": -1, "historical": True, "frequency": -1,
                                   "repeat": 1}],
            "intervalPeriod": {"start": self._time(start), "duration": _iso_duration(slot_s)},
            "intervals": [{"id": k, "payloads": [{"type": "DISPATCH_SETPOINT_RELATIVE",
                                                  "values": [sign * wh]}]}
                          for k, wh in enumerate(a["activated_wh"]) if wh],
        }

    def events(self, s: Session) -> list[dict[str, Any]]:
        slot_s = self._cfg()["slot_seconds"]
        return [self.event(s, a, slot_s) for a in self.activations(s)]

    def _report(self, s: Session, a: dict[str, Any], slot_s: int,
                extra: dict[int, int] | None = None) -> dict[str, Any] | None:
        claims = dict(enumerate(a.get("claims_wh") or ()))
        claims = {k: v for k, v in claims.items() if v >= 0} | (extra or {})
        if not claims:
            return None
        sign = -1 if a["direction"] == "up" else 1
        start = a["first_slot"] * slot_s
        modified = self._time(start + (max(claims) + 1) * slot_s)
        return {
            "id": a["id"].hex(), "createdDateTime": modified, "modificationDateTime": modified,
            "objectType": "REPORT", "programID": PROGRAM_ID, "eventID": a["id"].hex(),
            "clientName": s.name, "reportName": f"delivery {a['area']}"[:128],
            "payloadDescriptors": None,
            "resources": [{"resourceName": a["device"],
                           "intervalPeriod": {"start": self._time(start),
                                              "duration": _iso_duration(slot_s)},
                           "intervals": [{"id": k, "payloads": [{"type": "DELTA_USAGE",
                                                                 "values": [sign * wh]}]}
                                         for k, wh in sorted(claims.items())]}]}

    def reports(self, s: Session) -> list[dict[str, Any]]:
        slot_s = self._cfg()["slot_seconds"]
        return [r for a in self.activations(s) if (r := self._report(s, a, slot_s)) is not None]

    def post_report(self, s: Session, body: ReportIn) -> dict[str, Any]:
        """Turn a VEN report into signed ``flex/report`` transactions (one per interval).

        Raises ``Problem``: 404 ``unknown-event`` (not an activation of the VEN's member),
        400 ``invalid-body`` (program, client name, payload), 400 ``not-activated``, or the
        status of the rule admission refused a transaction with."""
        if body.program_id != PROGRAM_ID:
            raise Problem(400, "invalid-body", f"programID must be {PROGRAM_ID!r}")
        if body.client_name != s.name:
            raise Problem(400, "invalid-body", "clientName must be the VEN's own name")
        acts = {a["id"].hex(): a for a in self.activations(s)}
        a = acts.get(body.event_id)
        if a is None:
            raise Problem(404, "unknown-event", f"no event {body.event_id[:64]} for this VEN")
        claims: dict[int, int] = {}
        for res in body.resources:
            for iv in res.intervals:
                for p in iv.payloads:
                    if p.type != "DELTA_USAGE":
                        continue
                    claims[iv.id] = _delivered_wh(p.values[0], a["direction"])
        if not claims:
            raise Problem(400, "invalid-body", "no DELTA_USAGE payload in any interval")
        for k in claims:
            if k >= len(a["activated_wh"]) or a["activated_wh"][k] == 0:
                raise Problem(400, "not-activated", f"interval {k} of event {body.event_id[:16]}… "
                                                    "was not activated")
        for k, wh in sorted(claims.items()):
            self._submit(s, {"request": a["request"], "offer": a["id"],
                             "slot": a["first_slot"] + k, "delivered_wh": wh})
        report = self._report(s, a, self._cfg()["slot_seconds"], claims)
        assert report is not None  # claims is not empty
        return report

    def _submit(self, s: Session, body: dict[str, Any]) -> None:
        addr = s.key.address
        with self._nonce_lock:
            _, (certified,) = self.node.query([f"nonce/{addr.hex()}"])
            nonce = max(certified, self._nonces.get(addr, 0))
            raw = sign_tx(s.key, self.node.chain_id, nonce, "flex/report", body)
            try:
                self.node.submit(raw)
            except RejectedTx as exc:
                raise Problem(self.status_of(exc), exc.rule, exc.detail) from exc
            self._nonces[addr] = nonce + 1


def _valid_id(s: str) -> bool:
    return 0 < len(s) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-") for c in s)


def _delivered_wh(value: int | float | str | bool, direction: str) -> int:
    """A ``DELTA_USAGE`` value (Wh; < 0: less consumption) as the energy delivered in the
    ordered direction (>= 0). Raises ``Problem`` for a value that is not a whole number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Problem(400, "invalid-body", "a DELTA_USAGE value is a number of Wh")
    if isinstance(value, float) and not value.is_integer():
        raise Problem(400, "invalid-body", "DELTA_USAGE values are whole Wh")
    v = int(value)
    if abs(v) > 10**9:
        raise Problem(400, "invalid-body", "a DELTA_USAGE value is at most 1e9 Wh")
    return max(0, -v) if direction == "up" else max(0, v)


def _iso_duration(seconds: int) -> str:
    return f"PT{seconds // 60}M" if seconds % 60 == 0 else f"PT{seconds}S"


def _page(items: list[dict[str, Any]], skip: int, limit: int) -> list[dict[str, Any]]:
    return items[skip:skip + limit]


def _credentials(authorization: str | None, form: dict[str, list[str]]) -> tuple[str, str]:
    """OAuth2 client credentials from an HTTP Basic header (RFC 6749 §2.3.1) or the form."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            cid, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as exc:
            raise Problem(400, "invalid_request", "malformed Basic credentials") from exc
        return unquote(cid), unquote(secret)
    cid, secret = form.get("client_id", [""])[0], form.get("client_secret", [""])[0]
    if not cid or not secret:
        raise Problem(400, "invalid_request", "client_id and client_secret are required")
    return cid, secret


# parameters (module level: FastAPI resolves the postponed annotations in module globals)
Auth = Annotated[str | None, Header()]
Skip = Annotated[int, Query(ge=0, le=10**6)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
IdQ = Annotated[str | None, Query(pattern=ID)]
NameQ = Annotated[str | None, Query(max_length=128)]


def openadr_router(node: NodeService, status_of: Callable[[RejectedTx], int], *,
                   origin: datetime = ORIGIN,
                   clock: Callable[[], float] = time.monotonic) -> APIRouter:
    """The VTN's routes under ``PREFIX`` (the API mounts them and applies ``BODY_LIMITS``);
    ``status_of`` is the API's HTTP status of a rejected transaction's rule."""
    vtn = Vtn(node, status_of, origin, clock)
    r = APIRouter(prefix=PREFIX, tags=["OpenADR 3.0.1 VTN"])

    def guard(fn: Callable[[], Any], status: int = 200) -> JSONResponse:
        try:
            return JSONResponse(fn(), status_code=status)
        except Problem as p:
            return p.response()

    @r.post("/auth/token", summary="OAuth2 client credentials for an enrolled VEN",
            responses=_docs(400, 401, 415, 503), openapi_extra=TOKEN_BODY)
    async def token(request: Request, authorization: Auth = None) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype != "application/x-www-form-urlencoded":
                raise Problem(415, "unsupported-media-type",
                              "send application/x-www-form-urlencoded")
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            if form.get("grant_type", [""])[0] != "client_credentials":
                raise Problem(400, "unsupported_grant_type", "grant_type must be "
                                                             "client_credentials")
            cid, secret = _credentials(authorization, form)
            return JSONResponse(await asyncio.to_thread(vtn.token, cid, secret),
                                headers={"Cache-Control": "no-store"})
        except Problem as p:
            return p.oauth()

    @r.get("/programs", summary="The flexibility programme", responses=READ_DOCS)
    def programs(skip: Skip = 0, limit: Limit = MAX_LIMIT,
                 authorization: Auth = None) -> JSONResponse:
        def get() -> list[dict[str, Any]]:
            vtn.tokens.session(authorization)
            return _page([vtn.program()], skip, limit)
        return guard(get)

    @r.get("/programs/{program_id}", summary="The flexibility programme by id",
           responses=READ_DOCS)
    def program(program_id: str, authorization: Auth = None) -> JSONResponse:
        def get() -> dict[str, Any]:
            vtn.tokens.session(authorization)
            if program_id != PROGRAM_ID:
                raise Problem(404, "unknown-program", f"no program {program_id[:128]!r}")
            return vtn.program()
        return guard(get)

    @r.get("/events", summary="The VEN's flexibility orders as events", responses=READ_DOCS)
    def events(programID: IdQ = None, skip: Skip = 0,
               limit: Limit = MAX_LIMIT, authorization: Auth = None) -> JSONResponse:
        def get() -> list[dict[str, Any]]:
            s = vtn.tokens.session(authorization)
            evs = vtn.events(s) if programID in (None, PROGRAM_ID) else []
            return _page(evs, skip, limit)
        return guard(get)

    @r.get("/events/{event_id}", summary="One event (an activated offer)", responses=READ_DOCS)
    def event(event_id: str, authorization: Auth = None) -> JSONResponse:
        def get() -> dict[str, Any]:
            s = vtn.tokens.session(authorization)
            for e in vtn.events(s):
                if e["id"] == event_id:
                    return e
            raise Problem(404, "unknown-event", f"no event {event_id[:128]!r} for this VEN")
        return guard(get)

    # one route for both methods, so a 405 names both in its Allow header
    @r.api_route("/reports", methods=["GET", "POST"],
                 summary="GET: the VEN's delivery reports (its claims on the ledger); POST: a "
                         "report (JSON), each interval's DELTA_USAGE a signed flex/report (201)",
                 responses=_docs(400, 401, 402, 403, 404, 409, 413, 422, 429, 500))
    async def reports(request: Request, programID: IdQ = None, eventID: IdQ = None,
                      clientName: NameQ = None, skip: Skip = 0, limit: Limit = MAX_LIMIT,
                      authorization: Auth = None) -> JSONResponse:
        try:
            s = vtn.tokens.session(authorization)
            if request.method == "GET":
                out = [x for x in await asyncio.to_thread(vtn.reports, s)
                       if programID in (None, x["programID"])
                       and eventID in (None, x["eventID"])
                       and clientName in (None, x["clientName"])]
                return JSONResponse(_page(out, skip, limit))
            try:
                body = ReportIn.model_validate_json(await request.body())
            except ValidationError as exc:
                e = exc.errors()[0]
                where = ".".join(str(x) for x in e.get("loc", ()))
                raise Problem(400, "invalid-body", f"{where}: {e.get('msg', '')}"[:300]) from exc
            return JSONResponse(await asyncio.to_thread(vtn.post_report, s, body),
                                status_code=201)
        except Problem as p:
            return p.response()

    @r.get("/reports/{report_id}", summary="One report (by its event id)", responses=READ_DOCS)
    def report(report_id: str, authorization: Auth = None) -> JSONResponse:
        def get() -> dict[str, Any]:
            s = vtn.tokens.session(authorization)
            for x in vtn.reports(s):
                if x["id"] == report_id:
                    return x
            raise Problem(404, "unknown-report", f"no report {report_id[:128]!r}")
        return guard(get)

    return r
