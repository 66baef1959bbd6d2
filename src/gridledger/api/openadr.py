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
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridledger.api.service import NodeService
from gridledger.crypto.sig import SigningKey
from gridledger.errors import GridLedgerError, RejectedTx
from gridledger.flex.ven import secret_hash, ven_key
from gridledger.ledger.tx import sign_tx

PREFIX = "/openadr3"
PROGRAM_ID = "gridledger-flex"
ORIGIN = datetime(2016, 1, 1, tzinfo=UTC)
TOKEN_TTL_S = 3600
MAX_TOKENS = 10_000
MAX_LIMIT = 50
MAX_SUBSCRIPTIONS_PER_VEN = 8
POLL_S = 1.0
"""How often the notifier looks for new events while a subscription wants them (s)."""
NOTIFY_TIMEOUT_S = 5.0
ID = r"^[a-zA-Z0-9_-]{1,128}$"
OFFER_ID = r"^[0-9a-f]{64}$"
SCOPES = "read_all write_reports write_vens"
BODY_LIMITS = {("POST", f"{PREFIX}/auth/token"): 4 * 1024,
               ("POST", f"{PREFIX}/reports"): 64 * 1024,
               ("POST", f"{PREFIX}/subscriptions"): 16 * 1024,
               ("POST", f"{PREFIX}/vens"): 4 * 1024}
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


OBJECTS = ("PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE")
OPERATIONS = ("GET", "POST", "PUT", "DELETE")


class ObjectOperationIn(_Loose):
    objects: list[str] = Field(min_length=1, max_length=len(OBJECTS))
    operations: list[str] = Field(min_length=1, max_length=len(OPERATIONS))
    callback_url: str = Field(alias="callbackUrl", min_length=1, max_length=2048)
    bearer_token: str | None = Field(alias="bearerToken", default=None, max_length=4096)


class SubscriptionIn(_Loose):
    client_name: str = Field(alias="clientName", min_length=1, max_length=128)
    program_id: str = Field(alias="programID", pattern=ID)
    object_operations: list[ObjectOperationIn] = Field(alias="objectOperations", min_length=1,
                                                       max_length=8)
    targets: list[dict[str, Any]] | None = Field(default=None, max_length=8)


class VenIn(_Loose):
    ven_name: str = Field(alias="venName", min_length=1, max_length=128)


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


@dataclass
class Subscription:
    """A VEN's webhook subscription (VTN-local, in memory: it is the VTN's delivery of
    notifications, not ledger state). ``seen`` = event ids already notified."""

    id: str
    session: Session
    body: dict[str, Any]
    created: str
    modified: str
    seen: set[str]

    def wants(self, obj: str, op: str) -> list[tuple[str, str | None]]:
        """``[(callbackUrl, bearerToken)]`` of the object operations naming ``obj``/``op``."""
        return [(o["callbackUrl"], o.get("bearerToken")) for o in self.body["objectOperations"]
                if obj in o["objects"] and op in o["operations"]]

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "createdDateTime": self.created,
                "modificationDateTime": self.modified, "objectType": "SUBSCRIPTION",
                **self.body}


