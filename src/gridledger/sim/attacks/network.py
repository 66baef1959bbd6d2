"""Network and protocol attacks: flooding (row 2), Byzantine validators (row 4), replayed
and altered messages (row 14), classical signatures (row Q).

Detections are what the nodes did: admission rejections, receipts' rules, offenders named
in certificates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gridledger.errors import RejectedTx
from gridledger.ledger import codec
from gridledger.ledger.tx import decode_tx, signing_bytes
from gridledger.node.embedded import FinalizedBlock
from gridledger.node.orderer import Entry
from gridledger.sim.attack_base import Attack
from gridledger.sim.clock import SLOT_S, T_CLEAR, T_ORDERS, step_slot


def _rejected(results: list[Any]) -> int:
    return sum(1 for r in results if isinstance(r, RejectedTx))


class DosFlood(Attack):
    name: ClassVar[str] = "dos-flood"
    threat: ClassVar[str] = "2 denial of service"
    defence: ClassVar[str] = (
        "admission in the order size -> signature -> nonce -> quota; per-sender token "
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
        raws = eng.txs([(key, "bank/transfer", {"to": dso, "amount_micro": 1})] * n)
        res = eng.submit(raws, slot * SLOT_S + T_ORDERS)
        self.sent += n
        self.rejected += _rejected(res)
        self.quota += burst
        self.flood_slots.append(slot)
        return []

    def result(self) -> dict[str, Any]:
        eng = self.eng
        wanted = included = 0
        for s in self.flood_slots:
            for tx_id, info in eng.data.orders(s):
                if eng.is_honest(info.sender):
                    wanted += 1
                    included += int(eng.data.placed_ok(tx_id))
        loss = eng.honest_excess(self.flood_slots)
        admitted = self.sent - self.rejected
        ok = included == wanted and loss == 0 and admitted <= self.quota
        return self.record(self.sent, self.rejected, ok, loss, allowed=admitted,
                           attacker=self.attacker.name, flood_admitted=admitted,
                           flood_quota=self.quota, honest_orders=wanted,
                           honest_orders_included=included, flood_slots=len(self.flood_slots),
                           note="the attacker's own quota admits a few transactions (allowed); "
                                "every one beyond it is rejected at admission. Honest latency "
                                "under flood vs the other slots is a wall-clock figure")

    def timings(self) -> dict[str, Any]:
        """Honest admit-to-final latency in flooded slots vs the p99 of the other slots."""
        eng = self.eng
        flooded = set(self.flood_slots)
        trading = set(eng.trading_slots())
        lat_f = sorted(v for s, v in eng.step_latency_s if s in flooded)
        lat_b = sorted(v for s, v in eng.step_latency_s if s not in flooded and s in trading)
        if not (lat_f and lat_b):
            return {}
        p99 = lat_b[min(len(lat_b) - 1, int(0.99 * len(lat_b)))]
        return {"dos_flood": {"honest_admit_to_final_s_flood_max": round(max(lat_f), 3),
                              "honest_admit_to_final_s_baseline_p99": round(p99, 3)}}


class ByzantineValidator(Attack):
    name: ClassVar[str] = "byzantine-validator"
    threat: ClassVar[str] = "4 51% attack on small ledgers"
    defence: ClassVar[str] = (
        "BFT quorum certificates over the state root; votes signed over chain, height and "
        "header; block time the (f+1)-th largest of the validators' signed ticks; "
        "equivocation evidence; offenders named; a minority cannot finalise anything")
    # the third window (issue 21.1): relabelled votes of the previous height, ticks a
    # century ahead (own name, another's, another chain), votes for far-future heights
    windows = (((0.40, 0.45), "wrong-root"), ((0.60, 0.65), "equivocate"),
               ((0.80, 0.85), "relabel,forge-tick,far-future"))
    MAX_TIME_STEP_S = 3600
    """Largest step of block time beyond the honest validators' own clock step (0 when time
    held; a forged clock would be years). Measured against the clock, not between blocks:
    the driver may legitimately jump ledger time (privacy mode runs a day on to pay the
    epoch pools)."""

    def setup(self) -> None:
        n = len(self.eng.net.validators)
        f = (n - 1) // 3
        self.faulty = list(range(n - f, n))
        self.blocks = self.detected = 0
        self.active: str | None = None
        self.last: tuple[int, int] | None = None   # (block time, honest clock) of the last block
        self.clock_s = 0
        self.max_time_step_s = 0

    def before_tick(self, time_s: int) -> None:
        self.clock_s = time_s       # what the honest validators tick
        slot = step_slot(time_s)
        mode = None
        for w, m in self.windows:
            if self.eng.in_window(slot, *w):
                mode = m
        self.active = mode
        for i in self.faulty:
            self.eng.net.validators[i].fault = mode

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        t = fb.header.slot_time
        if self.last is not None:
            step, clock_step = t - self.last[0], self.clock_s - self.last[1]
            self.max_time_step_s = max(self.max_time_step_s, step - max(0, clock_step))
        self.last = (t, self.clock_s)
        if self.active is None:
            return
        self.blocks += 1
        if all(i in fb.offenders for i in self.faulty):
            self.detected += 1

    def result(self) -> dict[str, Any]:
        named = {i: sorted(r) for i, r in sorted(self.eng.net.offenders.items())}
        honest_named = [i for i in named if i not in self.faulty]
        time_held = self.max_time_step_s <= self.MAX_TIME_STEP_S
        ok = (self.detected == self.blocks and not honest_named and time_held
              and self.eng.validators_agree)
        return self.record(self.blocks, self.detected, ok, 0,
                           faulty_validators=self.faulty,
                           offenders={str(i): r for i, r in named.items()},
                           honest_named=honest_named,
                           equivocation_evidence=len(self.eng.net.evidence),
                           max_slot_time_step_s=self.max_time_step_s,
                           note="injected = blocks voted on while faulty (wrong root, "
                                "equivocation, relabelled votes, forged ticks, far-future "
                                "votes); every one was finalised by the honest quorum at the "
                                "honest validators' time")


class Replay(Attack):
    name: ClassVar[str] = "replay"
    threat: ClassVar[str] = "14 communication"
    defence: ClassVar[str] = ("per-sender nonces and chain id inside the signature; checked "
                              "at admission and in execution")
    windows: tuple[tuple[float, float], ...] = ((0.37, 0.38), (0.62, 0.63), (0.90, 0.91))
    PER = 3
    RULES = frozenset({"replayed-nonce"})

    def setup(self) -> None:
        self.sent = 0
        self.rejected_admission = 0
        self.rejected_exec = 0
        self.ids: set[bytes] = set()
        self.relay: list[bytes] = []

    def _active(self, slot: int) -> bool:
        return any(self.eng.in_window(slot, *w) for w in self.windows)

    def after_submit(self, slot: int, raws: list[bytes]) -> None:
        """Honest orders of this slot are on the wire: copy them, resend them to a node, and
        have a malicious relay slip the copies into the ordered log behind the originals."""
        if not self._active(slot):
            return
        caps = self._honest_orders(raws)
        res = self.eng.submit(caps, slot * SLOT_S + T_ORDERS)
        self.rejected_admission += _rejected(res)
        self.relay += caps
        self.sent += 2 * len(caps)
        self.ids |= {decode_tx(r).id for r in caps}

    def before_tick(self, time_s: int) -> None:
        # a relay that bypasses admission publishes straight to the log; it waits for the
        # originals' block (A) so that its copies come after them
        if self.relay and time_s % SLOT_S == T_CLEAR % SLOT_S:
            for raw in self.relay:
                self.eng.net.orderer.append(Entry("tx", tx=raw))
            self.relay = []

    def caused(self, tx_id: bytes) -> bool:
        return tx_id in self.ids or super().caused(tx_id)

    def _honest_orders(self, raws: list[bytes]) -> list[bytes]:
        return [r for r in raws if decode_tx(r).kind == "market/order"
                and self.eng.is_honest(decode_tx(r).sender)][: self.PER]

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        # copies share their original's id; only the rule this defence enforces counts
        self.rejected_exec += sum(1 for r in fb.result.receipts
                                  if not r.ok and r.tx_hash in self.ids and r.rule in self.RULES)

    def result(self) -> dict[str, Any]:
        dup = self.eng.data.duplicate_orders(self.ids)
        caught = self.rejected_admission + self.rejected_exec
        return self.record(self.sent, caught, dup == 0 and caught == self.sent, 0,
                           at_admission=self.rejected_admission, in_execution=self.rejected_exec,
                           duplicated_orders=dup)


class Tamper(Replay):
    name: ClassVar[str] = "tamper"
    defence: ClassVar[str] = ("every transaction is ML-DSA signed over its canonical "
                              "encoding; altered bytes fail")
    windows = ((0.52, 0.53),)
    RULES = frozenset({"bad-signature"})

    def after_submit(self, slot: int, raws: list[bytes]) -> None:
        if not self._active(slot):
            return
        out = []
        for raw in self._honest_orders(raws):
            obj = codec.decode(raw)
            obj["body"] = {**obj["body"], "energy_wh": obj["body"]["energy_wh"] * 10}
            out.append(codec.encode(obj))
        res = self.eng.submit(out, slot * SLOT_S + T_ORDERS)
        self.rejected_admission += _rejected(res)
        for raw in out:  # and straight into the ordered log
            self.eng.net.orderer.append(Entry("tx", tx=raw))
        self.sent += 2 * len(out)
        self.ids |= {decode_tx(r).id for r in out}

    def result(self) -> dict[str, Any]:
        r = super().result()
        r["note"] = "captured orders with a tenfold quantity, sent to a node and into the log"
        return r


class ClassicalKey(Attack):
    name: ClassVar[str] = "classical-key"
    threat: ClassVar[str] = "Q quantum adversary"
    defence: ClassVar[str] = ("only ML-DSA algorithm ids are accepted; classical algorithms "
                              "are refused by name")
    window = (0.20, 0.21)

    def setup(self) -> None:
        self.sent = self.rejected = 0
        self.inject: list[bytes] = []
        self.ids: set[bytes] = set()

    def caused(self, tx_id: bytes) -> bool:
        return tx_id in self.ids

    def _forge(self, slot: int, alg: str) -> bytes:
        # in the name the victim trades under in that slot: its own address, or under privacy
        # mode its slot's pseudonym (a forgery in its clear name would itself name it)
        victim = self.eng.identities.trading_key(self.eng.members[0], slot + 1).address
        body = {"slot": slot + 1, "side": "buy", "energy_wh": 1000, "price_micro_per_kwh": 1}
        msg = signing_bytes(self.eng.sc.chain_id, victim, 0, "market/order", body, alg)
        if alg == "ed25519":
            sig = ed25519.Ed25519PrivateKey.generate().sign(msg)
        else:
            sig = ec.generate_private_key(ec.SECP256R1()).sign(msg, ec.ECDSA(hashes.SHA256()))
        return codec.encode({"alg": alg, "body": body, "chain_id": self.eng.sc.chain_id,
                             "kind": "market/order", "nonce": 0, "sender": victim,
                             "sig": sig})

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        if not trading or not self.eng.in_window(slot, *self.window):
            return []
        raws = [self._forge(slot, "ed25519"), self._forge(slot, "ecdsa-p256")]
        self.ids |= {decode_tx(r).id for r in raws}
        res = self.eng.submit(raws, slot * SLOT_S + T_ORDERS)
        self.rejected += sum(1 for r in res if isinstance(r, RejectedTx) and r.rule == "classical-key")
        self.inject = raws
        self.sent += 2 * len(raws)
        return []

    def before_tick(self, time_s: int) -> None:
        if self.inject and time_s % SLOT_S == T_ORDERS % SLOT_S:
            for raw in self.inject:
                self.eng.net.orderer.append(Entry("tx", tx=raw))
            self.inject = []

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        self.rejected += sum(1 for r in fb.result.receipts if not r.ok and r.rule == "classical-key")

    def result(self) -> dict[str, Any]:
        return self.record(self.sent, self.rejected, self.rejected == self.sent, 0,
                           note="Ed25519 and ECDSA-P256 signed orders in a member's name, "
                                "to a node and straight into the ordered log")
