"""Meter firmware in the demo: the vendor, the approving quorum and the meters (row 10).

The fleet (``sim/fleet.py``) is in genesis: one vendor, single- and three-phase meters on
signed, approved releases. Each meter attests the hash of the image it runs in every
reading (the metering feature reads it from the fleet). This feature plays the honest
parties around a release, from what the ledger says (events of finalized blocks):

* **the vendor**, when a scenario discloses a vulnerability to it (``Fleet.disclose``),
  publishes an advisory on the affected versions (in force at once: it is the vendor's)
  and, in the same block, the fixed release it signs — in block B, after the slot's orders
  (honest clients check their meter's standing before bidding, from the next slot on);
* **the quorum**: the DSO and the first ``quorum(n)`` validators each check the manifest's
  vendor signature themselves and approve it after their test lab's turnaround
  (``APPROVE_AFTER_SLOTS``; two approvals per slot), so the fix is approved about an hour
  after it is published;
* **the meters**: every meter the ledger quarantined installs an approved fix for
  its model (its bootloader checks the vendor signature and the upgrade path:
  ``gridledger.meter.Meter.install``) in a seeded slot of the DSO's staggered roll-out
  (``ROLLOUT_SLOTS``) and sends the ``firmware/patch`` signed by its device key — honest
  members' meters and those of members other scenarios recruited alike; only a scenario
  that drives its own meter through the quarantine keeps it unpatched
  (``SimContext.keeps_meter_rules``).

Quarantined members' agents do not bid (the trading feature asks the ledger), and the DSO
flags each quarantined reading with its network estimate (the DSO feature).

Under privacy mode the ledger names a household's meter by the stand-in cp of each slot's
pseudonym (``ledger_cp``): events are mapped back to the member (``owner_of_cp``), so a
quarantine span is the member's, and it ends when the ledger releases the cp or records the
member's meter patched. Each pseudonym's firmware of record is bound at registration (the
image its meter attested), so an advisory reaches a household's pseudonyms before they
trade; once its meter is patched, the meter also patches the record of each later
pseudonym, one slot ahead (``firmware/patch`` signed by that slot's reading key: one patch
per slot, no burst that would group a household's pseudonyms).
"""

from __future__ import annotations

import html
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gridledger.ledger.block import quorum
from gridledger.ledger.modules.firmware.types import MANIFEST_CONTEXT
from gridledger.ledger.tx import TxSigner
from gridledger.meter import SignedRelease, UpdateRefused
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.clock import Step, step_slot
from gridledger.sim.community import Member
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature, ReportSection
from gridledger.sim.fleet import Fleet, image_of

APPROVE_AFTER_SLOTS = 2
"""Slots between a release's publication and the first approvals (the approvers' lab test)."""
APPROVALS_PER_SLOT = 2
ROLLOUT_SLOTS = 4
"""The DSO staggers patches over this many slots after a fix is approved (no feeder-wide
reboot of every meter at once)."""


@dataclass
class Span:
    """One quarantine of one cp, as the ledger recorded it (heights and slots)."""

    cp: str
    reason: str
    since_slot: int
    until_slot: int | None = None


