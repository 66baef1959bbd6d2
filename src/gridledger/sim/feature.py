"""Base class of the demo's features: one capability of the community per module.

A feature subclasses ``Feature``, overrides the phases it takes part in (``FeatureHooks``;
every default does nothing), and is added to ``FEATURES`` in ``sim/features/__init__.py``.
The engine calls every feature's phase in that list's order, so the order is part of a
run's determinism (it fixes the order transactions are signed and submitted in).

What a feature may use is its ``SimContext`` (``self.ctx``): the scenario, grid, community,
the blackboard ``ctx.data``, client actions (``tx``, ``submit``, ``defer``), the attacks'
interceptors (``ctx.attacks``), ledger reads (``ctx.ledger``) and the identity seam
(``ctx.identities``). Features talk to each other only through ``ctx.data``.

For the report a feature may also render sections from ``summary.json`` alone
(``report_sections``), so the page can be rebuilt from the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.records import Delivered


@dataclass(frozen=True)
class ReportSection:
    """A section of ``report.html``: ``body_html`` must be escaped already."""

    section_id: str
    title: str
    body_html: str
    note: str = ""


class Feature:
    """No-op implementation of every ``FeatureHooks`` phase (see ``sim.hooks``)."""

    name: ClassVar[str] = ""
    threat_rows: ClassVar[tuple[str, ...]] = ()
    """Threat-model rows (docs/threat-model.md) this feature is (part of) the defence for,
    e.g. ``("1",)``."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    def txs_a(self, step: Step) -> Sequence[bytes]:
        return []

    def txs_b(self, step: Step) -> Sequence[bytes]:
        return []

    def after_clearing(self, step: Step) -> None:
        return None

    def adjust_injection(self, step: Step, planned_wh: dict[str, int]) -> None:
        return None

    def deliver(self, step: Step) -> None:
        return None

    def after_delivery(self, step: Step, delivered: Delivered) -> None:
        return None

    def txs_c(self, step: Step) -> Sequence[bytes]:
        return []

    def after_readings(self, step: Step) -> None:
        return None

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        return None

    def finish(self) -> None:
        return None

    def after_run(self) -> None:
        return None

    def run_ended(self, summary: dict[str, Any] | None) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {}

    def detections(self) -> dict[str, int]:
        return {}

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        """Sections for ``report.html``, rendered from ``summary.json`` alone."""
        return []
