"""Combining partial sums into a checked feeder total (pure; anyone can run it).

Every partial must be signed by its aggregator over the round's inclusion. The total is
accepted only if ``Committee.min_agree`` partials lie on one polynomial: with at most
``fault_bound`` colluding aggregators that polynomial agrees with ``t`` honest partials, so
it is the honest one (``crypto.shamir.decode_shares``). Otherwise the round fails and
nobody is named: beyond that bound a decoder can no longer tell the liars from the
honest, so naming one would let colluders frame an honest aggregator. Partials off the
accepted polynomial are left out, not penalised (``rounds.partial_misconduct`` is the
only evidence against an aggregator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridledger.crypto.shamir import (
    InconsistentShares,
    Share,
    decode_shares,
    decode_signed,
    is_field_element,
)
from gridledger.privacy.aggregation.committee import NOISE_PREFIX, Committee
from gridledger.privacy.aggregation.rounds import CTX_PARTIAL, Inclusion, PartialSum
from gridledger.privacy.errors import AggregationFailed, AnonymitySetTooSmall


@dataclass(frozen=True)
class AggregateResult:
    """The verified feeder total of a round and everything needed to audit it."""

    feeder_id: str
    epoch: int
    slot: int
    total_wh: int
    included_meters: tuple[str, ...]
    noise_dealers: tuple[str, ...]
    inclusion_digest: bytes
    used_aggregators: tuple[str, ...]
    left_out: tuple[tuple[str, str], ...]  # (aggregator id, reason): not evidence of a lie
    ignored_partials: int                   # unauthenticated: attributed to nobody
    redundancy_checked: bool
    head_meter_wh: int | None
    head_meter_ok: bool | None


def combine_partials(committee: Committee, inclusion: Inclusion,
                     partials: Sequence[PartialSum], *, head_meter_wh: int | None = None,
                     tolerance_wh: int = 0) -> AggregateResult:
    """Reconstruct and verify the feeder total from signed partial sums.

    ``head_meter_ok`` reports the balance check against the feeder head meter (loss
    tolerance plus the DP-noise bound are the caller's to add). Raises
    ``AnonymitySetTooSmall`` if the inclusion covers fewer than ``min_contributors``
    meters, ``AggregationFailed`` if no polynomial gathers ``min_agree`` partials.
    """
    c = committee
    meters = len(inclusion.included_meters)
    if meters < c.min_contributors:
        raise AnonymitySetTooSmall(f"{meters} meters included; a published total covers at "
                                   f"least {c.min_contributors}")
    digest = inclusion.digest()
    left_out: list[tuple[str, str]] = []
    ignored = 0
    valid: dict[int, PartialSum] = {}
    for p in partials:
        if not 0 <= p.position < c.size or p.position in valid:
            continue
        agg = c.aggregators[p.position]
        if not is_field_element(p.value) or not agg.sig_key.verify(
                p.signed_message(), p.signature, CTX_PARTIAL):
            ignored += 1  # anyone can post bytes claiming a position: blame nobody
        elif ((p.feeder_id, p.epoch, p.slot, p.inclusion_digest, p.meters)
              != (c.feeder_id, c.epoch, inclusion.slot, digest, meters)):
            left_out.append((agg.aggregator_id, "other-inclusion"))
        else:
            valid[p.position] = p
    n = len(valid)
    need = c.min_agree(n)
    if n < need:
        raise AggregationFailed(f"{n} valid partial sums; a trusted total needs {need} that "
                                "agree")
    shares = [Share(pos + 1, valid[pos].value) for pos in sorted(valid)]
    try:
        decoded = decode_shares(shares, c.threshold, min_agree=need)
    except InconsistentShares as exc:
        raise AggregationFailed(f"partial sums disagree: {exc}") from exc
    total = decode_signed(decoded.secret)
    left_out += [(c.aggregators[x - 1].aggregator_id, "off-polynomial") for x in decoded.bad_xs]
    used = tuple(c.aggregators[s.x - 1].aggregator_id for s in shares
                 if s.x not in decoded.bad_xs)
    head_ok = None if head_meter_wh is None else abs(total - head_meter_wh) <= tolerance_wh
    return AggregateResult(
        feeder_id=c.feeder_id, epoch=c.epoch, slot=inclusion.slot, total_wh=total,
        included_meters=inclusion.included_meters,
        noise_dealers=tuple(x for x in inclusion.included if x.startswith(NOISE_PREFIX)),
        inclusion_digest=digest, used_aggregators=used, left_out=tuple(sorted(left_out)),
        ignored_partials=ignored, redundancy_checked=len(used) > c.threshold,
        head_meter_wh=head_meter_wh, head_meter_ok=head_ok)
