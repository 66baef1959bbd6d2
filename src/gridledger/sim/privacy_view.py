"""What a validator's own ledger store holds, read the way its operator could read it.

The privacy figures of the attack lab (issue 19) are measured on this view and nothing else:
``StoreView`` opens one validator's SQLite store file read-only after the run and decodes its
blocks, transactions, receipts and events; ``count_clear`` scans every validator's store for
readings and orders that name a household (its member or meter address, or its connection
point id) — ``summary.privacy.clear_household_readings`` / ``clear_household_orders``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridledger.crypto.sig import SigningKey, address_of
from gridledger.errors import RejectedTx
from gridledger.ledger import codec
from gridledger.ledger.block import Header
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.modules.firmware.types import image_commitment
from gridledger.ledger.modules.privacy.records import pseudo_cp
from gridledger.ledger.tx import Tx, decode_tx
from gridledger.node.store import BlockStore
from gridledger.sim.clock import SLOT_S
from gridledger.sim.community import EPOCH_SLOTS
from gridledger.sim.context import SimContext
from gridledger.sim.forked import start_forked

READING_TXS = frozenset({"metering/reading", "metering/flag", "certificates/storage_reading"})
ORDER_TXS = frozenset({"market/order", "market/commit", "market/reveal", "market/replace",
                       "market/cancel",
                       # the flexibility market's: a request names households by cp, offers
                       # and reports come from them (under privacy mode: stand-in cps and
                       # the slot's pseudonym)
                       "flex/request", "flex/offer", "flex/revoke", "flex/order",
                       "flex/report"})
READING_EVENTS = frozenset({"reading", "reading_flagged", "storage_reading"})
ORDER_EVENTS = frozenset({"order_placed", "order_cancelled", "order_replaced", "committed",
                          "revealed", "trade", "flex_requested", "flex_offered",
                          "flex_revoked", "flex_ordered", "flex_activated", "flex_reported",
                          "flex_delivery", "flex_settled", "baseline_capped",
                          "claim_rejected"})


@dataclass(frozen=True)
class StoredTx:
    height: int
    slot_time: int
    tx: Tx
    ok: bool
    events: tuple[dict[str, Any], ...]


class StoreView:
    """One validator's store file, opened read-only (the file is not changed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Read through SQLite's locks and write-ahead log, never as an immutable file: other
        # processes may still hold the store (the store follower, a checker), and its last
        # blocks may be in the -wal file. (An immutable read beside the follower found the
        # file "malformed" once the scan ran beside it.) Side files it creates go on close.
        self._store = BlockStore(path, readonly=True)
        self.db: sqlite3.Connection = self._store.db

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> StoreView:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def genesis(self) -> bytes:
        row = self.db.execute("SELECT value FROM meta WHERE key='genesis'").fetchone()
        return bytes(row[0])

    def blocks(self) -> Iterator[tuple[Header, list[StoredTx], list[dict[str, Any]]]]:
        """(header, transactions with their receipts, block events) by height."""
        for height, header, txs, receipts in self.db.execute(
                "SELECT height, header, txs, receipts FROM blocks ORDER BY height"):
            h = Header.decode(bytes(header))
            rec = codec.decode(bytes(receipts))
            by_hash = {r["tx"]: r for r in rec["txs"]}
            out = []
            for raw in codec.decode(bytes(txs)):
                try:
                    tx = decode_tx(raw)
                except RejectedTx:
                    continue  # undecodable bytes carry nothing to scan
                r = by_hash.get(tx.id) or by_hash.get(tx.hash) or {}
                out.append(StoredTx(int(height), h.slot_time, tx, bool(r.get("ok")),
                                    tuple(r.get("events", ()))))
            yield h, out, list(rec["block"])


def store_paths(ctx: SimContext) -> list[Path]:
    """Every validator's store file of the run."""
    return [Path(v.store_path) for v in ctx.net.validators]


