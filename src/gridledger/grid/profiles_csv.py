"""A community's own 15-minute meter data as the network's profiles (``--profiles FILE.csv``).

Format (docs/profiles.md): one row per 15-minute slot, a ``timestamp`` column in ISO 8601
**with a UTC offset** (``2016-05-16T00:00:00+02:00``; the slot *starts* at the timestamp),
then one column per connection point and quantity, named ``<cp id>:<quantity>_<unit>``:

- quantity ``load`` (consumption) and ``pv`` (local generation) — or, from a bidirectional
  meter without sub-metering, ``import`` and ``export`` (taken as consumption and generation);
  optional ``storage`` (battery, + discharging / − charging) and ``reactive`` (reactive
  consumption; without it, the network's own reactive/active ratio of that cp is applied);
- unit ``wh`` or ``kwh`` (energy in the slot), ``varh`` or ``kvarh`` for ``reactive``.

Every connection point of the network needs its ``load``/``import`` and ``pv``/``export``
columns (a partial picture would let the power flow run on made-up loads). Rows must be
consecutive 15-minute steps once converted to UTC (a daylight-saving change written without its
offset shows up as a gap or a repeat). A slot's position in the profile year is its number of
15-minute steps since 1 January 00:00 UTC of the first timestamp's year; the file's window
replaces the network's profiles there, and a run must stay inside that window.

Errors: ``GridError`` naming the file, row (1-based, header = row 1) and column: missing
columns, unknown connection points, bad or missing timestamps, wrong time step, gaps,
non-numeric, missing or negative consumption values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridledger.errors import GridError
from gridledger.grid.model import SLOT_MINUTES, GridModel, with_profiles

QUANTITIES = {"load": "load", "import": "load", "pv": "pv", "export": "pv", "storage": "storage",
              "reactive": "reactive"}
UNITS = {"wh": 1.0, "kwh": 1000.0, "varh": 1.0, "kvarh": 1000.0}
_REACTIVE_UNITS = ("varh", "kvarh")
_COLUMN = re.compile(r"^(?P<cp>.+):(?P<q>[a-z]+)_(?P<u>[a-z]+)$")
STEP = pd.Timedelta(minutes=SLOT_MINUTES)
ZERO = pd.Timedelta(0)


@dataclass(frozen=True)
class ProfileWindow:
    """The network with the file's profiles, and where they sit in its profile year."""

    model: GridModel
    first_slot: int
    """Index of the file's first row in the profile year (= ledger slot of that row)."""
    n_slots: int
    path: Path

    @property
    def end_slot(self) -> int:
        return self.first_slot + self.n_slots


def _fail(path: Path, where: str, what: str) -> GridError:
    return GridError(f"{path}: {where}: {what}")


CELL_MAX_BYTES = 64  # a timestamp is 25 characters, a number far fewer: an ample bound


def max_csv_bytes(model: GridModel) -> int:
    """The largest profiles file ``model`` can take: a header and one row per slot of its
    year, each with a timestamp and four quantities per connection point."""
    return (model.n_slots + 1) * (1 + 4 * len(model.cp_ids)) * CELL_MAX_BYTES