class Notifier:
    """Delivers OpenADR notifications ``{objectType, operation, object}`` to subscribers'
    callback URLs (POST, their bearer token, ``NOTIFY_TIMEOUT_S``): new events found by
    polling the ledger every ``poll_s`` while a subscription wants them, and reports as
    they are posted. Best effort, as the spec's webhooks are: a callback that fails is
    counted (``failed``), not retried; a VEN still reads everything with GET."""

    def __init__(self, vtn: Vtn, poll_s: float) -> None:
        self.vtn, self.poll_s = vtn, poll_s
        self.sent = self.failed = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Poll while a subscription wants new events (the thread ends when none does)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="openadr-notify",
                                                daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop polling (the API's shutdown)."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout=NOTIFY_TIMEOUT_S + self.poll_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not self.vtn.subscriptions.any_wanting("EVENT", "POST"):
                    self._thread = None
                    return
            for sub in self.vtn.subscriptions.wanting("EVENT", "POST"):
                try:
                    events = self.vtn.events(sub.session)
                except (GridLedgerError, KeyError, OSError):  # the node busy or closing
                    continue
                for e in events:
                    if e["id"] not in sub.seen:
                        sub.seen.add(e["id"])
                        self.send(sub.wants("EVENT", "POST"), "EVENT", "POST", e)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def send(self, hooks: list[tuple[str, str | None]], obj: str, op: str,
             body: dict[str, Any]) -> None:
        note = {"objectType": obj, "operation": op, "object": body, "targets": None}
        for url, token in hooks:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                httpx.post(url, json=note, headers=headers, timeout=NOTIFY_TIMEOUT_S).raise_for_status()
                self.sent += 1
            except httpx.HTTPError:
                self.failed += 1


class Subscriptions:
    """Subscriptions by id, each visible to the VEN that created it only, bounded."""

    def __init__(self) -> None:
        self._by_id: dict[str, Subscription] = {}
        self._lock = threading.Lock()

    def of(self, s: Session) -> list[Subscription]:
        with self._lock:
            return sorted((x for x in self._by_id.values() if x.session.name == s.name),
                          key=lambda x: (x.created, x.id))

    def get(self, s: Session, sid: str) -> Subscription:
        with self._lock:
            x = self._by_id.get(sid)
        if x is None or x.session.name != s.name:
            raise Problem(404, "unknown-subscription", f"no subscription {sid[:128]!r}")
        return x

    def add(self, x: Subscription) -> None:
        with self._lock:
            if sum(1 for y in self._by_id.values() if y.session.name == x.session.name) \
                    >= MAX_SUBSCRIPTIONS_PER_VEN:
                raise Problem(409, "too-many-subscriptions",
                              f"a VEN holds at most {MAX_SUBSCRIPTIONS_PER_VEN} subscriptions")
            self._by_id[x.id] = x

    def remove(self, s: Session, sid: str) -> Subscription:
        x = self.get(s, sid)
        with self._lock:
            self._by_id.pop(sid, None)
        return x

    def wanting(self, obj: str, op: str) -> list[Subscription]:
        with self._lock:
            return [x for x in self._by_id.values() if x.wants(obj, op)]

    def any_wanting(self, obj: str, op: str) -> bool:
        return bool(self.wanting(obj, op))


class Vtn:
    """The VTN's logic over a ``NodeService``: credentials, events, reports, subscriptions."""

    def __init__(self, node: NodeService, status_of: Callable[[RejectedTx], int],
                 origin: datetime = ORIGIN, clock: Callable[[], float] = time.monotonic,
                 poll_s: float = POLL_S) -> None:
        self.node, self.status_of, self.origin = node, status_of, origin
        self.tokens = Tokens(clock)
        self._nonces: dict[bytes, int] = {}
        self._nonce_lock = threading.Lock()
        self.subscriptions = Subscriptions()
        self.notifier = Notifier(self, poll_s)

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
        for sub in self.subscriptions.of(s):
            self.notifier.send(sub.wants("REPORT", "POST"), "REPORT", "POST", report)
        return report

    # -- subscriptions (webhooks) and the VEN object --------------------------------------
    def subscribe(self, s: Session, body: SubscriptionIn, sid: str | None = None) -> dict[str, Any]:
        """Create (``sid`` None) or replace a subscription of the VEN. Raises ``Problem``
        400 ``invalid-body`` (program, client name, object, operation, callback URL), 404
        ``unknown-subscription``, 409 ``too-many-subscriptions``."""
        if body.program_id != PROGRAM_ID:
            raise Problem(400, "invalid-body", f"programID must be {PROGRAM_ID!r}")
        if body.client_name != s.name:
            raise Problem(400, "invalid-body", "clientName must be the VEN's own name")
        ops = []
        for o in body.object_operations:
            bad = [x for x in o.objects if x not in OBJECTS] + \
                  [x for x in o.operations if x not in OPERATIONS]
            if bad:
                raise Problem(400, "invalid-body", f"unknown object or operation {bad[0][:32]!r}")
            url = urlsplit(o.callback_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise Problem(400, "invalid-body", "callbackUrl must be an http(s) URL")
            ops.append({"objects": list(dict.fromkeys(o.objects)),
                        "operations": list(dict.fromkeys(o.operations)),
                        "callbackUrl": o.callback_url, "bearerToken": o.bearer_token})
        doc = {"clientName": s.name, "programID": PROGRAM_ID, "objectOperations": ops,
               "targets": body.targets}
        now = datetime.now(UTC).isoformat()
        if sid is not None:
            x = self.subscriptions.get(s, sid)
            x.body, x.modified = doc, now
        else:
            # events already there when the VEN subscribes are not news: only later ones are
            seen = {e["id"] for e in self.events(s)}
            x = Subscription(secrets.token_hex(16), s, doc, now, now, seen)
            self.subscriptions.add(x)
        if x.wants("EVENT", "POST"):
            self.notifier.start()
        return x.view()

    def ven(self, s: Session) -> dict[str, Any]:
        """The VEN object: its ledger enrolment (``flex/ven``), id = its ledger address."""
        created = self._time(0)
        return {"id": s.key.address.hex(), "createdDateTime": created,
                "modificationDateTime": created, "objectType": "VEN", "venName": s.name,
                "attributes": None, "targets": None, "resources": None}

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


M = TypeVar("M", bound=BaseModel)


def _one(items: list[dict[str, Any]], oid: str, rule: str, what: str) -> dict[str, Any]:
    """The object with id ``oid`` among what the VEN may see, else 404 ``rule``."""
    for x in items:
        if x["id"] == oid:
            return x
    raise Problem(404, rule, f"no {what} {oid[:128]!r} for this VEN")


def _parse(model: type[M], raw: bytes) -> M:
    """A JSON body as ``model``, else 400 ``invalid-body`` naming the first field wrong."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e.get("loc", ()))
        raise Problem(400, "invalid-body", f"{where}: {e.get('msg', '')}"[:300]) from exc


# parameters (module level: FastAPI resolves the postponed annotations in module globals)
Auth = Annotated[str | None, Header()]
Skip = Annotated[int, Query(ge=0, le=10**6)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
IdQ = Annotated[str | None, Query(pattern=ID)]
NameQ = Annotated[str | None, Query(max_length=128)]
ObjQ = Annotated[list[str] | None, Query(max_length=len(OBJECTS))]


def openadr_router(node: NodeService, status_of: Callable[[RejectedTx], int], *,
                   origin: datetime = ORIGIN,
                   clock: Callable[[], float] = time.monotonic) -> APIRouter:
    """The VTN's routes under ``PREFIX`` (the API mounts them and applies ``BODY_LIMITS``);
    ``status_of`` is the API's HTTP status of a rejected transaction's rule."""
    vtn = Vtn(node, status_of, origin, clock)
    r = APIRouter(prefix=PREFIX, tags=["OpenADR 3.0.1 VTN"], on_shutdown=[vtn.notifier.close])

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
        return guard_of(get)

    @r.get("/programs/{program_id}", summary="The flexibility programme by id",
           responses=READ_DOCS)
    def program(program_id: str, authorization: Auth = None) -> JSONResponse:
        def get() -> dict[str, Any]:
            vtn.tokens.session(authorization)
            if program_id != PROGRAM_ID:
                raise Problem(404, "unknown-program", f"no program {program_id[:128]!r}")
            return vtn.program()
        return guard_of(get)

    @r.get("/events", summary="The VEN's flexibility orders as events", responses=READ_DOCS)
    def events(programID: IdQ = None, skip: Skip = 0,
               limit: Limit = MAX_LIMIT, authorization: Auth = None) -> JSONResponse:
        def get() -> list[dict[str, Any]]:
            s = vtn.tokens.session(authorization)
            evs = vtn.events(s) if programID in (None, PROGRAM_ID) else []
            return _page(evs, skip, limit)
        return guard_of(get)

    @r.get("/events/{event_id}", summary="One event (an activated offer)", responses=READ_DOCS)
    def event(event_id: str, authorization: Auth = None) -> JSONResponse:
        return guard_of(lambda: _one(vtn.events(vtn.tokens.session(authorization)), event_id,
                                  "unknown-event", "event"))

    @r.get("/reports", summary="The VEN's delivery reports (its claims on the ledger)",
           responses=READ_DOCS, operation_id="searchAllReports")
    async def search_reports(programID: IdQ = None, eventID: IdQ = None,
                             clientName: NameQ = None, skip: Skip = 0, limit: Limit = MAX_LIMIT,
                             authorization: Auth = None) -> JSONResponse:
        try:
            s = vtn.tokens.session(authorization)
            out = [x for x in await asyncio.to_thread(vtn.reports, s)
                   if programID in (None, x["programID"]) and eventID in (None, x["eventID"])
                   and clientName in (None, x["clientName"])]
            return JSONResponse(_page(out, skip, limit))
        except Problem as p:
            return p.response()

    @r.post("/reports", summary="A report (JSON): each interval's DELTA_USAGE becomes a "
                                "signed flex/report (201)",
            responses=_docs(400, 401, 402, 403, 404, 409, 413, 422, 429, 500),
            operation_id="createReport")
    async def create_report(request: Request, authorization: Auth = None) -> JSONResponse:
        try:
            s = vtn.tokens.session(authorization)
            body = _parse(ReportIn, await request.body())
            return JSONResponse(await asyncio.to_thread(vtn.post_report, s, body),
                                status_code=201)
        except Problem as p:
            return p.response()

    @r.get("/reports/{report_id}", summary="One report (by its event id)", responses=READ_DOCS)
    def report(report_id: str, authorization: Auth = None) -> JSONResponse:
        return guard_of(lambda: _one(vtn.reports(vtn.tokens.session(authorization)), report_id,
                                  "unknown-report", "report"))

    _subscription_routes(r, vtn)
    _ven_routes(r, vtn)
    _method_not_allowed(r)
    return r


def _subscription_routes(r: APIRouter, vtn: Vtn) -> None:
    """``/subscriptions`` (OpenADR 3.0.1): a VEN registers webhooks for new events and its
    reports; it sees and changes its own subscriptions only."""

    def session(authorization: str | None) -> Session:
        return vtn.tokens.session(authorization)

    @r.get("/subscriptions", summary="The VEN's subscriptions", responses=READ_DOCS,
           operation_id="searchSubscriptions")
    def search_subscriptions(programID: IdQ = None, clientName: NameQ = None,
                             objects: ObjQ = None, skip: Skip = 0, limit: Limit = MAX_LIMIT,
                             authorization: Auth = None) -> JSONResponse:
        def get() -> list[dict[str, Any]]:
            out = [x.view() for x in vtn.subscriptions.of(session(authorization))]
            out = [x for x in out if programID in (None, x["programID"])
                   and clientName in (None, x["clientName"])
                   and (not objects or any(set(objects) & set(o["objects"])
                                           for o in x["objectOperations"]))]
            return _page(out, skip, limit)
        return guard_of(get)

    @r.post("/subscriptions", summary="Subscribe to new events (EVENT/POST) and the VEN's "
                                      "reports (REPORT/POST) with a callback URL (201)",
            responses=_docs(400, 401, 409, 413, 422), operation_id="createSubscription")
    async def create_subscription(request: Request, authorization: Auth = None) -> JSONResponse:
        try:
            s = session(authorization)
            body = _parse(SubscriptionIn, await request.body())
            return JSONResponse(await asyncio.to_thread(vtn.subscribe, s, body), status_code=201)
        except Problem as p:
            return p.response()

    @r.get("/subscriptions/{subscription_id}", summary="One subscription", responses=READ_DOCS,
           operation_id="searchSubscriptionByID")
    def get_subscription(subscription_id: str, authorization: Auth = None) -> JSONResponse:
        return guard_of(lambda: vtn.subscriptions.get(session(authorization),
                                                      subscription_id).view())

    @r.put("/subscriptions/{subscription_id}", summary="Replace a subscription",
           responses=_docs(400, 401, 404, 413, 422), operation_id="updateSubscription")
    async def update_subscription(subscription_id: str, request: Request,
                                  authorization: Auth = None) -> JSONResponse:
        try:
            s = session(authorization)
            body = _parse(SubscriptionIn, await request.body())
            return JSONResponse(await asyncio.to_thread(vtn.subscribe, s, body, subscription_id))
        except Problem as p:
            return p.response()

    @r.delete("/subscriptions/{subscription_id}", summary="Delete a subscription",
              responses=READ_DOCS, operation_id="deleteSubscription")
    def delete_subscription(subscription_id: str, authorization: Auth = None) -> JSONResponse:
        return guard_of(lambda: vtn.subscriptions.remove(session(authorization),
                                                         subscription_id).view())


def _ven_routes(r: APIRouter, vtn: Vtn) -> None:
    """``/vens``: the VEN's own object. VENs are enrolled on the ledger by their member
    (``flex/ven``), so ``POST /vens`` only answers which rule applies."""

    @r.get("/vens", summary="The VEN's own object (its ledger enrolment)", responses=READ_DOCS,
           operation_id="searchVens")
    def search_vens(venName: NameQ = None, skip: Skip = 0, limit: Limit = MAX_LIMIT,
                    authorization: Auth = None) -> JSONResponse:
        def get() -> list[dict[str, Any]]:
            v = vtn.ven(vtn.tokens.session(authorization))
            return _page([v] if venName in (None, v["venName"]) else [], skip, limit)
        return guard_of(get)

    @r.get("/vens/{ven_id}", summary="The VEN's own object by id", responses=READ_DOCS,
           operation_id="searchVenByID")
    def get_ven(ven_id: str, authorization: Auth = None) -> JSONResponse:
        return guard_of(lambda: _one([vtn.ven(vtn.tokens.session(authorization))], ven_id,
                                     "unknown-ven", "VEN"))

    @r.post("/vens", summary="VENs are enrolled on the ledger (flex/ven): 409 ven-taken for "
                             "an enrolled name, else 403 enrol-on-ledger",
            responses=_docs(400, 401, 403, 409, 413, 422), operation_id="createVen")
    async def create_ven(request: Request, authorization: Auth = None) -> JSONResponse:
        try:
            vtn.tokens.session(authorization)
            body = _parse(VenIn, await request.body())
            known = _valid_id(body.ven_name) and await asyncio.to_thread(
                lambda: vtn.node.query([f"flex/ven/{body.ven_name}"])[1][0] is not None)
            if known:
                raise Problem(409, "ven-taken", f"VEN {body.ven_name[:64]!r} is enrolled")
            raise Problem(403, "enrol-on-ledger", "a member enrols its VEN with a signed "
                                                  "flex/ven transaction (docs/flexibility.md)")
        except Problem as p:
            return p.response()


def guard_of(fn: Callable[[], Any], status: int = 200) -> JSONResponse:
    """``fn()`` as JSON, or its ``Problem``."""
    try:
        return JSONResponse(fn(), status_code=status)
    except Problem as p:
        return p.response()


def _method_not_allowed(r: APIRouter) -> None:
    """One route per method keeps one OpenAPI operation id each; every other method of a
    VTN path answers 405 naming all the path's methods (``Allow``)."""
    by_path: dict[str, set[str]] = {}
    for route in r.routes:
        if isinstance(route, APIRoute):
            by_path.setdefault(route.path, set()).update(route.methods or ())
    for path, methods in by_path.items():
        allowed = methods | ({"HEAD"} if "GET" in methods else set())
        others = [m for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")
                  if m not in allowed]
        if not others:
            continue
        allow = ", ".join(sorted(allowed))

        def refuse(allow: str = allow) -> JSONResponse:
            return JSONResponse({"type": "about:blank", "title": "method-not-allowed",
                                 "status": 405, "rule": "method-not-allowed",
                                 "detail": f"allowed: {allow}"},
                                status_code=405, headers={"Allow": allow})

        r.add_api_route(path[len(PREFIX):], refuse, methods=others, include_in_schema=False)