def household_ids(ctx: SimContext) -> tuple[frozenset[bytes], frozenset[str]]:
    """(member and meter addresses, connection point ids) of the community's households."""
    addrs = {m.address for m in ctx.members} | {m.meter.address for m in ctx.members}
    return frozenset(addrs), frozenset(m.cp for m in ctx.members)


def names_any(obj: Any, addrs: frozenset[bytes], cps: frozenset[str]) -> bool:
    """Whether ``obj`` (a decoded body or event, nested) holds one of the addresses or cp
    ids, as a value or inside a string (a pseudonym's ``ps:`` cp never matches a household's)."""
    if isinstance(obj, bytes):
        return obj in addrs
    if isinstance(obj, str):
        return obj in cps
    if isinstance(obj, dict):
        return any(names_any(k, addrs, cps) or names_any(v, addrs, cps) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return any(names_any(x, addrs, cps) for x in obj)
    return False


def holds_any(obj: Any, values: frozenset[bytes]) -> bool:
    """Whether ``obj`` (a decoded body or event, nested) holds one of ``values`` as bytes."""
    if isinstance(obj, bytes):
        return obj in values
    if isinstance(obj, dict):
        return any(holds_any(v, values) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(holds_any(x, values) for x in obj)
    return False


IMAGE_PUBLISHERS = frozenset({"firmware/release", "firmware/advisory", "firmware/approve"})
"""Transactions about releases, not about a meter: a release's image is public."""
IMAGE_RELEASE_EVENTS = frozenset({"firmware_released", "firmware_approved", "firmware_approval",
                                  "advisory_issued", "advisory_in_force"})
OPENING_EVENTS = frozenset({"image_opened", "meter_patched"})
"""Events of the openings the advisory and patch paths make (they name the opened cp)."""


class ImageScan:
    """Counts, over one or more stores, transactions and events that show a meter's
    firmware image in clear (issue 19 item 4: the image cuts a pseudonym's anonymity set to
    its cohort), except an opening the advisory or patch path made: the DSO's
    ``privacy/meter_image`` with a salt, a ``firmware/patch``, their ``image_opened`` /
    ``meter_patched`` events, and later events about an opened cp. Release transactions
    and events (a release's image is public) are not a meter's."""

    def __init__(self, images: frozenset[bytes]) -> None:
        self.images = images
        self.opened: set[str] = set()
        self.shown: dict[str, int] = {}
        """Transaction kind or event type -> items showing an image outside an opening."""

    def tx(self, kind: str, body: Any) -> None:
        if kind in IMAGE_PUBLISHERS or kind == "firmware/patch":
            return
        if kind == "privacy/meter_image" and isinstance(body, dict) and "salt" in body:
            return
        if holds_any(body, self.images):
            self.shown[kind] = self.shown.get(kind, 0) + 1

    def event(self, e: dict[str, Any]) -> None:
        t = str(e.get("type"))
        if t in OPENING_EVENTS:
            self.opened.add(str(e.get("cp")))
            return
        if t in IMAGE_RELEASE_EVENTS or str(e.get("cp")) in self.opened:
            return
        if holds_any(e, self.images):
            self.shown[t] = self.shown.get(t, 0) + 1

    def scan(self, path: Path) -> None:
        """Scan one store (openings are tracked per store, in block order)."""
        self.opened = set()
        with StoreView(path) as view:
            for _h, txs, block_events in view.blocks():
                for st in txs:
                    self.tx(st.tx.kind, st.tx.body)
                    for e in st.events:
                        self.event(e)
                for e in block_events:
                    self.event(e)

    @property
    def total(self) -> int:
        return sum(self.shown.values())


def fleet_images(ctx: SimContext) -> frozenset[bytes]:
    """Every image a member's meter ran in the run (now or before a patch or a flash)."""
    fleet = ctx.community.fleet
    if fleet is None:
        return frozenset()
    return frozenset(img for m in fleet.meters.values() for img in (m.firmware, *m.history))


def household_owners(ctx: SimContext) -> dict[bytes | str, str]:
    """Member address, meter address and cp id -> the household's cp id."""
    out: dict[bytes | str, str] = {}
    for m in ctx.members:
        out[m.address] = out[m.meter.address] = out[m.cp] = m.cp
    return out


def genesis_owners(path: Path) -> dict[bytes | str, str]:
    """``household_owners`` as a store's genesis registry gives it: members hold a cp, a
    meter's ``meter_of`` names its cp."""
    with StoreView(path) as view:
        doc = Genesis.decode(view.genesis()).doc
    out: dict[bytes | str, str] = {}
    for x in doc["participants"]:
        cp = x.get("cp") or x.get("meter_of")
        if cp:
            out[address_of(x["alg"], x["pk"])] = out[cp] = cp
    return out


def households_named(obj: Any, owners: dict[bytes | str, str]) -> set[str]:
    """The households ``obj`` (a decoded body or event, nested) names, as ``names_any``."""
    if isinstance(obj, (bytes, str)):
        i = owners.get(obj)
        return set() if i is None else {i}
    if isinstance(obj, dict):
        return set().union(*(households_named(k, owners) | households_named(v, owners)
                             for k, v in obj.items())) if obj else set()
    if isinstance(obj, (list, tuple)):
        return set().union(*(households_named(x, owners) for x in obj)) if obj else set()
    return set()


def _item_slot(obj: Any, slot_time: int) -> int:
    """The slot an item is about: its ``slot`` field, else its block's slot."""
    s = obj.get("slot") if isinstance(obj, dict) else None
    return s if isinstance(s, int) and not isinstance(s, bool) else slot_time // SLOT_S


@dataclass
class ClearCount:
    """Store items naming a household, split by whether every household they name was out of
    the epoch pool in the item's epoch (``out``: kept out by the ledger's ticket cap — a
    sanction — or clear mode) or not (``pooled``: a leak of a pseudonymous household)."""

    readings: dict[str, int] = field(default_factory=lambda: {"pooled": 0, "out": 0})
    orders: dict[str, int] = field(default_factory=lambda: {"pooled": 0, "out": 0})


def count_clear(ctx: SimContext,
                out_of_pool: Mapping[int, frozenset[str]] | None = None) -> dict[str, Any]:
    """``count_clear_in`` over the run's validator stores, households and meter images."""
    return count_clear_in(store_paths(ctx), household_owners(ctx), fleet_images(ctx),
                          out_of_pool)


def count_clear_started(ctx: SimContext, out_of_pool: Mapping[int, frozenset[str]] | None = None
                        ) -> Future[dict[str, Any]]:
    """``count_clear`` in a process of its own (``count_clear_in_background``)."""
    return count_clear_in_background(store_paths(ctx), household_owners(ctx),
                                     fleet_images(ctx), out_of_pool)


def count_clear_in_background(paths: list[Path], owners: dict[bytes | str, str],
                              fleet: frozenset[bytes],
                              out_of_pool: Mapping[int, frozenset[str]] | None = None
                              ) -> Future[dict[str, Any]]:
    """``count_clear_in`` in a process of its own, beside what the caller does next (the
    demo: the curious validator's analysis, the rest of the summary); for closed, final
    stores. ``.result()`` is ``count_clear_in``'s dict (or raises what it raised)."""
    # forked: the child reads the stores from their paths and needs nothing re-imported
    started = start_forked(lambda: count_clear_in(paths, owners, fleet, out_of_pool))
    if started is None:  # no fork on this platform: counted here
        started = Future()
        started.set_result(count_clear_in(paths, owners, fleet, out_of_pool))
    return started


def count_clear_in(paths: list[Path], owners: dict[bytes | str, str], fleet: frozenset[bytes],
                   out_of_pool: Mapping[int, frozenset[str]] | None = None) -> dict[str, Any]:
    """Scan every validator store: transactions and events that are readings or orders and
    name a household (sender, or any field: address or cp id). Both counts are per store
    item summed over the stores; 0 means no validator holds a household's reading or order.
    Also ``clear_meter_images``: items that show a meter's firmware image outside an
    opening (``ImageScan``), summed over the stores, and ``clear_meter_images_by_kind``.

    ``owners`` maps each household's addresses and cp id to its cp id (``household_owners``,
    ``genesis_owners``); ``fleet`` holds the meters' images. ``out_of_pool`` (privacy mode):
    epoch -> cp ids of the members the ledger kept out of that
    epoch's pool (reputation restricted/suspended: ``Pool.ticket_cap`` 0), who trade under
    their own identity by rule. Each count is then split in ``clear_by_pool``: ``pooled``
    (items naming a household that held pseudonyms in the item's epoch: a leak, 0 when the
    defence holds) and ``out_of_pool`` (items naming only households kept out).

    A store's counts are a function of its block rows alone (what ``StoreView.blocks``
    reads), so a store whose rows are byte-equal to one already scanned counts what that
    one counted without decoding them again (``block_rows_digest``; the demo's four stores
    hold the same certified blocks: a scan instead of four, issue 17)."""
    out_of = out_of_pool or {}
    count = ClearCount()
    shown_pooled: dict[str, int] = {}
    shown_out: dict[str, int] = {}
    scanned: dict[bytes, _StoreCount] = {}
    for path in paths:
        digest = block_rows_digest(path)
        got = scanned.get(digest)
        if got is None:
            got = scanned[digest] = _count_store(path, owners, fleet, out_of)
        for side in ("pooled", "out"):
            count.readings[side] += got.count.readings[side]
            count.orders[side] += got.count.orders[side]
        for mine, theirs in ((shown_pooled, got.shown_pooled), (shown_out, got.shown_out)):
            for k, n in theirs.items():
                mine[k] = mine.get(k, 0) + n
    by_kind = dict(shown_pooled)
    for k, n in shown_out.items():
        by_kind[k] = by_kind.get(k, 0) + n
    images_pooled, images_out = sum(shown_pooled.values()), sum(shown_out.values())
    out: dict[str, Any] = {
        "clear_household_readings": sum(count.readings.values()),
        "clear_household_orders": sum(count.orders.values()),
        "clear_meter_images": images_pooled + images_out,
        "clear_meter_images_by_kind": dict(sorted(by_kind.items())),
        "stores_scanned": len(paths)}
    if out_of_pool is not None:
        out["clear_by_pool"] = {
            "pooled": {"readings": count.readings["pooled"], "orders": count.orders["pooled"],
                       "meter_images": images_pooled},
            "out_of_pool": {"readings": count.readings["out"], "orders": count.orders["out"],
                            "meter_images": images_out}}
    return out


def block_rows_digest(path: Path) -> bytes:
    """A digest of a store's block rows as ``StoreView.blocks`` reads them (height, header,
    transactions, receipts, in height order, each length-prefixed): equal digests, equal
    rows."""
    h = hashlib.blake2b(digest_size=32)
    with StoreView(path) as view:
        for row in view.db.execute(
                "SELECT height, header, txs, receipts FROM blocks ORDER BY height"):
            height, *parts = row
            h.update(int(height).to_bytes(8, "big"))
            for part in parts:
                b = bytes(part)
                h.update(len(b).to_bytes(8, "big"))
                h.update(b)
    return h.digest()


@dataclass
class _StoreCount:
    """What ``count_clear_in`` counts in one store."""

    count: ClearCount
    shown_pooled: dict[str, int]
    shown_out: dict[str, int]


def _count_store(path: Path, owners: dict[bytes | str, str], fleet: frozenset[bytes],
                 out_of: Mapping[int, frozenset[str]]) -> _StoreCount:
    count = ClearCount()
    images_pooled = ImageScan(fleet)
    images_out = ImageScan(fleet)
    images_pooled.opened = images_out.opened = set()  # openings hold for both sides

    def side(named: set[str], obj: Any, slot_time: int) -> str:
        kept = out_of.get(_item_slot(obj, slot_time) // EPOCH_SLOTS, frozenset())
        return "out" if named <= kept else "pooled"

    def item(kind: str, obj: Any, named: set[str], slot_time: int, is_tx: bool) -> None:
        where = side(named, obj, slot_time) if named else "pooled"
        scan = images_out if where == "out" else images_pooled
        if is_tx:
            scan.tx(kind, obj)
        else:
            scan.event(obj)
        if not named:
            return
        if kind in READING_TXS or kind in READING_EVENTS:
            count.readings[where] += 1
        elif kind in ORDER_TXS or kind in ORDER_EVENTS:
            count.orders[where] += 1

    with StoreView(path) as view:
        for h, txs, block_events in view.blocks():
            for st in txs:
                kind, body = st.tx.kind, st.tx.body
                named: set[str] = set()
                if kind in READING_TXS or kind in ORDER_TXS:
                    named = households_named(body, owners)
                    if (i := owners.get(st.tx.sender)) is not None:
                        named.add(i)
                item(kind, body, named, h.slot_time, True)
                for e in st.events:
                    t = str(e.get("type"))
                    item(t, e, households_named(e, owners)
                         if t in READING_EVENTS or t in ORDER_EVENTS else set(),
                         h.slot_time, False)
            for e in block_events:
                t = str(e.get("type"))
                item(t, e, households_named(e, owners)
                     if t in READING_EVENTS or t in ORDER_EVENTS else set(),
                     h.slot_time, False)
    return _StoreCount(count, images_pooled.shown, images_out.shown)


# -- the curious validator's observation -------------------------------------------------------
@dataclass
class Observation:
    """Everything the privacy scenarios' adversary takes from one validator's store and API.

    Households come from the genesis registry (members hold a cp; a meter's ``meter_of`` names
    it); everything per slot from blocks and events; each pseudonym's final balance from the
    node's HTTP API (its record in state)."""

    validator: int
    households: list[bytes] = field(default_factory=list)      # member addresses, genesis order
    household_cp: dict[bytes, str] = field(default_factory=dict)
    household_roles: dict[bytes, tuple[str, ...]] = field(default_factory=dict)
    readings: dict[tuple[int, str], int] = field(default_factory=dict)   # (slot, cp) -> net import
    envelopes: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    storage: dict[tuple[int, str], int] = field(default_factory=dict)
    """(slot, cp) -> battery discharge its sub-meter reported (certificates)."""
    images: dict[tuple[int, str], bytes] = field(default_factory=dict)
    """(slot, cp) -> the firmware value its reading attested (an image, or a salted
    commitment under privacy mode)."""
    known_images: set[bytes] = field(default_factory=set)
    """Every release image the store names (genesis releases, ``firmware_released``)."""
    image_salts: dict[str, set[bytes]] = field(default_factory=dict)
    """cp -> salts an opening of its sealed firmware record showed (an accepted or a refused
    transaction: a refused one may carry the right salt too)."""
    orders: dict[tuple[int, bytes], tuple[int, int, int]] = field(default_factory=dict)
    """(slot, sender) -> (side +1 sell / -1 buy, energy Wh, price micro/kWh), last order."""
    pseudonyms: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # -> (first, last)
    finals: dict[bytes, int] = field(default_factory=dict)     # pseudonym -> final micro
    claims: dict[tuple[int, bytes], int] = field(default_factory=dict)      # (epoch, member)
    tickets: dict[tuple[int, bytes], int] = field(default_factory=dict)     # (epoch, member)
    opened: dict[bytes, bytes] = field(default_factory=dict)   # pseudonym -> identity
    aggregates: dict[int, int] = field(default_factory=dict)   # slot -> published total
    allowance_micro: int = 0
    epoch_slots: int = 96
    api_calls: int = 0
    api_state_root: str = ""
    store_state_root: str = ""

    def image_of(self, slot: int, cp: str) -> bytes | None:
        """The image the reading of ``cp`` in ``slot`` attested, as far as the store tells:
        a release image shown in clear, or the image an opened record's salt recovers from
        the reading's commitment (every known image tried); None for a sealed one."""
        v = self.images.get((slot, cp))
        if v is None or v in self.known_images:
            return v
        return next((i for salt in sorted(self.image_salts.get(cp, ()))
                     for i in sorted(self.known_images) if image_commitment(i, salt) == v), None)


def _genesis_households(genesis: Genesis) -> tuple[list[bytes], dict[bytes, str],
                                                  dict[bytes, tuple[str, ...]]]:
    addrs, cps, roles = [], {}, {}
    for p in genesis.doc.get("participants", []):
        r = tuple(p.get("roles", ()))
        if p.get("cp") and ({"prosumer", "consumer"} & set(r)):
            a = address_of(p["alg"], p["pk"])
            addrs.append(a)
            cps[a] = str(p["cp"])
            roles[a] = r
    return addrs, cps, roles


def observe_store(path: Path, validator: int, api: Any = None) -> Observation:
    """Read one validator's store file (and, through ``api``, its node's HTTP API: an
    ``httpx.Client`` on its base URL) into an ``Observation``."""
    with StoreView(path) as view:
        genesis = Genesis.decode(view.genesis())
        obs = Observation(validator)
        obs.households, obs.household_cp, obs.household_roles = _genesis_households(genesis)
        priv = genesis.doc.get("privacy") or {}
        obs.allowance_micro = int(priv.get("allowance_micro", 0))
        obs.epoch_slots = int(priv.get("epoch_slots", 96))
        for rel in (genesis.doc.get("firmware") or {}).get("releases", []):
            obs.known_images.add(bytes(rel["manifest"]["image_sha3"]))
        last: Header | None = None
        reading_keys: dict[bytes, str] = {}   # a pseudonym's reading key -> its stand-in cp
        for header, txs, block_events in view.blocks():
            last = header
            for st in txs:
                body = st.tx.body
                _observe_openings(obs, st.tx.kind, st.tx.sender, body, reading_keys)
                if not st.ok:
                    continue
                if st.tx.kind == "market/order":
                    side = 1 if body["side"] == "sell" else -1
                    obs.orders[(int(body["slot"]), st.tx.sender)] = (
                        side, int(body["energy_wh"]), int(body["price_micro_per_kwh"]))
                elif st.tx.kind == "market/envelope":
                    for cp, imp, exp in body["envelopes"]:
                        obs.envelopes[(int(body["slot"]), str(cp))] = (int(imp), int(exp))
                for e in st.events:
                    _observe_event(obs, e)
            for e in block_events:
                _observe_event(obs, e)
        if last is not None:
            obs.store_state_root = last.state_root.hex()
    if api is not None:
        _observe_api(obs, api)
    return obs


def _observe_openings(obs: Observation, kind: str, sender: bytes, body: Any,
                      reading_keys: dict[bytes, str]) -> None:
    """Openings of sealed firmware images a transaction body shows, accepted or not (a
    refused patch still carries its opening): a registration names each pseudonym's
    reading key; a patch signed by one, or the DSO's opening, gives (image, salt)."""
    if kind == "privacy/register":
        for leaf in body.get("leaves", []):
            reading_keys[address_of(leaf["reading_alg"], leaf["reading_pk"])] = \
                pseudo_cp(address_of(leaf["alg"], leaf["pk"]))
    if kind == "firmware/patch" and isinstance(body.get("manifest"), dict):
        obs.known_images.add(bytes(body["manifest"].get("image_sha3", b"")))
    if kind == "firmware/patch" and "salt" in body and sender in reading_keys:
        obs.image_salts.setdefault(reading_keys[sender], set()).add(bytes(body["salt"]))
    elif kind == "privacy/meter_image" and "salt" in body:
        obs.image_salts.setdefault(pseudo_cp(bytes(body["pseudonym"])), set()).add(
            bytes(body["salt"]))


def _observe_event(obs: Observation, e: dict[str, Any]) -> None:
    t = e.get("type")
    if t == "reading":
        obs.readings[(int(e["slot"]), str(e["cp"]))] = int(e["import_wh"]) - int(e["export_wh"])
        if e.get("firmware") is not None:
            obs.images[(int(e["slot"]), str(e["cp"]))] = bytes(e["firmware"])
    elif t == "reading_flagged":  # the DSO's estimate replaces the reading in settlement
        obs.readings[(int(e["slot"]), str(e["cp"]))] = (int(e["estimate_import_wh"])
                                                        - int(e["estimate_export_wh"]))
    elif t == "firmware_released":
        obs.known_images.add(bytes(e["image_sha3"]))
    elif t == "image_opened":   # an opening of a sealed record: its image and salt
        obs.image_salts.setdefault(str(e["cp"]), set()).add(bytes(e["salt"]))
    elif t == "storage_reading":
        obs.storage[(int(e["slot"]), str(e["cp"]))] = int(e["discharged_wh"])
    elif t == "pseudonym_registered":
        obs.pseudonyms[bytes(e["pseudonym"])] = (int(e["first_slot"]), int(e["last_slot"]))
    elif t == "pool_claim":
        obs.claims[(int(e["epoch"]), bytes(e["member"]))] = int(e["amount_micro"])
    elif t == "pool_joined":
        obs.tickets[(int(e["epoch"]), bytes(e["member"]))] = int(e["tickets"])
    elif t == "identity_opened":
        obs.opened[bytes(e["pseudonym"])] = bytes(e["identity"])
    elif t == "aggregate":
        obs.aggregates[int(e["slot"])] = int(e["total_wh"])


def _observe_api(obs: Observation, api: Any) -> None:
    """Each pseudonym's record (its final balance) from the node's published privacy view,
    one epoch a request (``GET /v1/views/privacy/pseudonyms/<epoch>``)."""
    status = api.get("/v1/status").json()
    obs.api_state_root = str(status["state_root"])
    obs.api_calls += 1
    for epoch in sorted({first // obs.epoch_slots for first, _ in obs.pseudonyms.values()}):
        r = api.get(f"/v1/views/privacy/pseudonyms/{epoch}")
        obs.api_calls += 1
        r.raise_for_status()
        for rec in r.json().get("value") or []:
            p = bytes.fromhex(rec["address"])
            if p in obs.pseudonyms and rec.get("final_micro") is not None:
                obs.finals[p] = int(rec["final_micro"])


class NodeReadOnly(RejectedTx):
    """The curious validator's restarted node serves reads only."""

    rule = "read-only-node"


def _refuse(raws: Any) -> list[Tx | RejectedTx]:
    return [NodeReadOnly("this node was restarted from its store to be read") for _ in raws]


def _idle() -> dict[str, Any]:
    """A restarted node's own counters: nothing queued, nobody seen misbehaving (since)."""
    return {"mempool": 0, "offenders": {}}


@contextmanager
def node_api(path: Path, validator: int, key: SigningKey) -> Iterator[Any]:
    """The curious validator restarts its node from its own store, opened read-only (the
    file is not changed and not copied: a copy costs a store's size on disk, which filled
    /tmp at 1,000 members), and serves its HTTP API on loopback; yields an
    ``httpx.Client`` on it. Stopped on exit."""
    import httpx  # the API stack loads only for this analysis, not for every demo run

    from gridledger.api import create_app
    from gridledger.api.limits import ServerThread
    from gridledger.node.service import ValidatorService
    from gridledger.node.validator import Validator

    with StoreView(path) as view:
        genesis = Genesis.decode(view.genesis())
    # the store itself, read-only: no copy (a copy of a 1,000-member store filled /tmp)
    node = Validator(validator, key, genesis, path, readonly=True)
    try:
        service = ValidatorService(node, threading.RLock(), _refuse, _idle)
        api = ServerThread(create_app(service), "127.0.0.1", 0, name="curious-api")
        try:  # port 0: the kernel picks a free one on the bound socket (no probe-then-bind race)
            with httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=30.0) as client:
                yield client
        finally:
            api.stop()
            service.close()
    finally:
        node.close()
