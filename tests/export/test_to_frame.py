"""Integer columns stay integers in a table of several event types (fourteenth session: the
certificates table wrote ``hour`` 3264 as ``3264.0`` and ``slot`` 13056 as ``13056.0``, and
prices ``80000.0``, because rows without the column made pandas use floats)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gridledger.export import to_frame


def test_integer_columns_with_gaps_are_written_as_integers(tmp_path: Path) -> None:
    big = 2**60 + 1  # beyond a float's 53-bit mantissa: a float column would change it
    rows = [{"type": "hour_closed", "hour": 3264, "expired_wh": 0},
            {"type": "issued", "slot": 13056, "energy_wh": big, "price": 0.5},
            {"type": "issued", "slot": 13057, "energy_wh": 7, "price": None, "ok": True}]
    frame = to_frame(rows)
    out = tmp_path / "t.csv"
    frame.to_csv(out, index=False)
    lines = out.read_text().splitlines()
    assert lines[0] == "type,hour,expired_wh,slot,energy_wh,price,ok"
    assert lines[1] == "hour_closed,3264,0,,,,"
    assert lines[2] == f"issued,,,13056,{big},0.5,"
    assert lines[3] == "issued,,,13057,7,,True"
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back["energy_wh"].tolist()[1:] == [big, 7] and str(back["slot"].dtype) == "Int64"
