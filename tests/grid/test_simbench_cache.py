"""SimBench nets are converted once and kept on disk (issue 17: an MV net with its LV
feeders took longer than 20 minutes to convert; the demo converted its net twice)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandapower as pp
import pytest
import simbench

from gridledger.errors import GridError
from gridledger.grid import model
from gridledger.grid.model import simbench_load_profiles, simbench_net

CODE = "1-LV-rural1--0-sw"


@pytest.fixture(scope="module")
def converted() -> Any:
    """SimBench's own conversion of CODE, made once here (~6 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simbench.get_simbench_net(CODE)


@pytest.fixture
def conversions(converted: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stands in for SimBench's conversion (a copy of the real one) and counts the calls."""
    calls: list[str] = []

    def convert(code: str) -> Any:
        calls.append(code)
        if code != CODE:
            raise ValueError(f"no such grid {code}")
        return copy.deepcopy(converted)

    monkeypatch.setattr(simbench, "get_simbench_net", convert)
    return calls


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("GRIDLEDGER_CACHE_DIR", str(tmp_path))
    simbench_net.cache_clear()
    yield tmp_path
    simbench_net.cache_clear()  # later tests convert (or read their own cache) again


def _files(root: Path) -> list[Path]:
    return sorted((root / "simbench").glob("*.pkl"))


def test_a_converted_net_is_read_back_from_the_cache(
        cache: Path, conversions: list[str]) -> None:
    first = simbench_net(CODE)
    (f,) = _files(cache)
    assert CODE in f.name and simbench.__version__ in f.name and pp.__version__ in f.name
    assert simbench_net(CODE) is first  # and kept in the process
    simbench_net.cache_clear()
    again = simbench_net(CODE)
    assert conversions == [CODE]  # converted once, read back after
    assert again is not first
    assert pp.toolbox.nets_equal(first, again, check_only_results=False)
    assert set(first.profiles) == set(again.profiles)


def test_a_damaged_cache_file_is_converted_again(cache: Path, conversions: list[str]) -> None:
    simbench_net(CODE)
    (f,) = _files(cache)
    f.write_bytes(b"not a pickle")
    simbench_net.cache_clear()
    net = simbench_net(CODE)
    assert len(net.bus) > 0 and conversions == [CODE, CODE]
    assert f.read_bytes() != b"not a pickle"  # rewritten whole


def test_an_unwritable_cache_only_costs_the_conversion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conversions: list[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("GRIDLEDGER_CACHE_DIR", str(blocker))
    simbench_net.cache_clear()
    try:
        assert len(simbench_net(CODE).bus) > 0
    finally:
        simbench_net.cache_clear()


def test_unknown_code_names_the_code(cache: Path, conversions: list[str]) -> None:
    with pytest.raises(GridError, match="unknown SimBench code '1-LV-nowhere--0-sw'"):
        simbench_net("1-LV-nowhere--0-sw")
    assert _files(cache) == []


def test_load_profiles_by_bus_come_from_the_same_net(
        cache: Path, conversions: list[str]) -> None:
    net = simbench_net(CODE)
    by_bus = simbench_load_profiles(CODE)
    assert by_bus and sum(len(v) for v in by_bus.values()) <= len(net.load)
    for bus, prof in zip(net.load.bus, net.load.profile, strict=True):
        assert str(prof) in by_bus[int(bus)]
    assert simbench_load_profiles("cigre-lv") == {}
    assert simbench_load_profiles("net.json") == {}
    assert model.cache_dir() == cache
