"""Tidy tables out of a run: ``gridledger export DIR --format csv|parquet``.

The tables come from what the ledger certified, not from the simulator's memory: one
validator store under ``DIR`` is first replayed block by block (``verify_store``, the same
check as ``gridledger verify-chain``), then every receipt's events (transaction events and the
block's own events: clearing, settlement, reputation, certificates, flexibility) become rows.
A run directory written by ``gridledger demo`` also holds ``series.json``; its per-slot grid
results (power flow and state estimation, which the DSO runs off the ledger) become the
``grid`` table.

Each table is flat: one row per event, scalar columns only (byte strings as lowercase hex,
nested values as JSON text), units in the column names as the ledger names them
(``energy_wh``, ``price_micro_per_kwh``, ``payment_micro``: 1 micro = 10⁻⁶ currency unit).
Every event row starts with ``height`` (block), ``block_time_s`` (the block's certified slot
time, Unix seconds) and ``tx_id`` (hex, empty for a block event). See docs/export.md.

Errors: ``ExportError`` naming the store and the first bad block when the store does not
verify, or naming the directory when it holds no store; nothing is written then.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gridledger.errors import GridLedgerError
from gridledger.ledger import codec
from gridledger.ledger.block import Header
from gridledger.node.store import BlockStore
from gridledger.node.verify import find_stores, verify_store

FORMATS = ("csv", "parquet")


class ExportError(GridLedgerError):
    """The run cannot be exported: bad format, no store, unreadable summary."""


class StoreDoesNotVerify(ExportError):
    """The store fails verification (replay): nothing is exported from it."""


def _is(*types: str) -> Callable[[str], bool]:
    return lambda t: t in types


def _starts(prefix: str) -> Callable[[str], bool]:
    return lambda t: t.startswith(prefix)


# table name -> which event types fill it (source: each module's README, "events")
EVENT_TABLES: dict[str, Callable[[str], bool]] = {
    "trades": _is("trade"),                       # market clearing: one row per trade
    "prices": _is("slot_cleared", "slot_failed"),  # one row per slot: price, volume
    "settlements": _is("slot_settled"),           # one row per settled slot
    "bills": _is("bill"),                         # one row per participant and settled slot
    "readings": _is("reading"),                   # meter readings as the ledger holds them
    "flags": _is("reading_flagged"),              # false-data flags (DSO estimate replaces)
    "sanctions": _is("reputation", "unpaid", "commitment_forfeited", "dispute_decided",
                     "meter_quarantined"),
    "flexibility": _starts("flex_"),
    "certificates": _starts("certificates_"),
}


@dataclass(frozen=True)
class Exported:
    """What ``export_run`` wrote: table name -> (file, rows)."""

    store: Path
    blocks: int
    files: dict[str, tuple[Path, int]]


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, dict)):
        return json.dumps(_jsonable(value), sort_keys=True)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def ledger_rows(store_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event type, row)`` for every event in the store's receipts, in block order, plus
    ``("rejected", row)`` for every failed transaction (``rule``, ``detail``)."""
    store = BlockStore(store_path, readonly=True)
    try:
        for blk in store.blocks():
            header = Header.decode(blk.header)
            receipts = codec.decode(blk.receipts)
            base = {"height": blk.height, "block_time_s": header.slot_time}
            for r in receipts["txs"]:
                tx_id = r["tx"].hex()
                if not r["ok"]:
                    yield "rejected", {**base, "tx_id": tx_id, "rule": r["rule"],
                                       "detail": r["detail"]}
                for ev in r["events"]:
                    yield ev["type"], {**base, "tx_id": tx_id, **_flat(ev)}
            for ev in receipts["block"]:
                yield ev["type"], {**base, "tx_id": "", **_flat(ev)}
    finally:
        store.close()


def _flat(event: dict[str, Any]) -> dict[str, Any]:
    return {k: _cell(v) for k, v in event.items()}


GRID_COLUMNS = ("slot", "label", "min_vm_pu", "max_vm_pu", "max_loading_pct", "violations",
                "curtailed_wh", "flags", "community_net_wh", "retail_micro_per_kwh",
                "feed_in_micro_per_kwh", "grid_fee_micro_per_kwh")


def grid_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Per-slot grid results of a demo run (``series.json`` ``slots``: the DSO's power flow
    and state estimation, which run off the ledger), [] when the run has none."""
    path = run_dir / "series.json"
    if not path.is_file():
        return []
    try:
        series = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not readable JSON ({exc})") from exc
    slots = series.get("slots") if isinstance(series, dict) else None
    if not isinstance(slots, list):
        raise ExportError(f"{path}: no 'slots' list")
    return [{k: _cell(s.get(k)) for k in GRID_COLUMNS} for s in slots if isinstance(s, dict)]


def pick_store(run_dir: Path, store: Path | None = None) -> Path:
    """The store to export: ``store`` if given, else the first one under ``run_dir``."""
    if store is not None:
        if not store.is_file():
            raise ExportError(f"{store}: no such store file")
        return store
    found = find_stores(run_dir)
    if not found:
        raise ExportError(f"{run_dir}: no ledger store (*.sqlite) found")
    return found[0]


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``rows`` as a frame whose integer columns stay integers where some rows lack them (a
    table of several event types): pandas' nullable ``Int64``, written as ``13056`` with an
    empty cell, not as the float ``13056.0`` (which also rounds integers beyond 2**53)."""
    frame = pd.DataFrame.from_records(rows)
    for col in frame.columns:
        if frame[col].dtype.kind in "iu":
            continue
        values = [r.get(col) for r in rows]
        present = [v for v in values if v is not None]
        if present and all(type(v) is int and -(2**63) <= v < 2**63 for v in present):
            frame[col] = pd.array(values, dtype="Int64")
    return frame


def export_run(run_dir: Path, out_dir: Path, fmt: str = "csv",
               store: Path | None = None) -> Exported:
    """Verify one store of the run and write every table to ``out_dir`` as ``<table>.<fmt>``.

    Tables: trades, prices, settlements, bills, readings, flags, sanctions, flexibility,
    certificates (each only when the run has such events), rejected (failed transactions by
    rule), events (every event, attributes as JSON), grid (from series.json when present).
    Raises ``ExportError`` (bad format, no store, store that does not verify).
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    path = pick_store(run_dir, store)
    report = verify_store(path)
    if not report.ok:
        raise StoreDoesNotVerify(f"{path}: does not verify — first bad block {report.bad_height}: "
                          f"{report.reason}; nothing exported")
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in EVENT_TABLES}
    tables["rejected"] = []
    events: list[dict[str, Any]] = []
    for typ, row in ledger_rows(path):
        if typ == "rejected":
            tables["rejected"].append(row)
            continue
        events.append({"height": row["height"], "block_time_s": row["block_time_s"],
                       "tx_id": row["tx_id"], "type": typ,
                       "attrs": json.dumps({k: v for k, v in row.items()
                                            if k not in ("height", "block_time_s", "tx_id",
                                                         "type")}, sort_keys=True)})
        for name, wanted in EVENT_TABLES.items():
            if wanted(typ):
                tables[name].append(row)
    tables["events"] = events
    tables["grid"] = grid_rows(run_dir if run_dir.is_dir() else run_dir.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, int]] = {}
    for name, rows in tables.items():
        if not rows:
            # an earlier export's table of that name would pass for this run's
            (out_dir / f"{name}.{fmt}").unlink(missing_ok=True)
            continue
        frame = to_frame(rows)
        file = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(file, index=False)
        else:
            frame.to_parquet(file, index=False)
        files[name] = (file, len(frame))
    return Exported(path, report.blocks, files)
