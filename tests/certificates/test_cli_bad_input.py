"""``gridledger certificates`` refuses bad input with exit 2 and a message naming what is
wrong (never a traceback, never an 'internal error')."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridledger.cli.main import app


def _run(*args: str) -> tuple[int, str]:
    """(exit code, output with the console's line wrapping undone: words joined by one
    space, and again with no space at all, so a wrapped path is found too)."""
    res = CliRunner().invoke(app, ["certificates", *args])
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    return res.exit_code, " ".join(res.output.split()) + " | " + "".join(res.output.split())


@pytest.mark.parametrize("content", [b"garbage", b""])
def test_a_file_that_is_not_a_store(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.sqlite").write_bytes(content)
    code, out = _run("export", str(tmp_path))
    assert code == 2 and "x.sqlite" in out and "not a readable ledger store" in out, out


def test_an_sqlite_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "other.sqlite")
    db.execute("CREATE TABLE t (x)")
    db.close()
    code, out = _run("prove", str(tmp_path), "1:1")
    assert code == 2 and "other.sqlite" in out, out


def test_usage_errors(tmp_path: Path) -> None:
    cases = [
        (("export", str(tmp_path / "missing")), "does not exist"),
        (("export", str(tmp_path)), "no ledger store"),
        (("export", str(tmp_path), "--format", "xml"), "--format"),
        (("prove", str(tmp_path), "12"), "<slot>:<start>"),
        (("prove", str(tmp_path), "a:b"), "<slot>:<start>"),
        (("prove", str(tmp_path), "1:-5"), "<slot>:<start>"),
        (("prove", str(tmp_path), "1:" + "9" * 30), "<slot>:<start>"),
        (("verify", str(tmp_path / "none.json")), "not a certificate proof"),
        (("verify", str(tmp_path / "none.json"), "--genesis-hash", "zz"), "--genesis-hash"),
        (("verify", str(tmp_path / "none.json"), "--genesis-hash", "00" * 8), "32 bytes"),
    ]
    (tmp_path / "junk.json").write_text("{\"format\": \"other\"}")
    cases.append((("verify", str(tmp_path / "junk.json")), "not a certificate proof"))
    for args, words in cases:
        code, out = _run(*args)
        assert code == 2 and words in out, (args, out)
