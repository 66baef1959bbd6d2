"""Scale benchmark (issue 17): the main job at growing community sizes, against the
cryptographic floor measured in the same run.

For each case, ``gridledger demo``'s job (community day, default attacks and features, 4
validators, verify-chain of every store) runs in this process and reports wall and CPU
seconds (this process and its children), seconds per participant-slot, peak RSS, the RSS at
the end of each simulated day (``rss_by_day_mib``; ``rss_growth_after_day1``: how much more
any later day ended with than day 1, as a fraction), store size,
and where the time goes
(the run's own timings: agents, ledger, grid work, secure aggregation/privacy, certificates,
verify-chain; report writing measured here).

**The cryptographic floor** of a case is the time this machine needs, on both cores, to sign
every transaction and vote the run carries once and to verify each of those signatures once
per validator and once in verify-chain (issue 17's definition):

    floor = sum over algorithms a of  n_a / sign_rate_a + (V + 1) * n_a / verify_rate_a

``n_a`` is the number of distinct ML-DSA signatures of algorithm ``a`` that a full check of
validator 0's store verifies (counted by replaying it after the timed run: every
transaction's signature, the signatures a transaction carries inside it — a meter's
reading, a committee's attestation — and every vote of every block certificate), ``V`` the
validators, and the rates are measured here per algorithm on two processes in parallel. The
chain mixes ML-DSA-44 (meters, pseudonyms, VENs), -65 (participants, validators) and -87
(the firmware vendor), so one algorithm's rate for all of them would misprice the floor
(until the ninth session it priced every signature at ML-DSA-65's rates and counted one
vote per validator and block, which overstated the floor of a privacy-mode run).
``wall / floor`` is the figure that matters: the physical limit of a run in which every
validator checks everything. Target ``wall / floor <= 2.0``.

**The execution floor** (sixteenth session) adds what every validator must also do by the
same rule — execute every block independently — priced by this build's own execution: the
CPU seconds ``R`` of that same full check of validator 0's store in a new process (every
certificate and signature verified once, every block executed, every state root and receipt
compared: what each validator does with the chain, without verify-chain's own store
checks), on both cores:

    execution_floor = sum over a of n_a / sign_rate_a + (V + 1) * R / 2

``execution_floor / floor`` (``floor_bound``) is the lowest ``wall / floor`` this build can
reach on this machine even if the simulation around the ledger (members, grid work, secure
aggregation, scenarios, report) cost nothing; ``wall / execution_floor`` is what that
simulation and the overlap cost on top of the ledger.

Run: ``gridledger bench scale [--quick] [--json]``. Quick mode: 30 and 100 participants for
24 slots each (a CI-sized check of the harness); full mode: 30, 100, 300, 1,000 participants
for a day and 30 participants for 7 days.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridledger.crypto.sig import (
    PQ_SIG_ALGS,
    SigningKey,
    tally_verifications,
    verify_signature,
)
from gridledger.grid import SLOTS_PER_DAY

TARGET_WALL_PER_FLOOR = 2.0
RATE_SAMPLES = 200
CONTEXT = b"gl/bench-scale"


@dataclass(frozen=True)
class Case:
    participants: int
    slots: int
    network: str


# Quick mode runs 6 hours: the default attacks' windows are fractions of a shorter run, and
# at 8 slots byzantine-validator's and crash's windows fall on the same slot — two faulty
# validators of four, more than BFT tolerates, so the chain halts (as it must).
QUICK = (Case(30, 24, "1-LV-semiurb4--2-sw"), Case(100, 24, "1-LV-rural3--2-sw"))
FULL = (Case(30, 96, "1-LV-semiurb4--2-sw"), Case(100, 96, "1-LV-rural3--2-sw"),
        Case(300, 96, "1-MVLV-semiurb-all-2-sw"), Case(1000, 96, "1-MVLV-semiurb-all-2-sw"),
        Case(30, 7 * 96, "1-LV-semiurb4--2-sw"))


def _rates_worker(alg: str, n: int) -> tuple[float, float]:
    """(seconds for n signatures, seconds for n verifications) with ``alg`` in this process."""
    key = SigningKey.generate(alg)
    msg = os.urandom(3000)  # about a transaction's signed bytes
    t0 = time.perf_counter()
    sigs = [key.sign(msg, CONTEXT) for _ in range(n)]
    t1 = time.perf_counter()
    pk = key.public_key.raw
    for s in sigs:
        verify_signature(alg, pk, msg, s, CONTEXT)
    return t1 - t0, time.perf_counter() - t1


def crypto_rates(alg: str = "ml-dsa-65", n: int = RATE_SAMPLES,
                 workers: int = 2) -> tuple[float, float]:
    """``alg``'s (signatures per second, verifications per second) on ``workers`` cores."""
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_rates_worker, [alg] * workers, [n] * workers))
    sign_s = max(r[0] for r in results)
    verify_s = max(r[1] for r in results)
    return workers * n / sign_s, workers * n / verify_s


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def rss_mib() -> float:
    """This process's resident set now (``VmRSS``; the peak where /proc is missing), MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class DayRss:
    """A run's progress callback that samples the main process's RSS at the end of each
    whole simulated day (issue 17: memory flat after the first day)."""

    def __init__(self, slots: int, sample: Callable[[], float] = rss_mib) -> None:
        self.slots = slots
        self.sample = sample
        self.by_day_mib: list[float] = []

    def __call__(self, done: int, _total: int, _label: str) -> None:
        if done <= self.slots and done % SLOTS_PER_DAY == 0:
            self.by_day_mib.append(round(self.sample(), 1))


def growth_after_day1(by_day_mib: Sequence[float]) -> float | None:
    """How much more the process held at the end of any later day than at the end of day 1,
    as a fraction of day 1 (0.05: 5 % more); None for a run under two days."""
    if len(by_day_mib) < 2:
        return None
    return round((max(by_day_mib[1:]) - by_day_mib[0]) / by_day_mib[0], 4)


def run_case(case: Case, validators: int = 4) -> dict[str, Any]:
    from gridledger.sim.demo import run_demo, scenario_from_flags, write_outputs
    from gridledger.sim.scenario import Scenario

    # the main job as `gridledger demo` runs it (default attacks and features), resized
    base = scenario_from_flags(case.participants, 24, validators, "default", 7, case.network)
    sc = Scenario(**{**base.__dict__, "slots": case.slots})
    with tempfile.TemporaryDirectory(prefix="gl-bench-scale-") as d:
        out = Path(d)
        w0, c0 = time.perf_counter(), _cpu_s()
        days = DayRss(case.slots)
        summary, series = run_demo(sc, out, days)
        r0 = time.perf_counter()
        write_outputs(summary, series, out)
        report_s = time.perf_counter() - r0
        wall, cpu = time.perf_counter() - w0, _cpu_s() - c0
        store_bytes = sum(p.stat().st_size for p in (out / "ledger").rglob("*.sqlite"))
        signatures, replay_cpu = chain_check(out / "ledger" / "validator-0.sqlite")
    led, tim = summary["ledger"], summary["timings"]
    return {
        "participants": case.participants, "slots": case.slots, "network": case.network,
        "validators": validators, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "s_per_participant_slot": round(wall / (case.participants * case.slots), 5),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "store_mib": round(store_bytes / 2**20, 2),
        "rss_by_day_mib": days.by_day_mib,
        "rss_growth_after_day1": growth_after_day1(days.by_day_mib),
        "txs": led["txs"], "blocks": led["blocks"], "signatures": signatures,
        "replay_cpu_s": round(replay_cpu, 2),
        "time_s": {k: tim.get(k) for k in ("agents_s", "ledger_s", "grid_s", "privacy_s",
                                            "certificates_s", "verify_chain_s")}
        | {"report_s": round(report_s, 2)},
    }


def _count_here(store: Path) -> dict[str, int]:
    from gridledger.node.verify import verify_store

    with tally_verifications() as tally:
        report = verify_store(store)
    if not report.ok:
        raise RuntimeError(f"{store} does not verify: {report.reason}")
    return tally.counts()


def _replay_cpu_here(store: Path) -> float:
    from gridledger.bench.replay import replay

    return float(replay(store)["cpu_s"])


def chain_check(store: Path) -> tuple[dict[str, int], float]:
    """``({algorithm: distinct signatures}, CPU seconds)`` of ``store``: the signatures a
    verify-chain of it checks (each certificate's votes, the validators' ticks, each
    transaction and what it carries), and the CPU of one full check of its blocks as a
    validator makes it (``bench.replay``: every certificate and signature verified, every
    block executed, its state root and receipts compared; not verify-chain's own store
    checks). Each in a new process: the run's process holds warm memos (decoded transactions,
    parsed records) that skip work a validator does. Raises ``RuntimeError`` if the store
    does not verify: a floor priced on a broken chain would mean nothing."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        counts = pool.submit(_count_here, store).result()
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return counts, pool.submit(_replay_cpu_here, store).result()