def read_profiles_csv(path: Path, model: GridModel) -> ProfileWindow:
    """Parse and check ``path`` against ``model``'s connection points; returns the model with
    the file's window in place. Raises ``GridError`` (file, row, column named)."""
    path = Path(path)
    if not model.full_year:
        raise GridError(f"{path}: the profiles replace a window of {model.name}'s whole profile "
                        "year; load the network without a window")
    try:
        size, bound = path.stat().st_size, max_csv_bytes(model)
        if size > bound:  # pandas holds the whole file: a wrong path must not fill memory
            raise _fail(path, "the file", f"{size:,} bytes, more than the {bound:,} that a "
                        f"year of 15-minute rows for {model.name}'s {len(model.cp_ids)} "
                        "connection points can take")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise GridError(f"{path}: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise GridError(f"{path}: not a readable CSV file ({exc})") from None
    if "timestamp" not in frame.columns:
        raise _fail(path, "row 1", "no 'timestamp' column")
    if frame.empty:
        raise _fail(path, "row 2", "no data rows")
    times = _timestamps(path, frame["timestamp"])
    cols = _columns(path, [c for c in frame.columns if c != "timestamp"], model)
    n_rows = len(frame)
    first = _slot_of(path, times[0], str(frame["timestamp"].iloc[0]))
    if first + n_rows > model.n_slots:
        raise _fail(path, f"row {n_rows + 1}, column 'timestamp'",
                    f"the data runs to slot {first + n_rows} of the year, past the "
                    f"{model.n_slots} slots of {model.name}'s profile year")
    arrays = {"load": model.load_wh.copy(), "pv": model.pv_wh.copy(),
              "storage": model.storage_wh.copy(), "reactive": model.load_varh.copy()}
    window = slice(first, first + n_rows)
    for (cp, quantity), (name, scale) in sorted(cols.items()):
        values = _numbers(path, frame[name], name, nonneg=quantity in ("load", "pv"))
        arrays[quantity][model.cp_index(cp), window] = np.rint(values * scale).astype(np.int64)
    ratio = model.year.reactive_ratio()
    for i, cp in enumerate(model.cp_ids):
        if (cp, "storage") not in cols:  # optional: no column, no battery in the window
            arrays["storage"][i, window] = 0
        if (cp, "reactive") not in cols:  # the cp's own reactive/active ratio
            arrays["reactive"][i, window] = np.rint(arrays["load"][i, window] * ratio[i])
    updated = with_profiles(model, load_wh=arrays["load"], pv_wh=arrays["pv"],
                            storage_wh=arrays["storage"], load_varh=arrays["reactive"],
                            name=model.name)
    return ProfileWindow(updated, first, n_rows, path)


def first_slot_of_file(path: Path) -> int:
    """The profile-year slot of the file's first row (only the first row is read)."""
    path = Path(path)
    try:
        head = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=1)
    except FileNotFoundError:
        raise GridError(f"{path}: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise GridError(f"{path}: not a readable CSV file ({exc})") from None
    if "timestamp" not in head.columns or head.empty:
        raise _fail(path, "row 1", "no 'timestamp' column or no data rows")
    ts = _timestamps(path, head["timestamp"])[0]
    return _slot_of(path, ts, str(head["timestamp"].iloc[0]))


def _slot_of(path: Path, ts: pd.Timestamp, text: str) -> int:
    year_start = pd.Timestamp(year=ts.year, month=1, day=1, tz="UTC")
    first = (ts - year_start) // STEP
    if ts != year_start + first * STEP:
        raise _fail(path, "row 2, column 'timestamp'",
                    f"{text} is not on a {SLOT_MINUTES}-minute boundary")
    return int(first)


def _timestamps(path: Path, raw: pd.Series) -> list[pd.Timestamp]:
    out: list[pd.Timestamp] = []
    for i, text in enumerate(raw.tolist()):
        row = f"row {i + 2}, column 'timestamp'"
        if not text:
            raise _fail(path, row, "missing timestamp")
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError):
            raise _fail(path, row, f"{text!r} is not an ISO 8601 timestamp") from None
        if ts.tzinfo is None:
            raise _fail(path, row, f"{text!r} has no UTC offset (write e.g. +01:00 or Z; "
                                   f"local times are ambiguous around daylight-saving changes)")
        ts = ts.tz_convert("UTC")
        if out and ts - out[-1] != STEP:
            step = ts - out[-1]
            if step <= ZERO:
                what = "a repeated or earlier time (a daylight-saving change without its offset?)"
            elif step % STEP == ZERO:
                missing = step // STEP - 1
                what = (f"a gap of {step.total_seconds() / 60:g} minutes ({missing} missing "
                        f"slot{'s' if missing > 1 else ''})")
            else:
                what = f"a step of {step.total_seconds() / 60:g} minutes, not {SLOT_MINUTES}"
            raise _fail(path, row, f"{text} after {out[-1].isoformat()}: {what}")
        out.append(ts)
    return out


