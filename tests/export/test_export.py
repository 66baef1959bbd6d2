"""``gridledger export``: a short real run's certified receipts as tables pandas loads.

One short demo (20 participants, 8 midday slots, 1 validator, no attacks) is shared by the
tests; the tables are checked against the run's own summary and against the documented
columns (docs/export.md), and a store with one altered byte exports nothing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from gridledger.cli.main import app
from gridledger.export import EVENT_TABLES, export_run
from gridledger.sim.demo import run_demo, write_outputs
from gridledger.sim.scenario import Scenario

DOCS = Path(__file__).resolve().parents[2] / "docs" / "export.md"
LEDGER_COLUMNS = {"height", "block_time_s", "tx_id"}  # "Every ledger table starts with"
MUST_HAVE = {"trades", "prices", "settlements", "bills", "readings", "sanctions", "events", "grid"}
"""Tables the short honest run writes (flags, flexibility and rejected need an attack, a flex
programme or a refused transaction)."""


def documented_columns() -> dict[str, tuple[set[str], set[str]]]:
    """docs/export.md's table of tables: {table: (columns always present, columns present
    "for" a case)} — the backquoted names of each row's "main columns" cell."""
    out = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(r"\| `(\w+)` \| .*? \| (.*) \|$", line)
        if m:
            always, _, cases = m.group(2).partition(";")
            named = set(re.findall(r"`(\w+)`", always))
            out[m.group(1)] = (named if m.group(1) == "grid" else named | LEDGER_COLUMNS,
                               set(re.findall(r"`(\w+)` for", cases + " " + always)))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("export-run")
    sc = Scenario(participants=20, slots=8, validators=1, attacks=(), seed=7,
                  start_slot_of_day=44)
    summary, series = run_demo(sc, out)
    write_outputs(summary, series, out)
    return out, summary


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_load_in_pandas_with_the_documented_columns(
        run_dir: tuple[Path, dict[str, Any]], tmp_path: Path, fmt: str) -> None:
    out, summary = run_dir
    done = export_run(out, tmp_path / fmt, fmt)
    assert done.blocks > 0
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    frames = {name: read(file) for name, (file, _) in done.files.items()}
    documented = documented_columns()
    assert set(frames) <= set(documented) and MUST_HAVE <= set(frames), sorted(frames)
    for name, frame in frames.items():
        always, cases = documented[name]
        missing = always - cases - set(frame.columns)
        assert not missing, (name, missing)  # every column the page promises is there
        assert len(frame) == done.files[name][1]
    failed = frames["prices"]["type"].eq("slot_failed").any()
    assert ("reason" in frames["prices"].columns) == failed
    trades = frames["trades"]
    # the same trades the run reports (certified receipts, not the simulator's memory)
    assert len(trades) == summary["market"]["trades"]
    assert int(trades["energy_wh"].sum()) == summary["market"]["energy_traded_wh"]
    assert (trades["payment_micro"] >= 0).all() and (trades["energy_wh"] > 0).all()
    # every trade's slot was cleared with a price row, and hex addresses are 32 bytes
    assert set(trades["slot"]) <= set(frames["prices"]["slot"])
    assert trades["buyer"].map(len).eq(64).all()
    # one bill per participant and settled slot
    assert not frames["bills"].duplicated(["slot", "addr"]).any()
    # every event sits in the catch-all table once
    typed = sum(len(frames[n]) for n in EVENT_TABLES if n in frames and n != "sanctions")
    assert len(frames["events"]) >= typed
    assert set(frames["events"]["type"]) >= {"trade", "bill", "reading", "slot_cleared"}
    grid = frames["grid"]
    assert len(grid) == 8 and (grid["min_vm_pu"] > 0.8).all() and (grid["max_vm_pu"] < 1.2).all()


def test_cli_writes_tables_and_refuses_a_tampered_store(
        run_dir: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = run_dir
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(out), "--out", str(tmp_path / "ok")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ok" / "trades.csv").is_file() and "verified" in res.output

    res = runner.invoke(app, ["export", str(out), "--format", "xlsx"])
    assert res.exit_code == 2 and "--format" in res.output

    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    store = sorted(bad.rglob("*.sqlite"))[0]
    for side in store.parent.glob(store.name + "-*"):
        side.unlink()
    raw = bytearray(store.read_bytes())
    i = raw.rfind(b"slot_cleared")  # one letter of a certified receipt's event
    assert i > 0
    raw[i] ^= 0x01
    store.write_bytes(bytes(raw))
    res = runner.invoke(app, ["export", str(bad), "--out", str(tmp_path / "bad-out")])
    assert res.exit_code == 1, res.output
    assert "does not verify" in res.output and "first bad block" in res.output
    assert not (tmp_path / "bad-out").exists()
