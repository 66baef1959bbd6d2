"""The attack lab: THREATS.md scenarios injected into a running community.

Every attack is a small class with hooks into the engine's step (orders, physics, meter
readings, transactions, ticks, blocks) and a ``result()`` in the summary's shape
``{injected, detected, mitigated, loss, ...}``. *Detected* and *mitigated* are read from
what the ledger and the nodes actually did (receipts, events, offenders, admission
rejections), never from the attack's own intentions. *Loss* is money (micro-units) wrongly
moved away from honest participants (or the DSO's grid account for metering fraud).

Attackers are community members chosen deterministically from the seed; they are marked
dishonest, so the ``honest_not_worse`` invariant is checked on everyone else.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gridledger.errors import RejectedTx
from gridledger.grid import SlotMeasurements, craft_stealthy_attack, under_report
from gridledger.ledger import codec
from gridledger.ledger.tx import decode_tx
from gridledger.node.orderer import Entry
from gridledger.sim.agents import Intent
from gridledger.sim.attack_base import Attack

if TYPE_CHECKING:
    from gridledger.node.embedded import FinalizedBlock
    from gridledger.sim.community import Member
    from gridledger.sim.engine import Engine


# ------------------------------------------------------------------------------ metering
class FdiMeter(Attack):
    name = "fdi-meter"
    threat = "1 false data injection"
    defence = ("signed readings; DSO state estimation with residual tests, protected sensors "
               "and a two-slot test; flagged readings replaced by the network estimate")
    window = (0.70, 0.875)   # 16:48-21:00 on a day run

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: m.role == "consumer" and m.battery is None,
                                  key=lambda m: (self.load_in(m, *self.window), m.cp))
        self.hidden: dict[int, int] = {}

    def _hide(self, slot: int) -> int:
        true_import = max(0, -int(self.eng.delivered_truth(slot, self.attacker.cp)))
        if not self.eng.in_window(slot, *self.window) or true_import < 150:
            return 0
        frac = random.Random(f"{self.name}/{self.eng.sc.seed}/{slot}").uniform(0.10, 0.50)
        return int(true_import * frac)

    def measurements(self, slot: int, meas: SlotMeasurements, honest: SlotMeasurements) -> SlotMeasurements:
        h = self._hide(slot)
        if not h:
            return meas
        self.hidden[slot] = h
        return under_report(meas, {self.attacker.cp: h})

    def result(self) -> dict[str, Any]:
        eng = self.eng
        flagged = {s for s in self.hidden if self.attacker.cp in eng.flagged.get(s, set())}
        missed = sorted(set(self.hidden) - flagged)
        tau = eng.params.retail_import_micro_per_kwh
        loss = sum(self.hidden[s] * tau // 1000 for s in missed)
        runs = _runs(sorted(self.hidden))
        within2 = sum(1 for r in runs if any(s in flagged for s in r[:2]))
        honest_flags = sum(len(cps - {self.attacker.cp} - eng.attacker_cps()) for cps in eng.flagged.values())
        return self.record(len(self.hidden), len(flagged), not missed, loss,
                           attacker=self.attacker.name, hidden_wh=sum(self.hidden.values()),
                           uncorrected_wh=sum(self.hidden[s] for s in missed),
                           attack_runs=len(runs), runs_flagged_within_2_slots=within2,
                           honest_meters_flagged=honest_flags,
                           note="loss = hidden energy in slots never flagged, at the retail tariff")


class FdiStealthy(FdiMeter):
    name = "fdi-stealthy"
    defence = ("DSO sensors are signed and protected: every meter is tested against the state "
               "estimated from them alone, so a coordinated a = Hc attack shows")
    window = (0.30, 0.45)    # 07:12-10:48
    sensors_protected = True  # the DSO's sensors sign their readings (the defence)

    def measurements(self, slot: int, meas: SlotMeasurements, honest: SlotMeasurements) -> SlotMeasurements:
        h = self._hide(slot)
        if not h:
            return meas
        self.hidden[slot] = h
        # the attacker controls the meter and tries to move the DSO sensors too; they are
        # authenticated devices, so only the meter and voltages it can reach change
        return craft_stealthy_attack(self.eng.model, meas, self.attacker.cp, h,
                                     attacker_can_modify_sensors=not self.sensors_protected)


# ------------------------------------------------------------------------------ market
class FakeBids(Attack):
    name = "fake-bids"
    threat = "6 market attacks"
    defence = "escrow: a buy order locks its full cost plus fees, or is rejected (insufficient-funds)"
    window = (0.45, 0.55)
    FAKE_WH = 50_000_000     # 50 MWh at the retail price: far beyond any member's means

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: m.role == "consumer")
        self.placed: list[int] = []
        self.rejected = 0
        self.accepted = 0

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        if m is not self.attacker or not self.eng.in_window(slot, *self.window):
            return intents
        self.placed.append(slot)
        v = self.eng.views[slot]
        return [i for i in intents if i.side == "buy"] + [Intent("buy", self.FAKE_WH, v.retail)]

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for r in fb.result.receipts:
            info = self.eng.tx_info.get(r.tx_hash)
            if info and info[0] == self.attacker.address and info[1] == "market/order" \
                    and info[2].get("energy_wh") == self.FAKE_WH:
                if r.ok:
                    self.accepted += 1
                elif r.rule == "insufficient-funds":
                    self.rejected += 1

    def result(self) -> dict[str, Any]:
        loss = self.eng.honest_excess(self.placed)
        return self.record(len(self.placed), self.rejected, self.accepted == 0, loss,
                           attacker=self.attacker.name, entered_book=self.accepted,
                           note="loss = what honest members paid beyond their no-market bill "
                                "in the attacked slots")


class NonDelivery(Attack):
    name = "non-delivery"
    threat = "6 market attacks"
    defence = ("settlement on meter evidence: the seller pays the imbalance price on the "
               "shortfall out of its deposit, the buyer is compensated; reputation sanctions")
    window = (0.75, 0.85)    # 18:00-20:24: PV is gone, the attacker sells energy it lacks
    FAKE_WH = 2_000

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: "pv" in m.der and m.battery is None)
        self.slots: list[int] = []

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        if m is not self.attacker or not self.eng.in_window(slot, *self.window):
            return intents
        self.slots.append(slot)
        return [Intent("sell", self.FAKE_WH, self.eng.views[slot].feed_in)]

    def result(self) -> dict[str, Any]:
        eng = self.eng
        me = self.attacker.address
        nd = [e for e in eng.events if e["type"] == "non_delivery" and e["seller"] == me]
        caught = {e["slot"] for e in nd}
        traded = {s for s in self.slots if any(t["seller"] == me for t in eng.trades.get(s, []))}
        victims = {e["buyer"] for e in nd}
        loss = eng.honest_excess(self.slots, victims)
        gain = sum(b["baseline_total_micro"] - b["total_micro"]
                   for s in self.slots for a, b in eng.bills.get(s, {}).items() if a == me)
        rep = eng.reputation(me)
        penalties = sum(1 for e in eng.events if e["type"] == "reputation" and e["addr"] == me
                        and e["reason"] == "non_delivery")
        sanctioned = penalties >= len(caught)  # every caught slot cost reputation (graduated)
        ok = loss == 0 and gain <= 0 and (sanctioned or not traded)
        return self.record(len(traded), len(caught & traded), ok,
                           loss, attacker=self.attacker.name, shortfall_wh=sum(e["shortfall_wh"] for e in nd),
                           compensation_micro=sum(e["compensation_micro"] for e in nd),
                           cheater_gain_micro=gain, cheater_reputation=rep,
                           reputation_penalties=penalties, victims=len(victims))


class FalseNonReceipt(Attack):
    name = "false-non-receipt"
    threat = "6 market attacks"
    defence = ("disputes decided from the buyer's own signed meter: a false claim costs the "
               "claimant the dispute fee (paid to the seller) and reputation")
    window = (0.45, 0.65)

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: m.role == "consumer")
        self.claimed: set[tuple[int, int]] = set()
        self.decisions: list[dict[str, Any]] = []

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        eng, me = self.eng, self.attacker.address
        out = []
        for s in sorted(eng.bills):
            if not eng.in_window(s, *self.window):
                continue
            for t in eng.trades.get(s, []):
                if t["buyer"] == me and (s, t["index"]) not in self.claimed and len(self.claimed) < 6:
                    self.claimed.add((s, t["index"]))
                    out.append(eng.tx(self.attacker.key, "disputes/claim",
                                      {"slot": s, "trade": t["index"], "claim": "non-receipt"}))
        return out

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        self.decisions += [e for e in events if e["type"] == "dispute_decided"
                           and e["claimant"] == self.attacker.address]

    def result(self) -> dict[str, Any]:
        rejected = [d for d in self.decisions if d["outcome"] == "rejected"]
        remedy = sum(d["remedy_micro"] for d in self.decisions)
        return self.record(len(self.claimed), len(rejected), remedy == 0 and len(rejected) == len(self.claimed),
                           remedy, attacker=self.attacker.name,
                           cheater_gain_micro=-sum(d["fee_micro"] for d in rejected),
                           cheater_reputation=self.eng.reputation(self.attacker.address))


# ------------------------------------------------------------------------------ network
class DosFlood(Attack):
    name = "dos-flood"
    threat = "2 denial of service"
    defence = ("admission in the order size -> signature -> nonce -> quota; per-sender token "
               "buckets scaled by reputation; bounded mempool with fair eviction")
    windows = ((0.33, 0.34), (0.80, 0.81))
    FACTOR = 100

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: True)
        self.sent = self.rejected = self.quota = 0
        self.flood_slots: list[int] = []

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        eng = self.eng
        if not trading or not any(eng.in_window(slot, *w) for w in self.windows):
            return []
        # the sender's quota as policy sets it (burst scaled by reputation)
        burst = int(eng.net.mempool.quota.burst * max(0.1, eng.reputation(self.attacker.address) / 500))
        n = self.FACTOR * max(1, burst)
        key = self.attacker.key
        dso = eng.community.dso.address
        raws = [eng.tx(key, "bank/transfer", {"to": dso, "amount_micro": 1}) for _ in range(n)]
        res = eng.submit(raws, slot * 900 - 450)
        self.sent += n
        self.rejected += sum(1 for r in res if isinstance(r, RejectedTx))
        self.quota += burst
        self.flood_slots.append(slot)
        return []

    def result(self) -> dict[str, Any]:
        eng = self.eng
        honest = {m.address for m in eng.members if m.honest}
        wanted = included = 0
        for s in self.flood_slots:
            for raw in eng.order_raws.get(s, []):
                tx = decode_tx(raw)
                if tx.sender in honest:
                    wanted += 1
                    included += int(eng.placed_ok(tx.id))
        loss = eng.honest_excess(self.flood_slots)
        admitted = self.sent - self.rejected
        ok = included == wanted and loss == 0 and admitted <= self.quota
        return self.record(self.sent, self.rejected, ok, loss,
                           attacker=self.attacker.name, flood_admitted=admitted,
                           flood_quota=self.quota, honest_orders=wanted,
                           honest_orders_included=included, flood_slots=len(self.flood_slots),
                           note="honest latency under flood vs baseline: see timings.dos_flood")


class ByzantineValidator(Attack):
    name = "byzantine-validator"
    threat = "4 51% attack on small ledgers"
    defence = ("BFT quorum certificates over the state root; equivocation evidence; offenders "
               "named; a minority cannot finalise anything")
    windows = (((0.40, 0.45), "wrong-root"), ((0.60, 0.65), "equivocate"))

    def setup(self) -> None:
        n = len(self.eng.net.validators)
        f = (n - 1) // 3
        self.faulty = list(range(n - f, n))
        self.blocks = self.detected = 0
        self.active: str | None = None

    def before_tick(self, time_s: int) -> None:
        slot = (time_s + 450) // 900
        mode = None
        for w, m in self.windows:
            if self.eng.in_window(slot, *w):
                mode = m
        self.active = mode
        for i in self.faulty:
            self.eng.net.validators[i].fault = mode

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        if self.active is None:
            return
        self.blocks += 1
        if all(i in fb.offenders for i in self.faulty):
            self.detected += 1

    def result(self) -> dict[str, Any]:
        named = {i: sorted(r) for i, r in sorted(self.eng.net.offenders.items())}
        honest_named = [i for i in named if i not in self.faulty]
        ok = self.detected == self.blocks and not honest_named and self.eng.validators_agree
        return self.record(self.blocks, self.detected, ok, 0,
                           faulty_validators=self.faulty,
                           offenders={str(i): r for i, r in named.items()},
                           equivocation_evidence=len(self.eng.net.evidence),
                           note="injected = blocks voted on while faulty; every one was "
                                "finalised by the honest quorum")


class Replay(Attack):
    name = "replay"
    threat = "14 communication"
    defence = "per-sender nonces and chain id inside the signature; checked at admission and in execution"
    windows = ((0.37, 0.38), (0.62, 0.63), (0.90, 0.91))
    PER = 3
    RULES = frozenset({"replayed-nonce"})

    def setup(self) -> None:
        self.sent = 0
        self.rejected_admission = 0
        self.rejected_exec = 0
        self.ids: set[bytes] = set()
        self.inject: list[bytes] = []

    def _active(self, slot: int) -> bool:
        return any(self.eng.in_window(slot, *w) for w in self.windows)

    def partials(self, slot: int, values: list[int]) -> list[int]:
        """The aggregators' partial sums for ``slot`` (by position) before they are posted."""
        return values

    def after_submit(self, slot: int, raws: list[bytes]) -> None:
        """Honest orders of this slot are on the wire: copy them, resend them to a node, and
        have a malicious relay slip the copies into the next block behind the originals."""
        if not self._active(slot):
            return
        caps = self._honest_orders(raws)
        res = self.eng.submit(caps, slot * 900 - 450)
        self.rejected_admission += sum(1 for r in res if isinstance(r, RejectedTx))
        mp = self.eng.net.mempool
        for raw in caps:  # bypass admission, as a Byzantine entry node would
            tx = decode_tx(raw)
            mp._queues.setdefault(tx.sender, deque()).append(tx)
            mp._size += 1
        self.sent += 2 * len(caps)
        self.ids |= {decode_tx(r).id for r in caps}

    def _honest_orders(self, raws: list[bytes]) -> list[bytes]:
        honest = {m.address for m in self.eng.members if m.honest}
        return [r for r in raws if decode_tx(r).kind == "market/order"
                and decode_tx(r).sender in honest][: self.PER]

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        # copies share their original's id; only the rule this defence enforces counts
        self.rejected_exec += sum(1 for r in fb.result.receipts
                                  if not r.ok and r.tx_hash in self.ids and r.rule in self.RULES)

    def result(self) -> dict[str, Any]:
        dup = self.eng.duplicate_orders(self.ids)
        caught = self.rejected_admission + self.rejected_exec
        return self.record(self.sent, caught, dup == 0 and caught == self.sent, 0,
                           at_admission=self.rejected_admission, in_execution=self.rejected_exec,
                           duplicated_orders=dup)