def _columns(path: Path, names: list[str],
             model: GridModel) -> dict[tuple[str, str], tuple[str, float]]:
    known = set(model.cp_ids)
    cols: dict[tuple[str, str], tuple[str, float]] = {}
    for j, name in enumerate(names):
        where = f"row 1, column {j + 2} {name!r}"
        m = _COLUMN.match(name)
        if m is None:
            raise _fail(path, where,
                        "expected '<cp id>:<quantity>_<unit>', e.g. 'cp-00001:load_kwh'")
        cp, q, u = m["cp"], m["q"], m["u"]
        if cp not in known:
            raise _fail(path, where, f"unknown connection point {cp!r} (not in {model.name}; "
                                     f"its cps are {min(known)} … {max(known)})")
        if q not in QUANTITIES:
            raise _fail(path, where, f"unknown quantity {q!r} (one of {', '.join(QUANTITIES)})")
        if (q == "reactive") != (u in _REACTIVE_UNITS) or u not in UNITS:
            raise _fail(path, where, f"unit {u!r} does not fit {q!r} ("
                                     + ("varh or kvarh" if q == "reactive" else "wh or kwh") + ")")
        key = (cp, QUANTITIES[q])
        if key in cols:
            raise _fail(path, where, f"a second {QUANTITIES[q]} column for {cp} "
                                     f"(first: {cols[key][0]!r})")
        cols[key] = (name, UNITS[u])
    for cp in model.cp_ids:
        for q, alias in (("load", "import"), ("pv", "export")):
            if (cp, q) not in cols:
                raise _fail(path, "row 1", f"no {q} column for connection point {cp} "
                                           f"(e.g. '{cp}:{q}_kwh' or '{cp}:{alias}_kwh'): every "
                                           f"cp of {model.name} needs its data")
    return cols


def _numbers(path: Path, raw: pd.Series, name: str, *, nonneg: bool) -> npt.NDArray[np.float64]:
    values: npt.NDArray[np.float64] = np.asarray(pd.to_numeric(raw, errors="coerce"),
                                                 dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        text = raw.iloc[i]
        raise _fail(path, f"row {i + 2}, column {name!r}",
                    "missing value" if not text else f"{text!r} is not a number")
    if nonneg and (values < 0).any():
        i = int(np.argmax(values < 0))
        raise _fail(path, f"row {i + 2}, column {name!r}",
                    f"negative value {raw.iloc[i]} (consumption and generation are >= 0; a "
                    f"battery goes in a 'storage' column)")
    return values


def write_profiles_csv(path: Path, model: GridModel, first_slot: int, n_slots: int,
                       unit: str = "kwh", year: int = 2016) -> None:
    """Write ``model``'s profiles for ``n_slots`` slots from ``first_slot`` in this format
    (load, pv, storage, reactive per cp; timestamps in UTC) — e.g. a SimBench day as a test
    fixture."""
    scale = UNITS[unit]
    origin = pd.Timestamp(year=year, month=1, day=1, tz="UTC")
    data: dict[str, Any] = {"timestamp": [(origin + (first_slot + k) * STEP).isoformat()
                                          for k in range(n_slots)]}
    model.check_slot(first_slot + n_slots - 1)
    start = model.column(first_slot)
    window = slice(start, start + n_slots)
    for i, cp in enumerate(model.cp_ids):
        for q, arr in (("load", model.load_wh), ("pv", model.pv_wh),
                       ("storage", model.storage_wh), ("reactive", model.load_varh)):
            vals = arr[i, window].tolist()
            u = unit if q != "reactive" else ("kvarh" if unit == "kwh" else "varh")
            data[f"{cp}:{q}_{u}"] = ([f"{v / scale:.3f}" for v in vals] if scale > 1
                                     else [str(v) for v in vals])
    pd.DataFrame(data).to_csv(path, index=False)
