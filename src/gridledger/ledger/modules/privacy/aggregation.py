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
  used (``aggregate`` event); a mismatch records a ``feeder`` dispute.
* ``privacy/aggregator_evidence {feeder, slot, partials}`` by anyone: one or two partials
  the aggregator signed itself that prove misconduct (two different partials for one
  round, or one over fewer meters than the minimum: ``partial_misconduct``). That is the
  only thing an aggregator is penalised for, once per (feeder, slot).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from gridledger.crypto.shamir import (
    InconsistentShares,
    Share,
    decode_shares,
    decode_signed,
)
from gridledger.crypto.sig import PublicKey
from gridledger.errors import CryptoError, InvalidBody, Unauthorized
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.metering.keeper import reading_of
from gridledger.ledger.modules.metering.types import reading_window
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.types import (
    PrivacyConfig,
    dispute_id_for_feeder,
    pseudo_cp,
)
from gridledger.ledger.modules.registry.keeper import get_participant
from gridledger.ledger.modules.reputation.keeper import adjust
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_bytes, require_int, require_str
from gridledger.privacy.aggregation import PartialSum, partial_misconduct
from gridledger.privacy.aggregation.rounds import CTX_PARTIAL

MAX_SIG = 4627  # an ML-DSA-87 signature


def _exact(body: dict[str, Any], kind: str, names: set[str]) -> None:
    if set(body) != names:
        raise InvalidBody(f"{kind} has exactly the fields {', '.join(sorted(names))}")


def _config(state: State) -> PrivacyConfig:
    cfg = keeper.config(state)
    if cfg is None:
        raise InvalidBody("privacy-disabled: this chain has no privacy section in genesis")
    return cfg


def _aggregator_key(state: State, cfg: PrivacyConfig, position: int) -> PublicKey | None:
    p = get_participant(state, cfg.aggregators[position].addr)
    if p is None:
        return None
    try:
        return PublicKey(p["alg"], p["pk"])
    except CryptoError:
        return None


def _parse_partial(raw: Any, feeder: str, slot: int) -> PartialSum:
    """A signed partial from ``[position, epoch, inclusion, meters, value, sig]``."""
    if not isinstance(raw, list) or len(raw) != 6:
        raise InvalidBody("each partial is [position, epoch, inclusion, meters, value, sig]")
    fields = dict(zip(("position", "epoch", "inclusion", "meters", "value", "sig"), raw,
                      strict=True))
    return PartialSum(
        position=require_int(fields, "position", maximum=31),
        feeder_id=feeder, epoch=require_int(fields, "epoch", maximum=2**40), slot=slot,
        inclusion_digest=require_bytes(fields, "inclusion", exact=32),
        meters=require_int(fields, "meters", maximum=10**6),
        value=require_int(fields, "value", maximum=2**127 - 2),
        signature=require_bytes(fields, "sig", max_len=MAX_SIG))