def floor_s(signatures: dict[str, int], validators: int,
            rates: dict[str, tuple[float, float]]) -> float:
    """The cryptographic floor in seconds (formula in the module docstring); ``rates``:
    ``{algorithm: (signatures per second, verifications per second)}`` on both cores."""
    return sum(n / rates[alg][0] + (validators + 1) * n / rates[alg][1]
               for alg, n in signatures.items())


def execution_floor_s(signatures: dict[str, int], validators: int, replay_cpu_s: float,
                      rates: dict[str, tuple[float, float]], cores: int = 2) -> float:
    """The execution floor in seconds (module docstring): every signature made once, and
    ``validators + 1`` full checks of the chain (``replay_cpu_s`` CPU seconds each) spread
    over ``cores``."""
    return (sum(n / rates[alg][0] for alg, n in signatures.items())
            + (validators + 1) * replay_cpu_s / cores)


def run(quick: bool = False, cases: Sequence[Case] | None = None) -> dict[str, Any]:
    """The benchmark over ``cases`` (default: QUICK or FULL). ``peak_rss_mib`` of a case is
    the process's peak up to the end of that case (cases run in order, largest last)."""
    cases = cases if cases is not None else (QUICK if quick else FULL)
    rates = {alg: crypto_rates(alg) for alg in PQ_SIG_ALGS}
    rows = []
    for case in cases:
        row = run_case(case)
        fl = floor_s(row["signatures"], row["validators"], rates)
        row["floor_s"] = round(fl, 2)
        row["wall_per_floor"] = round(row["wall_s"] / fl, 2)
        ex = execution_floor_s(row["signatures"], row["validators"], row["replay_cpu_s"], rates)
        row["execution_floor_s"] = round(ex, 2)
        row["floor_bound"] = round(ex / fl, 2)
        row["wall_per_execution_floor"] = round(row["wall_s"] / ex, 2)
        if case.slots >= 7 * SLOTS_PER_DAY:  # a week or more: the year it projects to
            row["year_projected_h"] = round(row["wall_s"] * 365 * SLOTS_PER_DAY
                                            / case.slots / 3600, 2)
        rows.append(row)
    small = rows[0]["s_per_participant_slot"]
    largest = max(rows, key=lambda r: r["participants"])
    return {
        "rates_2_cores": {alg: {"sign_per_s": round(r[0], 1), "verify_per_s": round(r[1], 1)}
                          for alg, r in rates.items()},
        "cases": rows,
        "target_wall_per_floor": TARGET_WALL_PER_FLOOR,
        "max_wall_per_floor": max(r["wall_per_floor"] for r in rows),
        "max_floor_bound": max(r["floor_bound"] for r in rows),
        "meets_floor_target": all(r["wall_per_floor"] <= TARGET_WALL_PER_FLOOR for r in rows),
        "rss_growth_after_day1": max((r["rss_growth_after_day1"] for r in rows
                                      if r["rss_growth_after_day1"] is not None), default=None),
        "per_participant_slot_ratio_largest_to_30": round(
            largest["s_per_participant_slot"] / small, 2),
    }
