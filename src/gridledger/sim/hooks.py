"""The two plug-in interfaces of the engine, as the engine calls them.

``FeatureHooks`` is what a *feature* (a capability of the community: agents, the DSO,
delivery, metering, secure aggregation, ...) offers the engine's step; ``AttackHooks`` is
what an *attack* offers: the same lifecycle plus interceptors on the data flows that
features own (orders, physical injection, measurements, aggregation partials).
``sim.feature.Feature`` and ``sim.attack_base.Attack`` implement them with no-op defaults,
so a plug-in overrides only the phases it takes part in. The phases, in step order, are in
``docs/demo.md`` ("Extending the demo").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gridledger.grid import SlotMeasurements
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.agents import Intent
from gridledger.sim.clock import Step
from gridledger.sim.community import Member
from gridledger.sim.records import Delivered


class FeatureHooks(Protocol):
    @property
    def name(self) -> str: ...

    def txs_a(self, step: Step) -> Sequence[bytes]:
        """Signed transactions for block A of ``step`` (orders and envelopes for its slot)."""
        ...

    def txs_b(self, step: Step) -> Sequence[bytes]:
        """Signed transactions for block B (the block in which ``step.slot`` clears)."""
        ...

    def after_clearing(self, step: Step) -> None:
        """``step.slot`` has cleared (trading steps only)."""
        ...

    def adjust_injection(self, step: Step, planned_wh: dict[str, int]) -> None:
        """Change the slot's planned net injection by cp (Wh, > 0 export) before physics."""
        ...

    def deliver(self, step: Step) -> None:
        """Physics of ``step.slot`` (trading steps only; the delivery feature)."""
        ...

    def after_delivery(self, step: Step, delivered: Delivered) -> None:
        """``step.slot`` was delivered and measured."""
        ...

    def txs_c(self, step: Step) -> Sequence[bytes]:
        """Signed transactions for block C (readings of ``step.slot - 1``)."""
        ...

    def after_readings(self, step: Step) -> None:
        """Block C is final: the readings of ``step.slot - 1`` are on the ledger."""
        ...

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        """Every finalized block, with its receipts' and the block's events."""
        ...

    def finish(self) -> None:
        """After the last step, before the network closes (final ledger reads)."""
        ...

    def after_run(self) -> None:
        """The stores are closed and final (``Engine.after_run``, while verify-chain
        finishes on the other core): start work on them that ``summary`` will read."""
        ...

    def run_ended(self, summary: dict[str, Any] | None) -> None:
        """The run is over: ``summary`` is its summary (verify-chain done), None if it
        failed. Last call to a feature (``run_demo``)."""
        ...

    def summary(self) -> dict[str, Any]:
        """Top-level sections this feature adds to ``summary.json`` (names it owns)."""
        ...

    def detections(self) -> dict[str, int]:
        """Counts added to ``summary.detections`` (all 0 in an honest run)."""
        ...


class AttackHooks(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def measured_at_end(self) -> bool:
        """Whether ``result`` exists only once the run is over (else: figures so far)."""
        ...

    def threat_row(self) -> str: ...

    def setup(self) -> None: ...

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]: ...

    def physical(self, slot: int, injection_wh: dict[str, int]) -> None: ...

    def measurements(self, slot: int, meas: SlotMeasurements,
                     honest: SlotMeasurements) -> SlotMeasurements: ...

    def partials(self, slot: int, values: list[int]) -> list[int]: ...

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]: ...

    def flex_offer(self, m: Member, body: dict[str, Any]) -> dict[str, Any]: ...

    def after_submit(self, slot: int, raws: list[bytes]) -> None: ...

    def before_tick(self, time_s: int) -> None: ...

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None: ...

    def result(self) -> dict[str, Any]: ...

    def timings(self) -> dict[str, Any]: ...
