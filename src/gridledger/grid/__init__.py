"""Grid physics for GridLedger: networks, operating envelopes, verification, FDI detection.

Everything here runs *outside* block execution (floats, power flows, seeded RNG); what the
ledger and the market see is integer Wh (envelopes, curtailments, flagged meter ids).

Typical use by the simulator, per 15-minute slot::

    model = load_grid("1-LV-rural1--0-sw")
    env = compute_envelopes(model, slot)                  # {cp_id: Envelope(import, export)}
    ... market clears inside the envelopes ...
    report = verify_schedule(model, slot, cleared_wh)     # pandapower check
    fix = curtail_schedule(model, slot, cleared_wh)       # if report.violations
    readings = measure_slot(model, slot, actual_wh, rng=seed)
    result = detect_bad_meters(model, slot, readings, previous=last_result)
    result.flagged                                         # frozenset of cp ids

Sign convention: net injection > 0 exports to the grid, < 0 imports.
"""

from gridledger.grid.balance import AreaBalance
from gridledger.grid.curtail import (
    CurtailmentCause,
    CurtailmentResult,
    Delivery,
    curtail_schedule,
    deliver_schedule,
)
from gridledger.grid.day import (
    DayComparison,
    SlotComparison,
    clip_to_envelopes,
    compare_day,
)
from gridledger.grid.envelopes import (
    Envelope,
    EnvelopeConfig,
    EnvelopeReport,
    compute_envelope_report,
    compute_envelopes,
)
from gridledger.grid.fdi import (
    DetectionConfig,
    DetectionResult,
    choose_protected_set,
    detect_bad_meters,
)
from gridledger.grid.fdi_attacks import craft_stealthy_attack, under_report
from gridledger.grid.fdi_report import DetectionRate, FdiReport, fdi_detection_report
from gridledger.grid.measurements import (
    MeterNoise,
    SensorPlan,
    SlotMeasurements,
    energy_only_readings,
    measure_slot,
)
from gridledger.grid.model import (
    DEFAULT_LV_CODE,
    DEFAULT_MV_CODE,
    SLOT_MINUTES,
    SLOTS_PER_DAY,
    WH_PER_MW_SLOT,
    ConnectionPoint,
    GridModel,
    YearFigures,
    add_der,
    load_grid,
    simbench_load_profiles,
    with_profiles,
)
from gridledger.grid.powerflow import (
    FlowReport,
    GridLimits,
    Violation,
    run_checked_pf,
    verify_schedule,
)

__all__ = [
    "DEFAULT_LV_CODE",
    "DEFAULT_MV_CODE",
    "SLOTS_PER_DAY",
    "SLOT_MINUTES",
    "WH_PER_MW_SLOT",
    "AreaBalance",
    "ConnectionPoint",
    "CurtailmentCause",
    "CurtailmentResult",
    "DayComparison",
    "Delivery",
    "DetectionConfig",
    "DetectionRate",
    "DetectionResult",
    "Envelope",
    "EnvelopeConfig",
    "EnvelopeReport",
    "FdiReport",
    "FlowReport",
    "GridLimits",
    "GridModel",
    "MeterNoise",
    "SensorPlan",
    "SlotComparison",
    "SlotMeasurements",
    "Violation",
    "YearFigures",
    "add_der",
    "choose_protected_set",
    "clip_to_envelopes",
    "compare_day",
    "compute_envelope_report",
    "compute_envelopes",
    "craft_stealthy_attack",
    "curtail_schedule",
    "deliver_schedule",
    "detect_bad_meters",
    "energy_only_readings",
    "fdi_detection_report",
    "load_grid",
    "measure_slot",
    "run_checked_pf",
    "simbench_load_profiles",
    "under_report",
    "verify_schedule",
    "with_profiles",
]
