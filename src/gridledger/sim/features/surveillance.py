"""Market surveillance in the demo: the community's genesis turns the ledger module on
(``sim.community``); this feature reads its findings (``surveillance/findings``) for the
summary and the report. Nothing here decides anything: the validators found them.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any, ClassVar

from gridledger.sim.feature import Feature, ReportSection


class Surveillance(Feature):
    name: ClassVar[str] = "surveillance"
    threat_rows: ClassVar[tuple[str, ...]] = ("6",)

    def _findings(self) -> list[dict[str, Any]]:
        return self.ctx.ledger.market_abuse_findings()

    def summary(self) -> dict[str, Any]:
        ctx = self.ctx
        rows = []
        kinds: dict[str, int] = {}
        for f in self._findings():
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
            names = []
            for a in f["subjects"]:
                m = ctx.identities.owner(bytes(a))
                names.append(m.name if m is not None else bytes(a).hex()[:12])
            row = {"id": f["id"], "kind": f["kind"], "slot": f["slot"],
                   "label": ctx.label(f["slot"]), "subjects": names, "basis": f["basis"],
                   "mitigated_offers": sum(1 for o in f["offers"]
                                           if o.get("mitigated_micro_per_kwh") is not None)}
            for k in ("price_micro_per_kwh", "mitigated_price_micro_per_kwh", "volume_wh",
                      "mitigated_volume_wh", "unmet_wh", "peak_wh", "gross_wh", "net_wh",
                      "reversals"):
                if f.get(k) is not None:
                    row[k] = f[k]
            withdrawn = sum(o.get("withdrawn_wh") or 0 for o in f["offers"])
            if withdrawn:
                row["withdrawn_wh"] = withdrawn
            metered = sum(o.get("metered_wh") or 0 for o in f["offers"])
            if metered:
                row["metered_wh"] = metered
            rows.append(row)
        return {"surveillance": {"enabled": ctx.ledger.surveillance_config() is not None,
                                 "findings": len(rows), "by_kind": dict(sorted(kinds.items())),
                                 "rows": rows}}

    def detections(self) -> dict[str, int]:
        return {"market_abuse_findings": len(self._findings())}

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        sv = summary.get("surveillance")
        if not isinstance(sv, Mapping):
            return []
        rows = sv.get("rows") or []
        if not rows:
            body = ('<p class="muted">No findings: surveillance (withholding, layering, wash '
                    'trades, physical withholding) ran in every block and found nothing.</p>')
        else:
            def cell(v: Any) -> str:
                return escape(f"{v:,}" if isinstance(v, int) else str(v))

            trs = []
            for r in rows:
                figures = ", ".join(f"{k.replace('_', ' ')} {cell(r[k])}" for k in (
                    "price_micro_per_kwh", "mitigated_price_micro_per_kwh", "volume_wh",
                    "mitigated_volume_wh", "metered_wh", "unmet_wh", "withdrawn_wh", "peak_wh",
                    "gross_wh", "net_wh", "reversals") if k in r)
                trs.append(f"<tr><td class=\"num\">{cell(r['id'])}</td><td>{cell(r['kind'])}</td>"
                           f"<td>{cell(r['label'])}</td><td>{cell(', '.join(r['subjects']))}</td>"
                           f"<td>{figures}</td><td class=\"muted\">{cell(r['basis'])}</td></tr>")
            body = ("<table><thead><tr><th class=\"num\">#</th><th>kind</th><th>slot</th>"
                    "<th>subjects</th><th>evidence</th><th>basis</th></tr></thead><tbody>"
                    + "".join(trs) + "</tbody></table>")
        return [ReportSection("surveillance", "Market surveillance", body,
                              note="findings recorded on the ledger by every validator; "
                                   "each costs its subjects reputation")]
