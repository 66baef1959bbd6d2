"""The threat model's rows (``docs/threat-model.md``): every row,
its title and the scenarios that exercise it, so a run's summary can show each row —
including the ones no scenario of this run touched — and the report can group by row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThreatRow:
    row: str
    title: str
    scenarios: tuple[str, ...]
    """The docs/threat-model.md scenarios (``--attacks`` names) that measure this row."""


ROWS: tuple[ThreatRow, ...] = (
    ThreatRow("1", "False data injection", ("fdi-meter", "fdi-stealthy")),
    ThreatRow("2", "Denial of service", ("dos-flood",)),
    ThreatRow("3", "Energy usage data leakage", ("usage-inference",)),
    ThreatRow("4", "51 % attack on small ledgers", ("byzantine-validator",)),
    ThreatRow("5", "Privacy (market, data)", ("deanonymize",)),
    ThreatRow("6", "Market attacks", ("fake-bids", "non-delivery", "false-non-receipt",
                                      "price-manipulation")),
    ThreatRow("7", "Single point of failure", ("crash",)),
    ThreatRow("8", "Malicious edge nodes / aggregators", ("bad-aggregator",)),
    ThreatRow("9", "Regulation and standardisation", ("audit-export",)),
    ThreatRow("10", "Smart-meter firmware", ("vulnerable-firmware", "fake-patch")),
    ThreatRow("11", "Authenticating new prosumers", ("sybil",)),
    ThreatRow("12", "Smart contracts", ("contract-bug",)),
    ThreatRow("13", "Electric vehicles (roaming)", ("ev-roaming",)),
    ThreatRow("14", "Communication", ("replay", "tamper")),
    ThreatRow("Q", "Quantum adversary", ("classical-key",)),
)
BY_ROW: dict[str, ThreatRow] = {r.row: r for r in ROWS}
