"""The pytest plugins are loaded by name (pyproject.toml: ``--disable-plugin-autoload`` and a
``-p`` per plugin, so that pytest does not rewrite the asserts of every module of their
distributions): every plugin installed through an entry point must be named there, or its
fixtures, markers and options would silently go missing."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_installed_plugin_is_named_in_addopts(pytestconfig: pytest.Config) -> None:
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]["addopts"]
    assert "--disable-plugin-autoload" in addopts
    named = {addopts[i + 1] for i, a in enumerate(addopts) if a == "-p"}
    installed = {ep.value for dist in importlib.metadata.distributions()
                 for ep in dist.entry_points if ep.group == "pytest11"}
    assert installed <= named, f"installed but not loaded: {sorted(installed - named)}"
    # and each named plugin is registered in this session
    for name in named:
        assert pytestconfig.pluginmanager.has_plugin(name), name
