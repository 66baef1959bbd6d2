"""Scenario files for ``gridledger demo --config FILE`` (TOML), and the file every run saves.

A scenario file has up to five tables; every ``gridledger demo`` flag has a key, and every ledger
parameter (tariffs, grid fees, market mechanism, deposits, reputation ...) can be set in
``[params]`` (names of ``gridledger.ledger.params.Params``)::

    [community]
    participants = 30                  # --prosumers
    network = "1-LV-semiurb4--2-sw"    # --network: SimBench code or pandapower JSON file
    start_day = 136                    # day of the profile year (0 = 1 January)
    start_slot_of_day = 0              # 15-minute slot of that day the run starts at
    hours = 24                         # --hours (or: days = 7, --days)
    privacy = true                     # --privacy on|off: per-slot pseudonyms (default on)
    scenario = "default"               # --scenario default|evening-peak
    flexibility = true                 # --flexibility on|off: the DSO buys flexibility
    profiles = "my-street.csv"         # --profiles: the community's own 15-minute data

    [ledger]
    validators = 4                     # --validators
    chain_id = "gridledger-demo"
    seed = 7                           # --seed

    [attacks]
    names = ["default"]                # --attacks: names, or "default", "all", "none"

    [params]
    retail_import_micro_per_kwh = 250000
    mechanism = "uniform"              # uniform | pay_as_bid | continuous

    [run]                              # how to run it, not what: never saved by a run
    out = "gridledger-out"             # --out
    serve = 8080                       # --serve: the live dashboard's port

Left out, ``start_day`` / ``start_slot_of_day`` / ``hours`` follow the scenario as the flags
do: a profile file starts the run at its first row, ``evening-peak`` runs 8 hours from 16:00
on ``scenario.EVENING_PEAK_DAY``, the default a day from ``DEFAULT_START_DAY``.

``load_config`` checks a file whole before anything runs: unknown tables or keys, wrong
types and out-of-range values are a ``ConfigError`` naming the file and the key. Flags given
on the command line override the file. ``gridledger demo --write-config FILE`` writes the
defaults (the demo's own ledger parameters included) as a starting point, and every run saves
the scenario it ran as ``config.toml`` next to its results, so ``--config OUT/config.toml``
runs it again.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridledger.errors import ConfigError
from gridledger.files import read_bounded
from gridledger.grid import SLOTS_PER_DAY
from gridledger.ledger.params import PARAM_NAMES, Params, parse_params
from gridledger.sim.attacks import parse_attacks
from gridledger.sim.community import demo_params
from gridledger.sim.scenario import (
    DEFAULT_NETWORK,
    DEFAULT_START_DAY,
    DEMO_PRIVACY,
    EVENING_PEAK_DAY,
    EVENING_PEAK_START,
    FIXED_PARAMS,
    FIXED_WHY,
    MAX_VALIDATORS,
    Scenario,
    scenario_start,
)

CONFIG_NAME = "config.toml"
"""The scenario a run saved next to its results."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Community(_Strict):
    participants: int = Field(30, ge=2, le=2000)
    network: str = Field(DEFAULT_NETWORK, min_length=1)
    start_day: int | None = Field(None, ge=0, le=365)
    start_slot_of_day: int | None = Field(None, ge=0, lt=SLOTS_PER_DAY)
    hours: int | None = Field(None, ge=1, le=24 * 366)
    days: int | None = Field(None, ge=1, le=366)
    privacy: bool = DEMO_PRIVACY
    scenario: Literal["default", "evening-peak"] = "default"
    flexibility: bool = True
    profiles: str | None = Field(None, min_length=1)
    """--profiles: the community's own 15-minute data (CSV); the run starts at its first row."""


