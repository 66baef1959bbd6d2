"""Secure-aggregation results on the ledger (``privacy.aggregation``; THREATS rows 3, 8).

* ``privacy/partial {slot, feeder, epoch, inclusion, meters, value, sig}`` by an aggregator:
  its partial sum, carried with its own ML-DSA signature over the round
  (``privacy.aggregation.partial_message``), so that what it posts can later be held
  against it. Refused below ``aggregate_min_contributors`` meters (rule
  ``anonymity-set``).
* Decoding: as soon as every aggregator of the committee has posted (or at the slot's
  settlement deadline with what is there), the validators decode the feeder total. A total
  is accepted only if ``aggregate_min_agree`` partials agree on it, so up to
  ``aggregator_fault_bound`` colluders can neither choose it nor have an honest aggregator
  left out; otherwise the round fails and nobody is named. Decoding never penalises:
  partials off the polynomial are reported (``aggregator_rejected``), not sanctioned.
  Decoding eagerly keeps the partials' values (random field elements from the meters'
  secret randomness) out of every state root when the whole committee posts in one block.
* At the settlement deadline the decoded total is compared with the readings settlement
  used (``aggregate`` event), each clamped by the committee's per-meter bound
  (``aggregate_clip_wh``) as its meter clamped it before sharing — what the clamp took is
  the event's ``clipped_wh``; a mismatch records a ``feeder`` dispute.
* ``privacy/aggregator_evidence {feeder, slot, partials}`` by anyone: one or two partials
  the aggregator signed itself that prove misconduct (two different partials for one
  round, or one over fewer meters than the minimum: ``partial_misconduct``). That is the
  only thing an aggregator is penalised for, once per (feeder, slot).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from gridledger.crypto.shamir import (
    InconsistentShares,
    Share,
    decode_shares,
    decode_signed,
)
from gridledger.crypto.sig import PublicKey
from gridledger.errors import CryptoError
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.config import PrivacyConfig
from gridledger.ledger.modules.privacy.errors import (
    AggregateDecoded,
    AnonymitySet,
    EvidencePosition,
    EvidenceRecorded,
    NoMisconduct,
    NotAggregator,
    PartialPosted,
    PartialSignature,
    PartialWindow,
    UnknownFeeder,
)
from gridledger.ledger.modules.privacy.expected import Metering, Registry, Reputation
from gridledger.ledger.modules.privacy.pool import now_slot, require_config
from gridledger.ledger.modules.privacy.records import (
    AggregateRecord,
    DisputeRecord,
    PartialRecord,
    dispute_id_for_feeder,
    pseudo_cp,
)
from gridledger.ledger.modules.privacy.types import (
    AggregatorEvidence,
    Partial,
)
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State
from gridledger.privacy.aggregation import PartialSum, partial_misconduct
from gridledger.privacy.aggregation.rounds import CTX_PARTIAL


def _signed(position: int, p: Partial) -> PartialSum:
    return PartialSum(position, p.feeder, p.epoch, p.slot, p.inclusion, p.meters, p.value, p.sig)


@dataclass
class Aggregation:
    """Handlers and end-of-block steps of secure-aggregation rounds."""

    registry: Registry
    reputation: Reputation
    metering: Metering

    def _key(self, state: State, cfg: PrivacyConfig, position: int) -> PublicKey | None:
        p = self.registry.participant(state, cfg.aggregators[position].addr)
        if p is None:
            return None
        try:
            return PublicKey(p.alg, p.pk)
        except CryptoError:
            return None

    def partial(self, state: State, ctx: TxContext, msg: Partial) -> None:
        """``privacy/partial`` by an aggregator: its signed partial sum (its Shamir shares of
        the included meters' net readings, summed) for the round's inclusion digest."""
        cfg = require_config(state)
        pos = cfg.aggregator_index(ctx.sender)
        if pos is None:
            raise NotAggregator("partial sums come from the committee")
        if cfg.feeder_cps(msg.feeder) is None:
            raise UnknownFeeder(repr(msg.feeder))
        if msg.meters < cfg.aggregate_min_contributors:
            raise AnonymitySet(f"a partial sum covers at least {cfg.aggregate_min_contributors}"
                               f" meters, not {msg.meters}")
        signed = _signed(pos, msg)
        key = self._key(state, cfg, pos)
        if key is None or not key.verify(signed.signed_message(), signed.signature, CTX_PARTIAL):
            raise PartialSignature("sig is not this aggregator's signature over the partial")
        p = load_params(state)
        first = (msg.slot + 1) * p.slot_seconds
        last = first + p.settle_window_s
        if not first <= ctx.block.slot_time < last:
            raise PartialWindow(f"partial sums for slot {msg.slot} in [{first}, {last})")
        if keeper.get_partial(state, msg.slot, msg.feeder, pos) is not None:
            raise PartialPosted("one partial per aggregator, feeder and slot")
        if keeper.get_aggregate(state, msg.slot, msg.feeder) is not None:
            raise AggregateDecoded("this round's total is already decoded")
        keeper.put_partial(state, msg.slot, msg.feeder, pos, PartialRecord(
            msg.epoch, msg.inclusion, msg.meters, msg.value, msg.sig))
        ctx.emit("partial_posted", slot=msg.slot, feeder=msg.feeder,
                 aggregator=cfg.aggregators[pos].id, inclusion=msg.inclusion, meters=msg.meters)

    def evidence(self, state: State, ctx: TxContext, msg: AggregatorEvidence) -> None:
        """``privacy/aggregator_evidence`` by anyone: partials one aggregator signed that prove
        misconduct by themselves. Penalised once per (feeder, slot)."""
        cfg = require_config(state)
        pos = msg.partials[0][0]
        if pos >= len(cfg.aggregators) or any(p != pos for p, _ in msg.partials):
            raise EvidencePosition("the partials must name one committee position")
        parts = [_signed(p, m) for p, m in msg.partials]
        key = self._key(state, cfg, pos)
        kind = None if key is None else partial_misconduct(
            key, cfg.aggregate_min_contributors, parts[0], parts[1] if len(parts) > 1 else None)
        if kind is None:
            raise NoMisconduct("the partials are not validly signed statements that prove "
                               "misconduct")
        if keeper.get_evidence(state, msg.feeder, msg.slot, pos) is not None:
            raise EvidenceRecorded("this aggregator is already sanctioned for this round")
        keeper.put_evidence(state, msg.feeder, msg.slot, pos, kind)
        agg = cfg.aggregators[pos]
        ctx.emit("aggregator_misconduct", feeder=msg.feeder, slot=msg.slot, aggregator=agg.id,
                 kind=kind)
        ctx.events.append(self.reputation.adjust(state, agg.addr, "dispute_lost",
                                                 now_slot(state, ctx.block.slot_time)))

    def step(self, state: State, ctx: BlockContext, cfg: PrivacyConfig,
             events: list[dict[str, Any]]) -> None:
        """End of block: decode rounds that are complete or due, check rounds that are due."""
        p = load_params(state)
        for slot, feeder in keeper.pending_aggregates(state):
            deadline = (slot + 1) * p.slot_seconds + p.settle_window_s
            complete = len(keeper.partials(state, slot, feeder)) == len(cfg.aggregators)
            if complete or ctx.slot_time >= deadline:
                self.decode_round(state, cfg, slot, feeder, events)
        for slot, feeder in keeper.pending_checks(state):
            if ctx.slot_time >= (slot + 1) * p.slot_seconds + p.settle_window_s:
                self.check_round(state, cfg, slot, feeder, events)
        # A round's record is read by no rule after its settlement deadline (a late partial
        # is refused by its window before the record is looked at; the check ran at the
        # deadline; a mismatch's dispute carries slot, feeder and pseudonyms itself): kept a
        # dispute window more for the view, then dropped (issue 17: +96 a day per feeder).
        # Slot s goes once (s + 1) * slot_seconds + settle + dispute window <= block time.
        horizon = ctx.slot_time - p.settle_window_s - p.dispute_window_s
        if horizon >= p.slot_seconds:
            keeper.prune_aggregates(state, horizon // p.slot_seconds)

    def decode_round(self, state: State, cfg: PrivacyConfig, slot: int, feeder: str,
                     events: list[dict[str, Any]]) -> None:
        """Decode the feeder total from the posted partials; drop them from state."""
        parts = keeper.partials(state, slot, feeder)
        keeper.take_partials(state, slot, feeder)
        votes = Counter((r.inclusion, r.meters) for r in parts.values())
        # the round the most aggregators summed (ties: the smallest digest, so all agree)
        (inclusion, meters), _ = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        left_out = [(pos, "other-inclusion") for pos, r in sorted(parts.items())
                    if (r.inclusion, r.meters) != (inclusion, meters)]
        shares = [Share(pos + 1, r.value) for pos, r in sorted(parts.items())
                  if (r.inclusion, r.meters) == (inclusion, meters)]
        base = AggregateRecord(slot, feeder, inclusion, meters, "failed")
        head = {"slot": slot, "feeder": feeder, "inclusion": inclusion, "meters": meters}
        need = cfg.aggregate_min_agree(len(shares))
        try:
            if len(shares) < need:
                raise InconsistentShares(f"{len(shares)} partial sums for one inclusion; a "
                                         f"total needs {need} that agree")
            decoded = decode_shares(shares, cfg.aggregator_threshold, min_agree=need)
        except InconsistentShares as exc:
            # beyond what the committee withstands: no total, and nobody is named
            keeper.put_aggregate(state, slot, feeder, base)
            events.append({"type": "aggregate_failed", **head, "reason": str(exc),
                           "partials": len(parts)})
            return
        left_out += [(x - 1, "off-polynomial") for x in decoded.bad_xs]
        for pos, reason in sorted(left_out):
            events.append({"type": "aggregator_rejected", "slot": slot, "feeder": feeder,
                           "aggregator": cfg.aggregators[pos].id, "reason": reason})
        used = tuple(cfg.aggregators[s.x - 1].id for s in shares if s.x not in decoded.bad_xs)
        keeper.put_aggregate(state, slot, feeder, replace(
            base, status="decoded", total_wh=decode_signed(decoded.secret), used=used,
            left_out=tuple((cfg.aggregators[pos].id, reason) for pos, reason in sorted(left_out))))
        keeper.add_pending_check(state, slot, feeder)

    def check_round(self, state: State, cfg: PrivacyConfig, slot: int, feeder: str,
                    events: list[dict[str, Any]]) -> None:
        """Compare a decoded total with the readings settlement used (public and
        pseudonymous)."""
        keeper.take_pending_check(state, slot, feeder)
        rec = keeper.get_aggregate(state, slot, feeder)
        if rec is None or rec.status != "decoded" or rec.total_wh is None:
            return
        cps = cfg.feeder_cps(feeder) or ()
        pseudonyms = keeper.pseudonyms_of_feeder_slot(state, slot, feeder)
        # each reading as its meter shared it (clamped by the committee's bound): an honest
        # reading beyond the bound is not a wrong total, and what the clamp took is reported
        reported = clipped = 0
        for cp in list(cps) + [pseudo_cp(a) for a in pseudonyms]:
            r = self.metering.reading_of(state, slot, cp)
            if r is not None:
                net = r.import_wh - r.export_wh
                shared = cfg.clip_reading(net)
                reported += shared
                clipped += abs(net - shared)
        total = rec.total_wh
        checked = rec.meters == len(cps)  # with dropouts the total covers a subset: no check
        ok = not checked or abs(total - reported) <= cfg.aggregate_tolerance_wh
        clip = {"clipped_wh": clipped} if cfg.aggregate_clip_wh else {}
        keeper.put_aggregate(state, slot, feeder, replace(
            rec, status="ok" if ok else "mismatch", reported_wh=reported, checked=checked,
            clipped_wh=clipped if cfg.aggregate_clip_wh else None))
        head = {"slot": slot, "feeder": feeder, "inclusion": rec.inclusion, "meters": rec.meters}
        events.append({"type": "aggregate", **head, "total_wh": total, "reported_wh": reported,
                       "checked": checked, "ok": ok, "used": list(rec.used or ()), **clip})
        if not ok and pseudonyms:
            did = dispute_id_for_feeder(feeder, slot)
            keeper.put_dispute(state, did, DisputeRecord("feeder", tuple(sorted(pseudonyms)),
                                                         slot=slot, feeder=feeder))
            events.append({"type": "aggregate_mismatch", **head, "dispute": did,
                           "total_wh": total, "reported_wh": reported,
                           "pseudonyms": sorted(pseudonyms)})