class Tamper(Replay):
    name = "tamper"
    defence = "every transaction is ML-DSA signed over its canonical encoding; altered bytes fail"
    windows = ((0.52, 0.53),)
    RULES = frozenset({"bad-signature"})

    def partials(self, slot: int, values: list[int]) -> list[int]:
        """The aggregators' partial sums for ``slot`` (by position) before they are posted."""
        return values

    def after_submit(self, slot: int, raws: list[bytes]) -> None:
        if not self._active(slot):
            return
        out = []
        for raw in self._honest_orders(raws):
            obj = codec.decode(raw)
            obj["body"] = {**obj["body"], "energy_wh": obj["body"]["energy_wh"] * 10}
            out.append(codec.encode(obj))
        res = self.eng.submit(out, slot * 900 - 450)
        self.rejected_admission += sum(1 for r in res if isinstance(r, RejectedTx))
        for raw in out:  # and straight into the ordered log
            self.eng.net.orderer.append(Entry("tx", tx=raw))
        self.sent += 2 * len(out)
        self.ids |= {decode_tx(r).id for r in out}

    def result(self) -> dict[str, Any]:
        r = super().result()
        r["note"] = "captured orders with a tenfold quantity, sent to a node and into the log"
        return r


class ClassicalKey(Attack):
    name = "classical-key"
    threat = "Q quantum adversary"
    defence = "only ML-DSA algorithm ids are accepted; classical algorithms are refused by name"
    window = (0.20, 0.21)

    def setup(self) -> None:
        self.sent = self.rejected = 0
        self.ids: set[bytes] = set()
        self.inject: list[bytes] = []

    def _forge(self, slot: int, alg: str) -> bytes:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519
        from cryptography.hazmat.primitives import hashes

        from gridledger.ledger.tx import signing_bytes

        victim = self.eng.members[0]
        body = {"slot": slot + 1, "side": "buy", "energy_wh": 1000, "price_micro_per_kwh": 1}
        msg = signing_bytes(self.eng.sc.chain_id, victim.address, 0, "market/order", body, alg)
        if alg == "ed25519":
            sig = ed25519.Ed25519PrivateKey.generate().sign(msg)
        else:
            sig = ec.generate_private_key(ec.SECP256R1()).sign(msg, ec.ECDSA(hashes.SHA256()))
        return codec.encode({"alg": alg, "body": body, "chain_id": self.eng.sc.chain_id,
                             "kind": "market/order", "nonce": 0, "sender": victim.address, "sig": sig})

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        if not trading or not self.eng.in_window(slot, *self.window):
            return []
        raws = [self._forge(slot, "ed25519"), self._forge(slot, "ecdsa-p256")]
        res = self.eng.submit(raws, slot * 900 - 450)
        self.rejected += sum(1 for r in res if isinstance(r, RejectedTx) and r.rule == "classical-key")
        self.inject = raws
        self.sent += 2 * len(raws)
        return []

    def before_tick(self, time_s: int) -> None:
        if self.inject and time_s % 900 == 450:
            for raw in self.inject:
                self.eng.net.orderer.append(Entry("tx", tx=raw))
            self.inject = []

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        self.rejected += sum(1 for r in fb.result.receipts if not r.ok and r.rule == "classical-key")

    def result(self) -> dict[str, Any]:
        return self.record(self.sent, self.rejected, self.rejected == self.sent, 0,
                           note="Ed25519 and ECDSA-P256 signed orders in a member's name, "
                                "to a node and straight into the ordered log")


