"""The validators' side of governance in the demo: module upgrades reviewed by a dry run.

* Early in the day a validator proposes upgrading the governance module from version 2 to
  version 3 (run-time grid fees set by the DSO), activating ``upgrade_notice_blocks`` +
  ``REVIEW_STEPS`` steps later; the chain switches on every validator at that height.
* Every ``upgrade_proposed`` the ledger emits — this one, or any other (the
  ``contract-bug`` scenario proposes a faulty bank release) — is reviewed by each
  validator's operator on its own node before it votes: ``ledger.dryrun.review_upgrade``
  replays at least the last ``WINDOW`` committed blocks of that validator's store (from a
  snapshot) with the new version and votes yes only if every invariant holds and the
  result is what the upgrade declares; otherwise no, with the finding as the reason.
  A window that did not run what the release replaces is widened to the whole chain
  (``Verdict.replaced``, ``widened``).
  On one machine the simulator runs one dry run per distinct input
  (``ledger.dryrun.review_inputs``: the stores' bytes, the catalog, the proposal) — the
  validators' stores hold the same certified blocks, so their verdicts are one pure
  function's; a review names the validator whose run it shares (``same_inputs_as``). On
  their own machines, operators review in parallel.

``DRY_RUN = False`` is the defence removed: operators vote yes on whatever is proposed.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

from gridledger.grid import SLOTS_PER_DAY
from gridledger.ledger.dryrun import Proposed, Verdict, review_inputs, review_upgrade
from gridledger.ledger.execute import SigCheck
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.modules.catalog import Catalog
from gridledger.ledger.params import load_params
from gridledger.node.embedded import FinalizedBlock
from gridledger.node.store import BlockStore
from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature, ReportSection
from gridledger.sim.forked import start_forked

REVIEW_NICE = 10
"""How much nicer than the run the dry runs' forked process runs (as the store follower,
``node.verify.FOLLOW_NICE``)."""
TARGET = ("governance", 3)
"""The upgrade the community makes: run-time grid fees (governance v3)."""


class _Review:
    """The validators' dry runs of one proposal (``Governance._review``): one per distinct
    input (``dryrun.review_inputs``), each on the validator's store opened read-only by
    path; ``run`` here, or ``start`` in a forked process (it inherits the catalogs and the
    signature cache, and opens the stores itself: an SQLite connection must not cross a
    fork)."""

    def __init__(self, genesis: Genesis, up: Proposed, height: int, window: int,
                 sig_check: SigCheck, jobs: list[tuple[int, Path, Catalog]],
                 coverage: bool = True) -> None:
        self.genesis, self.up, self.height, self.window = genesis, up, height, window
        self.sig_check, self.jobs, self.coverage = sig_check, jobs, coverage

    def run(self) -> tuple[list[dict[str, Any]], float, float]:
        """(each voter's review, in order; seconds spent; CPU seconds of this process)."""
        t0, c0 = time.perf_counter(), time.process_time()
        up, height = self.up, self.height
        done: dict[bytes, tuple[Verdict, int]] = {}
        out = []
        for index, path, catalog in self.jobs:
            store = BlockStore(path, readonly=True)
            try:
                inputs, start = review_inputs(store, catalog, up, until=height - 1,
                                              window=self.window)
                verdict, same_as = done.get(inputs, (None, index))
                if verdict is None:
                    verdict = review_upgrade(store, self.genesis, catalog, up,
                                             until=height - 1, window=self.window,
                                             sig_check=self.sig_check,
                                             require_coverage=self.coverage)
                    if verdict.from_height == start:
                        done[inputs] = (verdict, index)
            finally:
                store.close()
            out.append({"proposal": up.proposal, "validator": index,
                        "approve": verdict.approve, "reason": verdict.reason,
                        "from_height": verdict.from_height, "to_height": verdict.to_height,
                        "blocks": verdict.blocks, "keys_changed": verdict.keys_changed,
                        "replaced": list(verdict.replaced), "widened": verdict.widened,
                        "same_inputs_as": same_as})
        return out, time.perf_counter() - t0, time.process_time() - c0

    def start(self) -> Future[tuple[list[dict[str, Any]], float, float]] | None:
        """``run`` in a forked process (None where there is no fork: run it here)."""
        return start_forked(self._run_nice)

    def _run_nice(self) -> tuple[list[dict[str, Any]], float, float]:
        """``run`` at ``REVIEW_NICE`` (the forked child): its votes are held to the end of
        the voting window, so until then it takes the cores the run leaves idle instead of
        the run's (issue 17: beside the run at equal priority it stretched the main
        process's run-queue wait; at the window's end the run waits for it, and the
        processes the run drives are idle then)."""
        os.nice(REVIEW_NICE)
        return self.run()


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class Governance(Feature):
    name: ClassVar[str] = "governance"
    threat_rows: ClassVar[tuple[str, ...]] = ("12",)
    UPGRADE_AT: ClassVar[float] = 0.06
    """When the governance upgrade is proposed, as a fraction of the trading slots."""
    WINDOW: ClassVar[int] = 3 * SLOTS_PER_DAY
    """Blocks each validator's dry run replays at least: a day of the demo's blocks (three a
    slot). A release's faulty path may run only by day (settlement pay-outs): reviewed over
    8 slots (24 blocks), ``contract-bug`` proposed at 04:45 on day 3 of a 4-day run passed
    every review and stopped the chain at the first settlement after it activated."""
    REVIEW_STEPS: ClassVar[int] = 5
    """Steps (three blocks each) of the community's proposal's activation beyond the notice:
    time for the operators' dry runs before their votes are due (one step before the
    fourteenth session)."""
    DRY_RUN: ClassVar[bool] = True
    COVERAGE: ClassVar[bool] = True
    """Each review must run what the release replaces, widening to the whole chain if the
    window does not (``ledger.dryrun``, step 5); off only in the tests that show what a
    window alone lets through."""

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.proposed = False
        self.proposals: dict[int, dict[str, Any]] = {}
        self.reviews: list[dict[str, Any]] = []
        self.upgrades: list[dict[str, Any]] = []

    # -- the community's upgrade ----------------------------------------------------------
    def txs_a(self, step: Step) -> list[bytes]:
        ctx = self.ctx
        if self.proposed or not step.trading:
            return []
        if step.slot - ctx.first < max(1, int(ctx.sc.slots * self.UPGRADE_AT)):
            return []
        self.proposed = True
        app = ctx.net.entry.app
        module, version = TARGET
        if app.versions().get(module, 0) >= version:
            return []
        digest = app.catalog.declaration_digest(app.versions(), module, version)
        notice = load_params(app.state).upgrade_notice_blocks
        # the proposal's block, the notice, then REVIEW_STEPS steps of vote time: the votes
        # are held to the window's end (``_review``), so the dry runs run beside that many
        # steps (the first replays the registration block: ~4-5 s of a core, issue 17)
        at = ctx.net.height + 1 + notice + 3 * self.REVIEW_STEPS
        return [ctx.tx(ctx.community.validators[0], "governance/propose_upgrade", {
            "module": module, "version": version, "activation_height": at, "digest": digest})]

    # -- every validator reviews every proposed upgrade --------------------------------------
    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for e in events:
            t = e.get("type")
            if t == "upgrade_proposed":
                self.proposals[e["proposal"]] = {
                    "proposal": e["proposal"], "module": e["module"], "version": e["version"],
                    "from_version": e["from_version"], "activation": e["activation"],
                    "proposed_at": fb.header.height, "status": "open", "yes": 0, "no": 0,
                    "reasons": []}
                self._review(fb.header.height, e)
            elif t == "motion_vote" and e["proposal"] in self.proposals:
                p = self.proposals[e["proposal"]]
                p["yes"], p["no"] = e["yes"], e["no"]
                if not e["approve"]:
                    p["reasons"].append(e["reason"])
            elif t in ("motion_rejected", "upgrade_passed", "motion_expired", "upgrade_applied",
                       "upgrade_failed") and e.get("proposal") in self.proposals:
                self.proposals[e["proposal"]]["status"] = t.removeprefix("motion_").removeprefix(
                    "upgrade_")
            elif t == "module_upgraded":
                self.upgrades.append({"module": e["module"], "from_version": e["from_version"],
                                      "version": e["version"], "height": e["height"],
                                      "proposal": e["proposal"]})

    def _review(self, height: int, e: Mapping[str, Any]) -> None:
        """Each validator's operator dry-runs the proposal on its own node, then votes.

        The dry runs (pure: the stores' certified bytes and the catalogs) run in a forked
        process while the run goes on; the votes are signed when they are due — at the last
        tick from which they still land by the proposal's last voting height (``expires``),
        or before a validator signs anything else (``SimContext.defer_later`` with
        ``last_height``): the same votes, nonces and blocks whatever the machine's speed
        (issue 19: a privacy day's first review replays an epoch's registration block and
        scans ~6,000 pseudonyms' records per block, ~2 s of the main core; issue 17: the
        run waited ~6 s of a default day for the dry runs at the next block A)."""
        ctx = self.ctx
        up = Proposed(e["proposal"], e["module"], e["version"], e["digest"])
        voters = [(v, key) for i, (v, key) in enumerate(zip(ctx.net.validators,
                                                            ctx.community.validators,
                                                            strict=True))
                  if i not in ctx.net.down]  # a crashed validator's operator does not vote
        if not self.DRY_RUN:
            ctx.defer([ctx.tx(key, "governance/vote",
                              {"proposal": up.proposal, "approve": True, "reason": ""})
                       for _v, key in voters])
            return
        jobs = [(v.index, v.store_path, v.app.catalog) for v, _key in voters]
        review = _Review(ctx.community.genesis, up, height, self.WINDOW,
                         ctx.net.mempool.cache.check, jobs, self.COVERAGE)
        started = review.start()

        def votes() -> list[bytes]:
            t0 = time.perf_counter()
            reviews, seconds, cpu = started.result() if started is not None else review.run()
            ctx.timings["dry_run_s"] = ctx.timings.get("dry_run_s", 0.0) + seconds
            ctx.timings["dry_run_cpu_s"] = ctx.timings.get("dry_run_cpu_s", 0.0) + cpu
            # what the run waited for the dry runs (all of them when run here)
            ctx.timings["dry_run_wait_s"] = (ctx.timings.get("dry_run_wait_s", 0.0)
                                             + time.perf_counter() - t0)
            self.reviews += reviews
            return [ctx.tx(key, "governance/vote", {
                "proposal": up.proposal, "approve": r["approve"], "reason": r["reason"]})
                for (_v, key), r in zip(voters, reviews, strict=True)]

        # held to the last tick that still lands them by the proposal's last voting height:
        # the dry runs run beside the slots up to then instead of the run waiting for them
        # at the next block A (issue 17: ~6 s of the default day's main core)
        ctx.defer_later(votes, [key.address for _v, key in voters], last_height=e["expires"])

    # -- outputs ---------------------------------------------------------------------------
    def detections(self) -> dict[str, int]:
        return {"upgrade_refusals": sum(1 for r in self.reviews if not r["approve"])}

    def summary(self) -> dict[str, Any]:
        led = self.ctx.ledger
        return {"governance": {
            "versions": _plain(led.governance("versions")["versions"]),
            "proposals": [self.proposals[k] for k in sorted(self.proposals)],
            "reviews": self.reviews,
            "upgrades": self.upgrades,
            "changes": _plain(led.governance("changes")),
            "dry_run_window_blocks": self.WINDOW}}

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        g = summary.get("governance")
        if not g:
            return []
        rows = []
        for p in g["proposals"]:
            reasons = "; ".join(sorted(set(p["reasons"])))
            rows.append(
                f"<tr><td>{p['proposal']}</td><td>{html.escape(p['module'])} "
                f"v{p['from_version']} → v{p['version']}</td><td>{p['proposed_at']}</td>"
                f"<td>{p['activation']}</td><td>{p['yes']} / {p['no']}</td>"
                f"<td>{html.escape(p['status'])}</td><td>{html.escape(reasons)}</td></tr>")
        body = ("<table><tr><th>proposal</th><th>upgrade</th><th>proposed at</th>"
                "<th>activation</th><th>yes / no</th><th>status</th><th>dry-run findings</th>"
                "</tr>" + "".join(rows) + "</table>")
        versions = ", ".join(f"{html.escape(k)} v{v}" for k, v in sorted(g["versions"].items()))
        return [ReportSection(
            "governance", "Governance: module upgrades",
            body + f"<p>Versions at the end of the run: {versions}.</p>",
            note=f"Each validator replays at least the last {g['dry_run_window_blocks']} "
                 "committed blocks from a snapshot with the proposed version before voting, "
                 "and the whole chain if that window did not run every handler or keeper "
                 "function the version replaces.")]