def handle_partial(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/partial {slot, feeder, epoch, inclusion, meters, value, sig}`` by an
    aggregator: its signed partial sum (its Shamir shares of the included meters' net
    readings, summed) for the round's inclusion digest."""
    _exact(body, "privacy/partial",
           {"slot", "feeder", "epoch", "inclusion", "meters", "value", "sig"})
    cfg = _config(state)
    pos = cfg.aggregator_index(ctx.sender)
    if pos is None:
        raise Unauthorized("not-aggregator: partial sums come from the committee")
    slot = require_int(body, "slot", maximum=2**40)
    feeder = require_str(body, "feeder", max_len=64)
    if cfg.feeder_cps(feeder) is None:
        raise InvalidBody(f"unknown-feeder: {feeder!r}")
    partial = _parse_partial([pos, body["epoch"], body["inclusion"], body["meters"],
                              body["value"], body["sig"]], feeder, slot)
    if partial.meters < cfg.aggregate_min_contributors:
        raise InvalidBody(f"anonymity-set: a partial sum covers at least "
                          f"{cfg.aggregate_min_contributors} meters, not {partial.meters}")
    key = _aggregator_key(state, cfg, pos)
    if key is None or not key.verify(partial.signed_message(), partial.signature, CTX_PARTIAL):
        raise InvalidBody("partial-signature: sig is not this aggregator's signature over "
                          "the partial")
    p = load_params(state)
    first, last = reading_window(slot, p.slot_seconds, p.settle_window_s)
    if not first <= ctx.block.slot_time < last:
        raise InvalidBody(f"partial-window: partial sums for slot {slot} in [{first}, {last})")
    if keeper.get_partial(state, slot, feeder, pos) is not None:
        raise InvalidBody("already-posted: one partial per aggregator, feeder and slot")
    if keeper.get_aggregate(state, slot, feeder) is not None:
        raise InvalidBody("aggregate-decoded: this round's total is already decoded")
    keeper.put_partial(state, slot, feeder, pos, {
        "epoch": partial.epoch, "inclusion": partial.inclusion_digest,
        "meters": partial.meters, "value": partial.value, "sig": partial.signature})
    ctx.emit("partial_posted", slot=slot, feeder=feeder, aggregator=cfg.aggregators[pos].id,
             inclusion=partial.inclusion_digest, meters=partial.meters)


def handle_aggregator_evidence(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/aggregator_evidence {feeder, slot, partials: [p] or [p, q]}`` by anyone:
    partials an aggregator signed that prove misconduct by themselves (equivocation, or a
    partial over fewer meters than the minimum). Penalised once per (feeder, slot)."""
    _exact(body, "privacy/aggregator_evidence", {"feeder", "slot", "partials"})
    cfg = _config(state)
    feeder = require_str(body, "feeder", max_len=64)
    slot = require_int(body, "slot", maximum=2**40)
    raw = body["partials"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= 2:
        raise InvalidBody("field 'partials' holds one or two signed partials")
    parts = [_parse_partial(r, feeder, slot) for r in raw]
    pos = parts[0].position
    if pos >= len(cfg.aggregators) or any(p.position != pos for p in parts):
        raise InvalidBody("evidence-position: the partials must name one committee position")
    key = _aggregator_key(state, cfg, pos)
    kind = None if key is None else partial_misconduct(
        key, cfg.aggregate_min_contributors, parts[0], parts[1] if len(parts) > 1 else None)
    if kind is None:
        raise InvalidBody("no-misconduct: the partials are not validly signed statements "
                          "that prove misconduct")
    if keeper.get_evidence(state, feeder, slot, pos) is not None:
        raise InvalidBody("evidence-recorded: this aggregator is already sanctioned for "
                          "this round")
    keeper.put_evidence(state, feeder, slot, pos, kind)
    agg = cfg.aggregators[pos]
    ctx.emit("aggregator_misconduct", feeder=feeder, slot=slot, aggregator=agg.id, kind=kind)
    ctx.events.append(adjust(state, agg.addr, "dispute_lost",
                             ctx.block.slot_time // load_params(state).slot_seconds))


def process_aggregates(state: State, ctx: BlockContext, cfg: PrivacyConfig,
                       events: list[dict[str, Any]]) -> None:
    """End of block: decode rounds that are complete or due, check rounds that are due."""
    p = load_params(state)
    for slot, feeder in keeper.pending_aggregates(state):
        deadline = (slot + 1) * p.slot_seconds + p.settle_window_s
        complete = len(keeper.partials(state, slot, feeder)) == len(cfg.aggregators)
        if complete or ctx.slot_time >= deadline:
            decode_round(state, cfg, slot, feeder, events)
    for slot, feeder in keeper.pending_checks(state):
        if ctx.slot_time >= (slot + 1) * p.slot_seconds + p.settle_window_s:
            check_round(state, cfg, slot, feeder, events)


def decode_round(state: State, cfg: PrivacyConfig, slot: int, feeder: str,
                 events: list[dict[str, Any]]) -> None:
    """Decode the feeder total from the posted partials; drop them from state."""
    parts = keeper.partials(state, slot, feeder)
    keeper.take_partials(state, slot, feeder)
    votes = Counter((r["inclusion"], r["meters"]) for r in parts.values())
    # the round the most aggregators summed (ties: the smallest digest, so all agree)
    (inclusion, meters), _ = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))
    left_out = [(pos, "other-inclusion") for pos, r in sorted(parts.items())
                if (r["inclusion"], r["meters"]) != (inclusion, meters)]
    shares = [Share(pos + 1, r["value"]) for pos, r in sorted(parts.items())
              if (r["inclusion"], r["meters"]) == (inclusion, meters)]
    base = {"slot": slot, "feeder": feeder, "inclusion": inclusion, "meters": meters}
    need = cfg.aggregate_min_agree(len(shares))
    try:
        if len(shares) < need:
            raise InconsistentShares(f"{len(shares)} partial sums for one inclusion; a total "
                                     f"needs {need} that agree")
        decoded = decode_shares(shares, cfg.aggregator_threshold, min_agree=need)
    except InconsistentShares as exc:
        # beyond what the committee withstands: no total, and nobody is named
        keeper.put_aggregate(state, slot, feeder, {**base, "status": "failed"})
        events.append({"type": "aggregate_failed", **base, "reason": str(exc),
                       "partials": len(parts)})
        return
    left_out += [(x - 1, "off-polynomial") for x in decoded.bad_xs]
    for pos, reason in sorted(left_out):
        events.append({"type": "aggregator_rejected", "slot": slot, "feeder": feeder,
                       "aggregator": cfg.aggregators[pos].id, "reason": reason})
    used = [cfg.aggregators[s.x - 1].id for s in shares if s.x not in decoded.bad_xs]
    keeper.put_aggregate(state, slot, feeder, {
        **base, "status": "decoded", "total_wh": decode_signed(decoded.secret), "used": used,
        "left_out": [[cfg.aggregators[pos].id, reason] for pos, reason in sorted(left_out)]})
    keeper.add_pending_check(state, slot, feeder)


def check_round(state: State, cfg: PrivacyConfig, slot: int, feeder: str,
                events: list[dict[str, Any]]) -> None:
    """Compare a decoded total with the readings settlement used (public and pseudonymous)."""
    keeper.take_pending_check(state, slot, feeder)
    rec = keeper.get_aggregate(state, slot, feeder)
    if rec is None or rec["status"] != "decoded":
        return
    cps = cfg.feeder_cps(feeder) or ()
    pseudonyms = keeper.pseudonyms_of_feeder_slot(state, slot, feeder)
    reported = 0
    for cp in list(cps) + [pseudo_cp(a) for a in pseudonyms]:
        r = reading_of(state, slot, cp)
        if r is not None:
            reported += r.import_wh - r.export_wh
    total = rec["total_wh"]
    checked = rec["meters"] == len(cps)  # with dropouts the aggregate covers a subset: no check
    ok = not checked or abs(total - reported) <= cfg.aggregate_tolerance_wh
    keeper.put_aggregate(state, slot, feeder, {**rec, "status": "ok" if ok else "mismatch",
                                               "reported_wh": reported, "checked": checked})
    base = {"slot": slot, "feeder": feeder, "inclusion": rec["inclusion"],
            "meters": rec["meters"]}
    events.append({"type": "aggregate", **base, "total_wh": total, "reported_wh": reported,
                   "checked": checked, "ok": ok, "used": rec["used"]})
    if not ok and pseudonyms:
        did = dispute_id_for_feeder(feeder, slot)
        keeper.put_dispute(state, did, {"kind": "feeder", "targets": sorted(pseudonyms),
                                        "slot": slot, "feeder": feeder})
        events.append({"type": "aggregate_mismatch", **base, "dispute": did,
                       "total_wh": total, "reported_wh": reported,
                       "pseudonyms": sorted(pseudonyms)})