ATTACK_CLASSES: dict[str, type[Attack]] = {c.name: c for c in (
    FdiMeter, FdiStealthy, DosFlood, ByzantineValidator, FakeBids, NonDelivery, FalseNonReceipt,
    Replay, Tamper, ClassicalKey)}
ATTACKS: tuple[str, ...] = tuple(ATTACK_CLASSES)
DEFAULT_ATTACKS = ("fdi-meter", "fake-bids", "non-delivery", "false-non-receipt", "dos-flood",
                   "byzantine-validator", "replay", "bad-aggregator", "usage-inference",
                   "deanonymize", "ev-roaming")
PLANNED = ("price-manipulation", "crash", "audit-export", "vulnerable-firmware", "fake-patch",
           "sybil", "contract-bug")


def _privacy_classes() -> tuple[type[Attack], ...]:
    from gridledger.sim.privacy_attacks import BadAggregator, Deanonymize, UsageInference
    from gridledger.sim.roaming import EvRoaming

    return (BadAggregator, UsageInference, Deanonymize, EvRoaming)


ATTACK_CLASSES.update({c.name: c for c in _privacy_classes()})
ATTACKS = tuple(ATTACK_CLASSES)


def make_attacks(names: Sequence[str], eng: Engine, options: dict[str, Any]) -> list[Attack]:
    out = [ATTACK_CLASSES[n](eng, options.get(n, {})) for n in names]
    for a in out:
        a.setup()
    return out


def _runs(slots: list[int]) -> list[list[int]]:
    """Consecutive runs of slot numbers."""
    out: list[list[int]] = []
    for s in slots:
        if out and s == out[-1][-1] + 1:
            out[-1].append(s)
        else:
            out.append([s])
    return out


__all__ = ["ATTACKS", "DEFAULT_ATTACKS", "PLANNED", "Attack", "make_attacks"]