class FirmwareFleet(Feature):
    name: ClassVar[str] = "firmware"
    threat_rows: ClassVar[tuple[str, ...]] = ("10",)

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        fleet = ctx.community.fleet
        if fleet is None:
            raise ValueError("the community has no meter fleet (genesis firmware section)")
        self.fleet: Fleet = fleet
        self.population0 = fleet.population()
        self.published: dict[bytes, tuple[int, SignedRelease]] = {}
        """Release id -> (slot published on the ledger, the signed release)."""
        self.approved: dict[bytes, int] = {}
        self.spans: list[Span] = []
        self.open: dict[str, Span] = {}
        self.patch_at: dict[str, int] = {}
        """cp -> slot its meter is due to patch (keeps the rules, quarantined, fix approved)."""
        self.patched: list[tuple[str, int]] = []
        self.installed: dict[str, dict[str, Any]] = {}
        """cp -> the patch body its meter sent (privacy mode: resent for later pseudonyms)."""
        self.advisories: list[dict[str, Any]] = []
        self.quarantined_readings = 0
        self.estimated_readings = 0

    # -- the vendor, the quorum, the meters ------------------------------------------------
    def txs_a(self, step: Step) -> Sequence[bytes]:
        # the approvers' and meters' own signatures, made on the pool while the phase's later
        # features run (``SimContext.txs_ahead``: the same nonces and order as one by one)
        return self.ctx.txs_ahead(self._approvals(step.slot) + self._patches(step.slot))

    def txs_b(self, step: Step) -> list[bytes]:
        # not in block A: an advisory landing among the slot's orders would fail the orders
        # honest clients placed before they could see it
        return self._vendor(step.slot)

    def _vendor(self, slot: int) -> list[bytes]:
        ctx, fleet = self.ctx, self.fleet
        out = []
        for d in fleet.disclosures:
            if d.slot != slot:
                continue
            fix_version, fix_min = d.fix
            fix = fleet.vendor.sign(d.model, fix_version, image_of(d.model, fix_version), fix_min)
            fleet.releases[d.model, fix_version] = fix
            out.append(ctx.tx(fleet.account, "firmware/advisory", fleet.vendor.advisory_body(
                d.advisory_id, d.model, list(d.versions), d.severity)))
            out.append(ctx.tx(fleet.account, "firmware/release", fix.body()))
        return out

    def _approvers(self) -> list[Any]:
        """The DSO, then the validators a quorum needs (in set order)."""
        vs = self.ctx.community.validators
        return [self.ctx.community.dso, *vs[:quorum(len(vs))]]

    def _approvals(self, slot: int) -> list[tuple[TxSigner, str, dict[str, Any]]]:
        out: list[tuple[TxSigner, str, dict[str, Any]]] = []
        for rid, (published, rel) in sorted(self.published.items()):
            if rid in self.approved:
                continue
            for k, key in enumerate(self._approvers()):
                if published + APPROVE_AFTER_SLOTS + k // APPROVALS_PER_SLOT != slot:
                    continue
                # each approver checks the vendor's signature itself before approving
                if self.fleet.vendor.key.public_key.verify(rel.manifest.encode(), rel.sig,
                                                           MANIFEST_CONTEXT):
                    out.append((key, "firmware/approve", {"release": rid}))
        return out

    def _fix_for(self, cp: str) -> SignedRelease | None:
        """The newest approved release this cp's meter accepts as an update."""
        meter = self.fleet.meters[cp]
        best = None
        for rid in sorted(self.approved):
            rel = self.published[rid][1]
            try:
                meter.check_update(rel)
            except UpdateRefused:
                continue
            if best is None or rel.manifest.version_key > best.manifest.version_key:
                best = rel
        return best

    def _plan(self, cp: str, after: int) -> None:
        m = self.ctx.by_cp.get(cp)
        if m is None or not self.ctx.keeps_meter_rules(m) or cp in self.patch_at or self._fix_for(cp) is None:
            return
        delay = random.Random(f"rollout/{self.ctx.sc.seed}/{cp}").randrange(ROLLOUT_SLOTS)
        self.patch_at[cp] = after + 1 + delay

    def _patches(self, slot: int) -> list[tuple[TxSigner, str, dict[str, Any]]]:
        out: list[tuple[TxSigner, str, dict[str, Any]]] = []
        for cp in sorted(c for c, s in self.patch_at.items() if s == slot):
            del self.patch_at[cp]
            fix = self._fix_for(cp)
            m = self.ctx.by_cp[cp]
            if fix is None or cp not in self.open or not self.ctx.keeps_meter_rules(m):
                continue
            body = self.fleet.meters[cp].install(fix)
            self.installed[cp] = body
            out.append((self.ctx.identities.meter_key(m, slot), "firmware/patch",
                        self._opening(m, slot, body)))
        return out + self._later_pseudonyms(slot + 1)

    def _opening(self, m: Member, slot: int, body: dict[str, Any]) -> dict[str, Any]:
        """A patch of the slot's pseudonym's firmware of record; a sealed record (privacy
        mode) is opened by the patch (the image it committed to and its salt, which the
        meter holds), so the ledger checks the upgrade path from it."""
        ids = self.ctx.identities
        opening = ids.image_opening(m, slot)
        if opening is None or not self.ctx.ledger.firmware_of(ids.ledger_cp(m, slot)).get("sealed"):
            return body
        return {**body, "opens": opening[0], "salt": opening[1]}

    def _later_pseudonyms(self, slot: int) -> list[tuple[TxSigner, str, dict[str, Any]]]:
        """Under privacy mode: a patched meter patches the record its next slot's pseudonym
        was registered with (still the old image, in clear or sealed), before that slot's
        orders — not one registered after the patch, which binds the fix already (a second
        patch to the same version is refused ``patch-upgrade-path``)."""
        ctx = self.ctx
        out: list[tuple[TxSigner, str, dict[str, Any]]] = []
        if not ctx.sc.privacy or slot not in ctx.trading_slots():
            return out
        for cp, body in sorted(self.installed.items()):
            m = ctx.by_cp[cp]
            lcp = ctx.identities.ledger_cp(m, slot)
            if lcp == cp:
                continue
            rec = ctx.ledger.firmware_of(lcp)
            bound = ctx.identities.image_opening(m, slot)
            if bound is not None and bound[0] == body["firmware"]:
                continue    # registered after the patch: its sealed record binds the fix
            if rec.get("reported") and rec.get("firmware") != body["firmware"]:
                out.append((ctx.identities.meter_key(m, slot), "firmware/patch",
                            self._opening(m, slot, body)))
        return out

    # -- what the ledger did ---------------------------------------------------------------
    def _member_cp(self, ledger_cp: str) -> str:
        """The member's own cp behind a cp the ledger names (a stand-in under privacy)."""
        owner = self.ctx.identities.owner_of_cp(ledger_cp)
        return owner.cp if owner is not None else ledger_cp

    def _close(self, cp: str, slot: int) -> None:
        span = self.open.pop(cp, None)
        if span is not None:
            span.until_slot = slot

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        slot = step_slot(fb.header.slot_time)
        for ev in events:
            t = ev.get("type")
            if t == "firmware_released":
                rel = self.fleet.releases.get((ev["model"], ev["version"]))
                if rel is not None and rel.release_id == ev["release"]:
                    self.published[ev["release"]] = (slot, rel)
            elif t == "firmware_approved":
                self.approved[ev["release"]] = slot
                for cp in sorted(self.open):
                    self._plan(cp, slot)
            elif t == "advisory_in_force":
                self.advisories.append({"advisory": ev["advisory"], "model": ev["model"],
                                        "versions": list(ev["versions"]),
                                        "severity": ev["severity"], "source": ev["source"],
                                        "slot": slot, "meters": ev["meters"]})
            elif t == "meter_quarantined":
                cp = self._member_cp(ev["cp"])
                span = self.open.get(cp)
                if span is None:
                    span = self.open[cp] = Span(cp, ev["reason"], slot)
                    self.spans.append(span)
                span.reason = ev["reason"]
                self._plan(cp, slot)
            elif t == "meter_released":
                self._close(self._member_cp(ev["cp"]), slot)
            elif t == "meter_patched":
                cp = self._member_cp(ev["cp"])
                if cp in self.open:     # a household's later pseudonyms: the same patch
                    self.patched.append((cp, slot))
                self._close(cp, slot)
            elif t == "reading" and ev.get("quarantine"):
                self.quarantined_readings += 1
            elif t == "reading_flagged" and ev.get("quarantine"):
                self.estimated_readings += 1

    # -- results ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        end = self.ctx.first + self.ctx.clock.slots
        spans = [{"cp": s.cp, "reason": s.reason, "since_slot": s.since_slot,
                  "until_slot": s.until_slot,
                  "slots": (s.until_slot if s.until_slot is not None else end) - s.since_slot}
                 for s in self.spans]
        releases = [{"release": rid.hex(), "model": rel.manifest.model,
                     "version": rel.manifest.version, "published_slot": p,
                     "approved_slot": self.approved.get(rid)}
                    for rid, (p, rel) in sorted(self.published.items(), key=lambda kv: kv[1][0])]
        return {"firmware": {
            "vendor": self.fleet.vendor.name,
            "population_start": self.population0,
            "population_end": self.fleet.population(),
            "releases_published": releases,
            "advisories": self.advisories,
            "quarantined_meters": len({s.cp for s in self.spans}),
            "quarantine_spans": spans,
            "quarantined_meter_slots": sum(s["slots"] for s in spans),
            "still_quarantined": sorted(self.open),
            "patches": len(self.patched),
            "quarantined_readings": self.quarantined_readings,
            "estimated_readings": self.estimated_readings}}

    def detections(self) -> dict[str, int]:
        return {"quarantined_meters": len({s.cp for s in self.spans})}

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        fw = summary.get("firmware")
        if not isinstance(fw, Mapping):
            return []
        e = html.escape
        end = fw.get("population_end", {})
        pop = "".join(f"<tr><td>{e(str(k))}</td><td>{int(v)}</td><td>{int(end.get(k, 0))}</td></tr>"
                      for k, v in fw.get("population_start", {}).items())
        rels = "".join(
            f"<tr><td>{e(str(r['model']))} {e(str(r['version']))}</td><td>{r['published_slot']}</td>"
            f"<td>{'' if r['approved_slot'] is None else r['approved_slot']}</td></tr>"
            for r in fw.get("releases_published", []))
        advs = "".join(
            f"<tr><td>{e(str(a['advisory']))}</td><td>{e(str(a['model']))} "
            f"{e(', '.join(map(str, a['versions'])))}</td><td>{e(str(a['severity']))}</td>"
            f"<td>{a['slot']}</td><td>{int(a['meters'])}</td></tr>"
            for a in fw.get("advisories", []))
        body = (
            "<table><thead><tr><th>firmware</th><th>meters at start</th><th>at end</th></tr>"
            f"</thead><tbody>{pop}</tbody></table>"
            + (f"<table><thead><tr><th>release published</th><th>slot</th><th>approved</th></tr>"
               f"</thead><tbody>{rels}</tbody></table>" if rels else "")
            + (f"<table><thead><tr><th>advisory</th><th>versions</th><th>severity</th>"
               f"<th>slot</th><th>meters on them</th></tr></thead><tbody>{advs}</tbody></table>"
               if advs else "")
            + f"<p>{int(fw.get('quarantined_meters', 0))} meters quarantined for "
              f"{int(fw.get('quarantined_meter_slots', 0))} meter-slots; "
              f"{int(fw.get('patches', 0))} patches; {int(fw.get('quarantined_readings', 0))} "
              f"readings taken in quarantine, {int(fw.get('estimated_readings', 0))} settled on "
              f"the DSO's estimate.</p>")
        return [ReportSection("firmware", "Meter firmware (threat row 10)", body,
                              "vendor-signed releases approved by the DSO and a validator "
                              "quorum; advised or unknown firmware is quarantined until patched")]
