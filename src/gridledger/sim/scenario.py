"""What a simulation run is: its parameters, checked before any work starts.

``Scenario`` is everything ``gridledger demo`` takes from its flags (attack names are
resolved by ``sim.attacks.parse_attacks``). ``check_scenario`` turns bad input (unknown
network, sizes out of range) into a
``ConfigError`` whose message names the problem, and loads the grid once, so a run never
fails half-way for a reason that was visible at the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridledger.errors import ConfigError, GridError
from gridledger.grid import SLOTS_PER_DAY, GridModel, add_der, load_grid
from gridledger.grid.profiles_csv import first_slot_of_file, read_profiles_csv
from gridledger.ledger.params import PARAM_NAMES, parse_params
from gridledger.sim.modes import DEMO_PRIVACY as DEMO_PRIVACY

DEFAULT_NETWORK = "1-LV-semiurb4--2-sw"
"""SimBench semi-urban LV grid, 2024 scenario: 39 connection points with households, shops,
PV, home and commercial batteries, heat pumps and EV chargers, on a 400 kVA transformer."""

DEFAULT_START_DAY = 136
"""Monday 16 May 2016 (day-of-year index in SimBench's profile year): a sunny spring day."""

MAX_SLOTS = 366 * SLOTS_PER_DAY

FIXED_PARAMS: dict[str, int] = {"slot_seconds": 900}
"""Ledger parameters the simulator cannot change, and why (``FIXED_WHY``)."""
FIXED_WHY = {"slot_seconds": "its load and PV profiles are 15-minute series"}
MAX_VALIDATORS = 31
SCENARIOS = ("default", "evening-peak")
EVENING_PEAK_DAY = 20
"""Thursday 21 January 2016: a winter weekday (heat pumps run, the evening load peaks)."""
EVENING_PEAK_START = 64
"""16:00: the run covers the evening peak and the hours after it (EV charging deferred)."""
EVENING_PEAK_EV_KW = 7.4
"""Every connection point gets a 7.4 kW (single-phase 32 A) EV charger that charges at full
power from 17:00 for 3 h (``grid.add_der``): on the default feeder this loads lines to
~118 % at the evening peak, where the stock feeder stays below 60 %."""


@dataclass(frozen=True)
class Scenario:
    participants: int = 30
    slots: int = SLOTS_PER_DAY
    validators: int = 4
    attacks: tuple[str, ...] = ()
    seed: int = 7
    network: str = DEFAULT_NETWORK
    start_day: int = DEFAULT_START_DAY
    start_slot_of_day: int = 0
    mechanism: str = "uniform"
    chain_id: str = "gridledger-demo"
    privacy: bool = False
    """Privacy mode: households trade and meter under per-slot pseudonyms (``--privacy``)."""
    scenario: str = "default"
    """``default`` or ``evening-peak`` (high EV adoption on a winter evening, issue 15)."""
    flexibility: bool = True
    """Whether the DSO buys flexibility (``flex`` module) when it predicts a violation."""
    params: tuple[tuple[str, Any], ...] = ()
    """Ledger parameter overrides for the genesis (``gridledger.ledger.params.Params``
    names), applied over the demo's own; e.g. ``(("retail_hold_slots", 0),)``."""
    notes: tuple[str, ...] = field(default=(), compare=False)
    """Adjustments made while parsing (e.g. an attack left out of the default set)."""
    serve_port: int | None = field(default=None, compare=False)
    """``--serve``: serve the live dashboard of the run on 127.0.0.1 at this port."""
    profiles: str | None = None
    """``--profiles``: a CSV of the community's own 15-minute data replacing the network's
    profiles in the file's window (format: ``gridledger.grid.profiles_csv``, docs/profiles.md)."""

    @property
    def first_slot(self) -> int:
        """The first simulated slot, as an index into the profile year (= ledger slot)."""
        return self.start_day * SLOTS_PER_DAY + self.start_slot_of_day

    @property
    def profile_window(self) -> tuple[int, int]:
        """The profile-year slots a run reads, ``(first, end)``: its days (with the hour after
        its last slot, in which that slot settles), the day before (the leaked history of
        privacy mode's linkage attack) and the day after (forecasts past the end)."""
        first_day = self.first_slot // SLOTS_PER_DAY - 1
        last_day = (self.first_slot + self.slots + 3) // SLOTS_PER_DAY + 1
        return max(0, first_day) * SLOTS_PER_DAY, (last_day + 1) * SLOTS_PER_DAY


def scenario_start(profiles: str | None) -> tuple[int, int]:
    """(start day, slot of day) of a run: the profile file's first row, or the default day.
    Raises ``ConfigError`` naming the file's problem."""
    if profiles is None:
        return DEFAULT_START_DAY, 0
    try:
        return divmod(first_slot_of_file(Path(profiles)), SLOTS_PER_DAY)
    except GridError as exc:
        raise ConfigError(f"--profiles: {exc}") from None


def check_scenario(sc: Scenario) -> GridModel:
    """Validate ``sc`` and load its grid; raises ``ConfigError`` naming the problem."""
    if not 1 <= sc.validators <= MAX_VALIDATORS:
        raise ConfigError(f"--validators must be between 1 and {MAX_VALIDATORS}, got {sc.validators}")
    if not 1 <= sc.slots <= MAX_SLOTS:
        raise ConfigError(f"the run must last between 1 slot and 366 days, got {sc.slots} slots")
    if sc.participants < 2:
        raise ConfigError(f"--prosumers must be at least 2 (a market needs two sides), "
                          f"got {sc.participants}")
    if sc.serve_port is not None and not 1 <= sc.serve_port <= 65535:
        raise ConfigError(f"--serve must be a TCP port between 1 and 65535, got {sc.serve_port}")
    if sc.mechanism not in ("uniform", "pay_as_bid", "continuous"):
        raise ConfigError(f"unknown mechanism {sc.mechanism!r} (uniform, pay_as_bid, continuous)")
    if sc.scenario not in SCENARIOS:
        raise ConfigError(f"unknown --scenario {sc.scenario!r} ({', '.join(SCENARIOS)})")
    unknown = sorted(name for name, _ in sc.params if name not in PARAM_NAMES)
    if unknown:
        raise ConfigError(f"unknown ledger parameter(s) {', '.join(unknown)}; see "
                          "gridledger.ledger.params.Params for the names")
    parse_params(dict(sc.params))  # ConfigError naming the parameter out of range
    for name, value in sc.params:
        if name in FIXED_PARAMS and value != FIXED_PARAMS[name]:
            raise ConfigError(f"param {name} must stay {FIXED_PARAMS[name]} in the simulator "
                              f"({FIXED_WHY[name]}), got {value!r}")
    # A run holds only its window of the profile year (a network with thousands of cps would
    # need GBs for the year); a stressed or user-profiled copy is sized on its own year.
    whole_year = sc.scenario == "evening-peak" or sc.profiles is not None
    try:
        model = load_grid(sc.network, window=None if whole_year else sc.profile_window)
    except GridError as exc:
        raise ConfigError(f"--network {sc.network!r}: {exc}") from None
    if sc.scenario == "evening-peak":
        model = add_der(model, ev_kw_per_cp=EVENING_PEAK_EV_KW, ev_start_hour=17.0,
                        ev_hours=3.0, name=f"{model.name}+evening-peak")
    n_cp = len(model.cp_ids)
    if sc.participants > n_cp:
        raise ConfigError(f"--prosumers {sc.participants} exceeds the {n_cp} connection points of "
                          f"{model.name} (one identity per connection point); choose a larger "
                          f"network, e.g. 1-LV-rural3--2-sw (118) or 1-LV-semiurb5--2-sw (104)")
    if sc.profiles is not None:
        try:
            window = read_profiles_csv(Path(sc.profiles), model)
        except GridError as exc:
            raise ConfigError(f"--profiles: {exc}") from None
        model = window.model
        if sc.first_slot < window.first_slot or sc.first_slot + sc.slots + 4 > window.end_slot:
            raise ConfigError(
                f"--profiles: {window.path} holds slots {window.first_slot}..{window.end_slot - 1} "
                f"({window.n_slots} rows); a run of {sc.slots} slots from slot {sc.first_slot} "
                f"needs {sc.slots + 4} rows from there (the last hour settles the run's last slots)")
    if sc.first_slot < 0 or sc.first_slot + sc.slots + 4 > model.n_slots:
        raise ConfigError(f"{sc.slots} slots from day {sc.start_day} run past the "
                          f"{model.n_slots // SLOTS_PER_DAY} days of {model.name}'s profiles")
    return model
