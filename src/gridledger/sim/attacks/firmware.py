"""Smart-meter firmware attacks (docs/threat-model.md row 10).

* ``vulnerable-firmware``: mid-day the vendor learns that single-phase firmware 4.1.x lets
  anyone on the meter's local port rewrite what it reports; it publishes an advisory and a
  fix (``Fleet.disclose``; the firmware feature plays the vendor, the quorum and the
  meters). One household on 4.1.2 exploits its own meter from then on: it hides 30-60 % of
  its import in every slot, however small (small lies hide in the DSO's noise), and its
  agent keeps bidding. Every meter on 4.1.x is quarantined by the advisory; the honest ones
  are patched once the DSO and the validators approve the fix.
* ``fake-patch``: a household flashes home-made firmware that under-reports, so its meter
  attests an image nobody released and is quarantined; it then tries to lift the
  quarantine with three fake patches — its own image under a manifest it signed itself, a
  vendor-signed engineering build the quorum never approved (leaked), and the approved
  release's manifest while attesting its own image — and, whenever one is accepted, keeps
  using it.

Detected, mitigated and loss are read from the ledger: receipts and admission results of
the attacker's transactions, ``reading`` events marked ``quarantine``, the DSO's
``reading_flagged`` estimates, ``meter_quarantined`` / ``meter_released`` / ``order_placed``
events. Loss = energy the attacker hid in slots whose reading settled as reported (no
estimate replaced it), at the retail tariff (the grid account's loss).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from gridledger.crypto.hashing import sha3_256
from gridledger.errors import NotApplicable, RejectedTx
from gridledger.grid import SlotMeasurements, under_report
from gridledger.ledger.modules.firmware.types import Manifest
from gridledger.ledger.tx import decode_tx
from gridledger.meter import SignedRelease
from gridledger.meter.device import patch_body
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.attack_base import Attack
from gridledger.sim.clock import Step, step_slot
from gridledger.sim.community import Member
from gridledger.sim.fleet import SINGLE_PHASE, Disclosure, Fleet, image_of

ADVISED = ("4.1.0", "4.1.1", "4.1.2")
FIX = ("4.1.3", "4.1.0")
PATCH_RULES = ("vendor-signature", "release-unapproved", "patch-hash-mismatch")


class _MeterTamper(Attack):
    """Shared by both: a member whose meter lies from ``start`` on, read back from the ledger."""

    window: ClassVar[tuple[float, float]] = (0.45, 1.0)
    drives_meter: ClassVar[bool] = True
    hide_range: ClassVar[tuple[float, float]] = (0.30, 0.60)

    def fleet(self) -> Fleet:
        fleet = self.eng.community.fleet
        if fleet is None:
            raise NotApplicable("the community has no meter fleet")
        return fleet

    def start_slot(self) -> int:
        return next((s for s in self.eng.trading_slots() if self.eng.in_window(s, *self.window)),
                    self.eng.first)

    def recruit(self, cps: list[str]) -> Member:
        self.attacker = self.pick(lambda m: m.cp in cps,
                                  key=lambda m: (self.load_in(m, *self.window), m.cp))
        self.start = self.start_slot()
        self.hidden: dict[int, int] = {}
        self.order_ids: dict[bytes, int] = {}   # the attacker's order tx id -> its slot
        self.order_rules: dict[bytes, str] = {}
        self.patches: list[tuple[str, int, str]] = []
        """(member cp, step slot of the block with its ``meter_patched``, version)."""
        self.meter_txs: set[bytes] = set()
        """Ids of the transactions the attacker's meter sent (patches)."""
        return self.attacker

    def member_cp(self, ledger_cp: str) -> str | None:
        """The member's own cp behind a cp the ledger names (a stand-in under privacy)."""
        owner = self.eng.identities.owner_of_cp(ledger_cp)
        return owner.cp if owner is not None else None

    # the exploit: under-report import in every slot from ``start``
    def measurements(self, slot: int, meas: SlotMeasurements,
                     honest: SlotMeasurements) -> SlotMeasurements:
        if slot < self.start or slot not in self.eng.trading_slots():
            return meas
        true_import = max(0, -int(self.eng.delivered_truth(slot, self.attacker.cp)))
        frac = random.Random(f"{self.name}/{self.eng.sc.seed}/{slot}").uniform(*self.hide_range)
        h = int(true_import * frac)
        if h <= 0:
            return meas
        self.hidden[slot] = h
        return under_report(meas, {self.attacker.cp: h})

    def after_submit(self, slot: int, raws: list[bytes]) -> None:
        # the orders it sent once the ledger could know (the advisory, or its first reading
        # from the tampered meter, is in a block of the step ``start``)
        if slot <= self.start:
            return
        # its trading identity for the slot: itself, or its pseudonym under privacy mode
        me = self.eng.identities.trading_key(self.attacker, slot).address
        # the slot's orders are in this block's transactions (scanning every transaction the
        # run signed, each slot, grew with the run: quadratic over a long one)
        tx_info = self.eng.data.tx_info
        for tx_id in (decode_tx(raw).id for raw in raws):
            info = tx_info.get(tx_id)
            if info is not None and info.sender == me and info.kind == "market/order" \
                    and tx_id not in self.order_ids and info.body.get("slot") == slot:
                self.order_ids[tx_id] = slot

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for r in fb.result.receipts:
            if r.tx_hash in self.order_ids:
                self.order_rules[r.tx_hash] = r.rule
        slot = step_slot(fb.header.slot_time)
        for e in events:
            if e.get("type") == "meter_patched":
                cp = self.member_cp(e["cp"])
                if cp is not None:
                    self.patches.append((cp, slot, e["version"]))

    def caused(self, tx_id: bytes) -> bool:
        """A failed transaction the attacker signed, with its trading or its meter's key."""
        if tx_id in self.meter_txs:
            return True
        info = self.eng.data.tx_info.get(tx_id)
        if info is None:
            return False
        return (info.sender == self.attacker.meter.address
                or self.eng.identities.owner(info.sender) is self.attacker)

    # -- read back ---------------------------------------------------------------------------
    def _reading_marks(self) -> tuple[set[int], set[int]]:
        """(slots whose reading the ledger took in quarantine, slots the DSO's estimate
        replaced) for the attacker's cp."""
        cp, mine = self.attacker.cp, self.member_cp
        quarantined = {e["slot"] for e in self.eng.data.events_of("reading")
                       if e.get("quarantine") and mine(e["cp"]) == cp}
        replaced = {e["slot"] for e in self.eng.data.events_of("reading_flagged")
                    if mine(e["cp"]) == cp}
        return quarantined, replaced

    def _loss(self, replaced: set[int]) -> int:
        tau = self.eng.params.retail_import_micro_per_kwh
        return sum(h * tau // 1000 for s, h in self.hidden.items() if s not in replaced)

    def _orders(self) -> tuple[int, int, int]:
        """(orders the attacker sent from ``start`` on, rejected as meter-quarantined,
        accepted)."""
        sent = len(self.order_ids)
        blocked = sum(1 for r in self.order_rules.values() if r == "meter-quarantined")
        accepted = sum(1 for r in self.order_rules.values() if r == "")
        return sent, blocked, accepted


class VulnerableFirmware(_MeterTamper):
    name: ClassVar[str] = "vulnerable-firmware"
    threat: ClassVar[str] = "10 smart-meter firmware"
    defence: ClassVar[str] = (
        "firmware registry: the vendor's advisory quarantines every meter on the advised "
        "versions at once — readings settle on the DSO's estimate, no orders — until each "
        "is patched to the fix the DSO and a validator quorum approved")
    advisory_id: ClassVar[str] = "MW-SA-2016-0516"

    def setup(self) -> None:
        fleet = self.fleet()
        self.victims = fleet.cps_on(SINGLE_PHASE, ADVISED)
        if not self.victims:
            raise NotApplicable(f"no meter in this community runs the advised firmware "
                                f"({SINGLE_PHASE} {', '.join(ADVISED)}: members with DER have "
                                f"three-phase meters)")
        self.recruit(self.victims)
        fleet.disclose(Disclosure(self.start, self.advisory_id, SINGLE_PHASE, ADVISED,
                                  "critical", FIX))

    def result(self) -> dict[str, Any]:
        data = self.eng.data
        quarantined_readings, replaced = self._reading_marks()
        tampered = sorted(self.hidden)
        caught = sum(1 for s in tampered if s in quarantined_readings)
        sent, blocked, _ = self._orders()
        loss = self._loss(replaced)
        went_in = {self.member_cp(e["cp"]) for e in data.events_of("meter_quarantined")
                   if e["reason"] == "advised-firmware"}
        patched_at: dict[str, int] = {}
        for cp, a, _ in self.patches:    # the first: later ones patch its later pseudonyms
            patched_at.setdefault(cp, a)
        # orders the ledger placed for meters on the advised versions after the advisory
        # was in force and before they were patched (for the next slot's gate)
        # (orders name the trading identity: the member, or its pseudonym under privacy mode)
        owners = {e["owner"]: self.eng.identities.owner(e["owner"])
                  for e in data.events_of("order_placed") if e["slot"] > self.start}
        placed = [(m.cp, e["slot"]) for e in data.events_of("order_placed")
                  if e["slot"] > self.start and (m := owners[e["owner"]]) is not None
                  and m.cp in self.victims]
        unpatched = [(cp, s) for cp, s in placed if cp not in patched_at or s <= patched_at[cp]]
        by_attacker = sum(1 for cp, _ in unpatched if cp == self.attacker.cp)
        # the victims that follow the registry: honest members, and members other scenarios
        # recruited (their meters install the fix too: SimContext.keeps_meter_rules)
        honest = [cp for cp in self.victims if self.eng.keeps_meter_rules(self.eng.by_cp[cp])]
        mitigated = (loss == 0 and not unpatched and caught == len(tampered)
                     and set(self.victims) <= went_in)
        return self.record(
            len(tampered) + sent, caught + blocked, mitigated, loss,
            attacker=self.attacker.name, advisory=self.advisory_id, disclosed_slot=self.start,
            meters_on_advised_versions=len(self.victims), quarantined=len(went_in),
            honest_on_advised_versions=len(honest),  # name kept: the meters that keep the rules
            honest_patched=sum(1 for cp in honest if cp in patched_at),
            slots_to_patch=sorted(a - self.start for cp, a in patched_at.items() if cp in honest),
            tampered_readings=len(tampered),
            tampered_readings_estimated=len(set(tampered) & replaced),
            exploiter_orders_sent=sent, exploiter_orders_rejected=blocked,
            orders_placed_unpatched=len(unpatched), exploiter_orders_placed=by_attacker,
            hidden_wh=sum(self.hidden.values()),
            note="injected = tampered readings + the exploiter's orders after the advisory; "
                 "loss = hidden energy settled without the DSO's estimate, at the retail tariff")


class FakePatch(_MeterTamper):
    name: ClassVar[str] = "fake-patch"
    threat: ClassVar[str] = "10 smart-meter firmware"
    defence: ClassVar[str] = (
        "a patch must carry the vendor's signature on its manifest, name a release the DSO "
        "and a validator quorum approved, and attest exactly that release's image; until "
        "then the meter stays quarantined (readings on the DSO's estimate, no orders)")
    window: ClassVar[tuple[float, float]] = (0.55, 1.0)
    KINDS: ClassVar[tuple[str, ...]] = ("unsigned", "unapproved", "wrong-hash")

    def setup(self) -> None:
        fleet = self.fleet()
        vulnerable = set(fleet.cps_on(SINGLE_PHASE, ADVISED))
        single = [cp for cp in fleet.cps_on(SINGLE_PHASE, ("4.2.0",)) if cp not in vulnerable]
        self.recruit(single or [cp for cp in fleet.meters if cp not in vulnerable])
        self.meter = fleet.meters[self.attacker.cp]
        genuine = self.meter.running
        own = f"homebrew {self.name} {self.eng.sc.seed}".encode()
        self.homebrew = Manifest(genuine.vendor, genuine.model, "4.2.1", sha3_256(own),
                                 genuine.version)
        self.attempts: list[dict[str, Any]] = []
        self.by_tx: dict[bytes, dict[str, Any]] = {}
        self.working: str | None = None
        self.flashed = False

    def _fake(self, kind: str) -> dict[str, Any]:
        fleet, m = self.fleet(), self.meter
        evil = self.homebrew.image_sha3
        if kind == "unsigned":
            # its own image, under a manifest signed with the only key it has: the meter's
            sig = self.attacker.meter.sign(self.homebrew.encode(), b"gl/fw-manifest")
            return patch_body(SignedRelease(self.homebrew, sig), evil)
        if kind == "unapproved":
            # an engineering build the vendor signed but never released (it leaked)
            leaked = fleet.vendor.sign(m.running.model, "4.9.0",
                                       image_of(m.running.model, "4.9.0-eng"), "4.0.0")
            return patch_body(leaked, leaked.manifest.image_sha3)
        # the newest approved release of its model, while attesting its own image
        model = m.running.model
        best = max((r for (mod, _), r in fleet.releases.items() if mod == model),
                   key=lambda r: r.manifest.version_key)
        return patch_body(best, evil)

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        if slot == self.start and not self.flashed:
            self.meter.history.append(self.meter.firmware)
            self.meter.running = self.homebrew     # flashed: readings now attest its image
            self.flashed = True
        return []

    def before_tick(self, time_s: int) -> None:
        # in block C, right after its meter's reading: a patch that lifted the quarantine
        # would leave it lifted when the next slot's orders go in
        slot = step_slot(time_s)
        if time_s != Step(slot, True).t_c or slot < self.start:
            return
        k = slot - self.start
        kind = self.KINDS[k] if k < len(self.KINDS) else self.working
        if kind is None:
            return
        eng = self.eng
        body = self._fake(kind)
        # under privacy mode its pseudonym's record is sealed: the patch opens it (the
        # meter holds the salt), as a genuine patch would, so only the fake is refused
        opening = eng.identities.image_opening(self.attacker, slot)
        if opening is not None and eng.ledger.firmware_of(
                eng.identities.ledger_cp(self.attacker, slot)).get("sealed"):
            body.update(opens=opening[0], salt=opening[1])
        raw = eng.tx(eng.identities.meter_key(self.attacker, slot), "firmware/patch", body)
        attempt: dict[str, Any] = {"kind": kind, "slot": slot, "rule": None, "stage": None}
        self.attempts.append(attempt)
        (res,) = eng.submit([raw], time_s)
        self.meter_txs.add(decode_tx(raw).id)
        if isinstance(res, RejectedTx):
            attempt.update(rule=res.rule, stage="admission")
        else:
            self.by_tx[res.id] = attempt

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        super().on_block(fb, events)
        accepted = []
        for r in fb.result.receipts:
            attempt = self.by_tx.pop(r.tx_hash, None)
            if attempt is not None:
                attempt.update(rule=r.rule, stage="execution")
                if r.ok:
                    accepted.append(attempt["kind"])
        released = any(e.get("type") == "meter_released" and e["cp"] == self.attacker.cp
                       for e in events)
        if accepted and released:
            self.working = accepted[-1]    # that one lifted the quarantine: keep using it

    def result(self) -> dict[str, Any]:
        data = self.eng.data
        cp = self.attacker.cp
        detected = sum(1 for a in self.attempts if a["rule"] in PATCH_RULES)
        accepted = sum(1 for a in self.attempts if a["rule"] == "")
        escaped = sum(1 for e in data.events_of("meter_released") if self.member_cp(e["cp"]) == cp)
        _, replaced = self._reading_marks()
        sent, blocked, orders_accepted = self._orders()
        loss = self._loss(replaced)
        mitigated = (accepted == 0 and escaped == 0 and orders_accepted == 0 and loss == 0
                     and detected == len(self.attempts))
        return self.record(
            len(self.attempts), detected, mitigated, loss, attacker=self.attacker.name,
            rules={a["kind"]: a["rule"] for a in self.attempts[:len(self.KINDS)]},
            stages={a["kind"]: a["stage"] for a in self.attempts[:len(self.KINDS)]},
            patches_accepted=accepted, quarantine_escapes=escaped,
            orders_while_compromised=sent, orders_rejected=blocked,
            orders_accepted=orders_accepted, hidden_wh=sum(self.hidden.values()),
            note="injected = fake patches; detected = rejected naming vendor-signature, "
                 "release-unapproved or patch-hash-mismatch")
