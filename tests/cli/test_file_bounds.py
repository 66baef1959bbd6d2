"""Files an operator names are read with a bound (``gridledger.files.read_bounded``): a
mistyped path to something huge is refused by its size, naming the file and the bound, before
it is read into memory. Each file here is sparse: the test costs no disk and no reading."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridledger.cli.certificates import PROOF_MAX_BYTES
from gridledger.cli.main import EVIDENCE_MAX_BYTES, app
from gridledger.errors import ConfigError
from gridledger.files import FileTooLarge, read_bounded
from gridledger.node.network_files import JOIN_MAX_BYTES
from gridledger.sim.config import CONFIG_MAX_BYTES, load_config


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def test_read_bounded_reads_at_most_the_bound(tmp_path: Path) -> None:
    f = _sparse(tmp_path / "disk.img", 2**40)  # a terabyte, sparse: reading it would not end
    with pytest.raises(FileTooLarge, match=r"disk\.img: 1,099,511,627,776 bytes, more than "
                                           r"the 1,024 a thing may have"):
        read_bounded(f, 1024, "thing")
    ok = tmp_path / "ok"
    ok.write_bytes(b"x" * 1024)
    assert read_bounded(ok, 1024, "thing") == b"x" * 1024  # the bound itself is allowed


@pytest.mark.parametrize("args, size, needle", [
    (["certificates", "verify", "{f}"], PROOF_MAX_BYTES + 1, "certificate proof"),
    (["tx", "propose-validator", "--key", "nokey", "--add", "{f}"], JOIN_MAX_BYTES + 1,
     "--add: "),
    (["tx", "propose-validator", "--key", "nokey", "--remove", "00" * 32, "--evidence", "{f}"],
     EVIDENCE_MAX_BYTES + 1, "--evidence: "),
])
def test_cli_files_past_their_bound_are_usage_errors(tmp_path: Path, args: list[str], size: int,
                                                     needle: str) -> None:
    f = _sparse(tmp_path / "big.json", size)
    res = CliRunner().invoke(app, [a.replace("{f}", str(f)) for a in args])
    out = " ".join(res.output.split())  # rich wraps long lines
    assert res.exit_code == 2, out
    assert needle in out and f"{size:,} bytes, more than the {size - 1:,}" in out, out


def test_a_scenario_file_past_its_bound_is_a_config_error(tmp_path: Path) -> None:
    f = _sparse(tmp_path / "run.toml", CONFIG_MAX_BYTES + 1)
    with pytest.raises(ConfigError, match=r"--config .*run\.toml: cannot read it .*more than "
                                          r"the 1,048,576 a scenario file may have"):
        load_config(f)