class Ledger(_Strict):
    validators: int = Field(4, ge=1, le=MAX_VALIDATORS)
    chain_id: str = Field("gridledger-demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    seed: int = Field(7, ge=0, le=2**63 - 1)


class Attacks(_Strict):
    names: list[str] = Field(default_factory=lambda: ["default"])


class Run(_Strict):
    """Run-time options: where the results go and the live dashboard, not the scenario."""

    out: str | None = Field(None, min_length=1)
    serve: int | None = Field(None, ge=1, le=65535)


class DemoConfig(_Strict):
    community: Community = Field(default_factory=lambda: Community.model_validate({}))
    ledger: Ledger = Field(default_factory=lambda: Ledger.model_validate({}))
    attacks: Attacks = Field(default_factory=Attacks)
    params: dict[str, Any] = Field(default_factory=dict)
    run: Run = Field(default_factory=lambda: Run.model_validate({}))


def _where(err: Mapping[str, Any]) -> str:
    loc = [str(x) for x in err.get("loc", ())]
    return f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else (loc[0] if loc else "")


def parse_config(doc: Mapping[str, Any], source: str = "config") -> DemoConfig:
    """Validate a scenario document (the parsed TOML). Raises ``ConfigError`` naming
    ``source`` and the table and key at fault."""
    try:
        cfg = DemoConfig.model_validate(dict(doc))
    except ValidationError as exc:
        errs = exc.errors()
        msg = "; ".join(f"{_where(e)}: {e['msg']}" for e in errs[:3])
        raise ConfigError(f"{source}: {msg}") from None
    c = cfg.community
    if c.hours is not None and c.days is not None:
        raise ConfigError(f"{source}: [community] give hours or days, not both")
    if c.scenario == "evening-peak" and c.profiles is not None:
        raise ConfigError(f"{source}: [community] scenario evening-peak runs SimBench's own "
                          "winter evening; it cannot take profiles")
    unknown = sorted(set(cfg.params) - PARAM_NAMES)
    if unknown:
        raise ConfigError(f"{source}: [params] unknown ledger parameter(s) {', '.join(unknown)}")
    try:
        parse_params(dict(cfg.params))
    except ConfigError as exc:
        raise ConfigError(f"{source}: [params] {exc}") from None
    for name, value in cfg.params.items():
        if name in FIXED_PARAMS and value != FIXED_PARAMS[name]:
            raise ConfigError(f"{source}: [params] {name} must stay {FIXED_PARAMS[name]} in the "
                              f"simulator ({FIXED_WHY[name]}), got {value!r}")
    try:
        parse_attacks(",".join(cfg.attacks.names), cfg.ledger.validators, cfg.community.privacy)
    except ConfigError as exc:
        raise ConfigError(f"{source}: [attacks] names: {exc}") from None
    return cfg


CONFIG_MAX_BYTES = 1024 * 1024  # a scenario is a page of TOML; a bound, not a budget


def load_config(path: Path) -> DemoConfig:
    """Read and validate a scenario file (``ConfigError`` names the file and key)."""
    try:
        text = read_bounded(Path(path), CONFIG_MAX_BYTES, "scenario file").decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not TOML: {exc}") from None
    return parse_config(doc, f"--config {path}")


FLAG_KEYS: dict[str, tuple[str, str]] = {
    "prosumers": ("community", "participants"), "network": ("community", "network"),
    "hours": ("community", "hours"), "days": ("community", "days"),
    "privacy": ("community", "privacy"), "scenario": ("community", "scenario"),
    "flexibility": ("community", "flexibility"), "profiles": ("community", "profiles"),
    "validators": ("ledger", "validators"), "seed": ("ledger", "seed"),
    "attacks": ("attacks", "names"), "serve": ("run", "serve"), "out": ("run", "out")}
"""Every ``gridledger demo`` flag (by its parameter name) -> its (table, key) in a file."""


def apply_flags(cfg: DemoConfig, flags: Mapping[str, Any], source: str = "config") -> DemoConfig:
    """``cfg`` with the flags given on the command line set over its keys (``flags``: flag
    name -> value as the key takes it; ``attacks`` may be the flag's comma-separated text),
    checked whole again (``ConfigError`` names ``source``, table and key). A flag that sets
    the run's length or start (hours/days, scenario, profiles) replaces the file's own."""
    doc = cfg.model_dump()
    for flag, value in flags.items():
        table, key = FLAG_KEYS[flag]
        if flag == "attacks" and isinstance(value, str):
            value = [a.strip() for a in value.split(",")]
        elif isinstance(value, Path):
            value = str(value)
        doc[table][key] = value
    if "hours" in flags:
        doc["community"]["days"] = None
    if "days" in flags:
        doc["community"]["hours"] = None
    if {"scenario", "profiles"} & set(flags):        # the flag's own start, as without a file
        doc["community"].update(start_day=None, start_slot_of_day=None)
    return parse_config(doc, source)


def scenario_of(cfg: DemoConfig) -> Scenario:
    """The run ``cfg`` describes (attack names resolved; ``check_scenario`` still applies)."""
    c, led = cfg.community, cfg.ledger
    peak = c.scenario == "evening-peak"
    default_hours = 8 if peak else 24               # the evening and its rebound
    hours = c.hours if c.hours is not None else (24 * c.days if c.days is not None
                                                 else default_hours)
    names, notes = parse_attacks(",".join(cfg.attacks.names), led.validators, c.privacy)
    params = dict(cfg.params)
    mechanism = str(params.pop("mechanism", "uniform"))
    # a value the demo would use anyway is no override (a saved file lists every parameter)
    usual = _effective(Scenario(mechanism=mechanism))
    params = {k: v for k, v in params.items() if k not in usual or _plain(v) != usual[k]}
    usual_day, usual_slot = ((EVENING_PEAK_DAY, EVENING_PEAK_START) if peak
                             else (DEFAULT_START_DAY, 0))
    start_day = usual_day if c.start_day is None else c.start_day
    start_slot = usual_slot if c.start_slot_of_day is None else c.start_slot_of_day
    if c.profiles is not None:                      # a profile file starts the run
        start_day, start_slot = scenario_start(c.profiles)
    return Scenario(participants=c.participants, slots=hours * SLOTS_PER_DAY // 24,
                    validators=led.validators, attacks=names, seed=led.seed, network=c.network,
                    start_day=start_day, start_slot_of_day=start_slot, profiles=c.profiles,
                    mechanism=mechanism, chain_id=led.chain_id, privacy=c.privacy,
                    scenario=c.scenario, flexibility=c.flexibility,
                    params=tuple(sorted(params.items())), notes=notes, serve_port=cfg.run.serve)


def config_of(sc: Scenario, *, all_params: bool = False,
              run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The scenario document of ``sc`` (what ``scenario_of`` reads back). With
    ``all_params`` every ledger parameter is written with the value the run uses; ``run``
    (``out``, ``serve``) is written as the ``[run]`` table when given."""
    hours, rest = divmod(sc.slots * 24, SLOTS_PER_DAY)
    if rest:
        raise ConfigError(f"{sc.slots} slots are not a whole number of hours")
    params: dict[str, Any] = {"mechanism": sc.mechanism, **dict(sc.params)}
    if all_params:
        params = {k: v for k, v in sorted(_effective(sc).items()) if v is not None}
    community: dict[str, Any] = {
        "participants": sc.participants, "network": sc.network, "start_day": sc.start_day,
        "start_slot_of_day": sc.start_slot_of_day, "hours": hours, "privacy": sc.privacy,
        "scenario": sc.scenario, "flexibility": sc.flexibility}
    if sc.profiles is not None:
        community["profiles"] = sc.profiles
    doc: dict[str, Any] = {
        "community": community,
        "ledger": {"validators": sc.validators, "chain_id": sc.chain_id, "seed": sc.seed},
        "attacks": {"names": list(sc.attacks) or ["none"]},
        "params": params}
    kept = {k: v for k, v in (run or {}).items() if v is not None}
    if kept:
        doc["run"] = kept
    return doc


def _effective(sc: Scenario) -> dict[str, Any]:
    """Every ledger parameter's value in a run of ``sc`` (lists for tuples)."""
    defaults = Params()
    run = demo_params(sc)
    return {f.name: _plain(run.get(f.name, getattr(defaults, f.name))) for f in fields(Params)}


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


# ------------------------------------------------------------------------------- writing

_HEADER = """\
# gridledger demo scenario: run it with `gridledger demo --config FILE`.
# Flags given on the command line override these values. [params] takes any ledger
# parameter of gridledger.ledger.params.Params (amounts in micro-units, 1 CU = 1 000 000;
# energies in Wh; prices and fees in micro-units per kWh; times in seconds).
"""


def dumps(doc: Mapping[str, Any]) -> str:
    """TOML text of a scenario document (tables of scalars and flat lists)."""
    out = [_HEADER]
    for table, body in doc.items():
        out.append(f"\n[{table}]\n")
        for key, value in body.items():
            out.append(f"{key} = {_toml(value)}\n")
    return "".join(out)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} to a scenario file")


def write_config(sc: Scenario, path: Path, *, all_params: bool = False,
                 run: Mapping[str, Any] | None = None) -> None:
    """Write ``sc`` as a scenario file (parents created); ``run``: see ``config_of``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(config_of(sc, all_params=all_params, run=run)), encoding="utf-8")
