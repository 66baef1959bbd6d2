"""What a run keeps per slot does not grow with the whole network (issue 17 item 4: RSS flat
over days). A unit test on the blackboard, no run: 300 slots of a 500-cp network."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gridledger.grid import SlotMeasurements
from gridledger.sim.records import RECENT_SLOTS, Delivered, RunData, TxInfo

N_CP = 500
MEMBERS = [f"cp-{i:05d}" for i in range(0, N_CP, 10)]  # 50 members among 500 cps


def _delivery(slot: int) -> Delivered:
    rng = np.random.default_rng(slot)
    actual = {f"cp-{i:05d}": int(v) for i, v in enumerate(rng.integers(-3000, 3000, N_CP))}
    meas = SlotMeasurements(
        slot=slot, reported_wh_by_cp=dict(actual),
        reported_varh_by_cp={cp: abs(v) // 4 for cp, v in actual.items()},
        vm_pu_by_cp={cp: 1.0 + v / 1e5 for cp, v in actual.items()},
        sensor_readings={f"line-{i}:p_wh": float(i) for i in range(N_CP)})
    return Delivered(slot, actual, meas)


def _record(data: RunData, slot: int) -> None:
    d = _delivery(slot)
    data.record_truth(slot, d.actual_wh_by_cp, MEMBERS)
    data.record_delivery(d)


def _growth(data: RunData, first: int, more: int) -> int:
    """Bytes the run holds after ``more`` further slots beyond what it held after slot
    ``first`` (tracemalloc; every record traced from slot 0)."""
    for s in range(first):
        _record(data, s)
    before = tracemalloc.take_snapshot()
    for s in range(first, first + more):
        _record(data, s)
    after = tracemalloc.take_snapshot()
    return sum(st.size_diff for st in after.compare_to(before, "filename"))


def test_whole_network_records_are_kept_for_recent_slots_only() -> None:
    data = RunData()
    for s in range(40):
        _record(data, s)
    assert sorted(data.delivered) == list(range(40 - RECENT_SLOTS, 40))
    assert data.delivered_slots == list(range(40))
    # members' truth stays for the whole run, 8 bytes a member and slot
    assert data.truth_of(3, MEMBERS[7]) == _delivery(3).actual_wh_by_cp[MEMBERS[7]]
    assert all(a.nbytes == 8 * len(MEMBERS) for a in data.truth.values())
    with pytest.raises(KeyError):
        data.truth_of(3, "cp-00001")  # not a member's cp


def test_retained_size_does_not_grow_with_the_whole_network_per_slot() -> None:
    tracemalloc.start()
    try:
        grown = _growth(RunData(), 2 * RECENT_SLOTS, 200)
    finally:
        tracemalloc.stop()
    # 200 more slots cost the members' truth (50 × 8 bytes + an array header) and the slot
    # lists, not 200 × the whole network's records (500 cps in 4 maps: ~140 kB a slot)
    assert grown / 200 < 1_000, grown / 200


def test_orders_are_kept_as_ids_with_what_was_signed() -> None:
    data = RunData()
    data.tx_info[b"a" * 32] = TxInfo(b"s" * 32, "market/order", {"slot": 5, "side": "buy"})
    data.order_ids[5] = [b"a" * 32]
    assert data.orders(5) == [(b"a" * 32, data.tx_info[b"a" * 32])]
    assert data.orders(6) == []


def test_events_and_transactions_beyond_the_newest_live_on_a_side_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's whole-run logs (every ledger event, every signed transaction) read back as
    they were written, in order, whether in memory or spilled; what is spilled costs no
    memory (a year: millions of each). Small thresholds here; a default day never spills."""
    import os
    import tempfile

    # a temp directory of this test's own: the shared one sees other workers' files come and
    # go (a headless browser's profile failed CI here)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = RunData()
    data.events.MEM_EVENTS = 400
    data.tx_info.MEM_TXS = 300
    evs = [{"type": "reading" if i % 3 else "bill", "slot": i // 10, "cp": f"cp-{i:05d}",
            "addr": bytes([i % 256]) * 32, "amounts": [i, -i]} for i in range(3_000)]
    data.events.extend(evs[:1_000])
    data.events.extend([])
    data.events.extend(evs[1_000:])
    assert len(data.events) == 3_000 and list(data.events) == evs
    assert data.events_of("bill") == [e for e in evs if e["type"] == "bill"]
    assert data.events_of("unknown") == []
    ids = [bytes([i % 256, i // 256]) * 16 for i in range(2_500)]
    for i, tx_id in enumerate(ids):
        data.tx_info[tx_id] = TxInfo(b"s" * 32, "market/order", {"slot": i, "side": "buy"})
    data.tx_info[ids[-5]] = TxInfo(b"t" * 32, "market/order", {"slot": 5})  # set again
    assert len(data.tx_info) == 2_500 and ids[7] in data.tx_info and b"x" not in data.tx_info
    assert data.tx_info[ids[-5]].sender == b"t" * 32 and data.tx_info.get(b"x") is None
    assert data.tx_info[ids[3]] == TxInfo(b"s" * 32, "market/order", {"slot": 3, "side": "buy"})
    with pytest.raises(KeyError):
        data.tx_info[b"x"]
    assert [i for i, _ in data.tx_info.items()] == ids
    assert [i for i, _ in reversed(data.tx_info.items())] == ids[::-1]
    # no file is left in the temp directory (the side file is unlinked while open)
    assert os.listdir(tmp_path) == []
    tracemalloc.start()
    try:
        snap = tracemalloc.take_snapshot()
        data.events.extend(evs)
        for i in range(2_000):
            data.tx_info[b"n" * 28 + i.to_bytes(4, "big")] = TxInfo(b"s" * 32, "k", {"i": i})
        grown = sum(st.size_diff for st in tracemalloc.take_snapshot().compare_to(snap, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 250_000, grown  # 3,000 events + 2,000 transactions: ~1.5 MB kept whole


def test_a_short_run_keeps_its_logs_in_memory() -> None:
    data = RunData()
    data.events.extend([{"type": "bill", "slot": 1}])
    data.tx_info[b"a" * 32] = TxInfo(b"s" * 32, "k", {})
    assert data.events._file._db is None and data.tx_info._file._db is None  # no side file
    assert data.events_of("bill") == [{"type": "bill", "slot": 1}] and b"a" * 32 in data.tx_info


def test_per_slot_logs_keep_a_window_in_memory_and_read_as_a_dict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bills, trades, fills, envelopes... of every slot (``SlotLog``): the newest
    ``MEM_SLOTS`` slots in memory, older ones on a side file, whatever the run's length; the
    mapping reads as the dict it replaced (order, values, late writes to an old slot)."""
    import tempfile

    from gridledger.sim.records import SlotLog

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    log: SlotLog[dict[bytes, dict[str, int]]] = SlotLog()
    log.MEM_SLOTS = 10
    ref: dict[int, dict[bytes, dict[str, int]]] = {}
    for s in range(100, 400):
        for d in (log, ref):
            d.setdefault(s, {})[b"a" + bytes([s % 7])] = {"slot": s, "total_micro": -s}
            d.setdefault(s - 3, {})[b"late"] = {"slot": s - 3}   # settlement, 3 slots on
        assert len(log._mem) <= log.MEM_SLOTS + 1                # bounded, however long
    assert log.spilled() == len(ref) - len(log._mem) > 250
    assert list(log) == list(ref) and len(log) == len(ref)
    assert dict(log.items()) == ref and list(log.values()) == list(ref.values())
    assert log[150] == ref[150] and log.get(5) is None and 97 in log and 96 not in log
    log.setdefault(150, {})[b"dispute"] = {"slot": 150}          # a late write to a spilled slot
    ref[150][b"dispute"] = {"slot": 150}
    log[400] = {}                                                 # ... spilled again, kept
    ref[400] = {}
    assert log[150] == ref[150] and 150 not in log._mem
    assert log.pop(151) == ref.pop(151) and 151 not in log and list(log) == list(ref)
    assert os.listdir(tmp_path) == []                            # unlinked while open


def test_placed_order_counts_stay_bounded_in_memory(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``order_placed`` counts by order id (one id a member and slot, for the whole run): at
    most ``MEM_KEYS`` in memory, the rest summed on the side file; counts read the same."""
    import tempfile

    from gridledger.sim.records import CountLog

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    log = CountLog()
    log.MEM_KEYS = 100
    ids = [i.to_bytes(4, "big") * 8 for i in range(1_000)]
    for k, i in enumerate(ids):
        log.add(i)
        if k % 97 == 0:
            log.add(ids[k // 2])                 # a replay, some long after the first
        assert len(log._mem) <= log.MEM_KEYS
    want = dict.fromkeys(ids, 1)
    for k in range(0, 1_000, 97):
        want[ids[k // 2]] += 1
    assert all(log.get(i) == n for i, n in want.items())
    assert log.get(b"never") == 0 and log.get(b"never", -1) == -1
    assert os.listdir(tmp_path) == []


def test_whole_run_logs_keep_a_day_of_block_time_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (issue 17, thirteenth session): the event and transaction logs keep the
    last day of block time in memory (``MEM_WINDOW_S``), whatever their count bound: a small
    community's logs stop growing within the first day instead of at their count bound
    (sized for 1,000 members, reached after ~10 days at 10). Read back whole, in order."""
    import tempfile

    from gridledger.sim.records import MEM_WINDOW_S

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = RunData()
    per_slot, slot_s, days = 30, 900, 4
    all_evs: list[dict[str, object]] = []
    ids: list[bytes] = []
    peak_day1, peak_after = [0, 0], [0, 0]
    for slot in range(days * 96):
        t = slot * slot_s
        evs = [{"type": "bill" if i % 2 else "reading", "slot": slot, "i": i}
               for i in range(per_slot)]
        for i in range(per_slot // 3):
            tx_id = slot.to_bytes(4, "big") + i.to_bytes(28, "big")
            ids.append(tx_id)
            data.tx_info[tx_id] = TxInfo(b"s" * 32, "market/order", {"slot": slot})
        data.events.extend(evs, t)
        data.tx_info.mark(t)
        all_evs += evs
        peak = peak_day1 if t < MEM_WINDOW_S else peak_after
        peak[0] = max(peak[0], data.events.in_memory)
        peak[1] = max(peak[1], data.tx_info.in_memory)
    day = 96 * per_slot
    assert data.events.in_memory <= day + data.events._CHUNK + per_slot
    assert data.tx_info.in_memory <= day // 3 + data.events._CHUNK + per_slot
    assert peak_after[0] <= peak_day1[0] + data.events._CHUNK and peak_after[1] <= (
        peak_day1[1] + data.events._CHUNK)
    assert list(data.events) == all_evs and len(data.events) == len(all_evs)
    assert data.events_of("bill") == [e for e in all_evs if e["type"] == "bill"]
    assert [i for i, _ in data.tx_info.items()] == ids and data.tx_info[ids[0]].body == {"slot": 0}


def test_a_features_recent_slots_stay_bounded() -> None:
    """Regression (issue 17, thirteenth session): the per-slot working records features keep
    for a few slots (certificates' battery flows, flexibility's requests and activations)
    keep only the newest ``keep`` slots, however long the run; ``setdefault`` as a dict's."""
    from gridledger.sim.records import RecentSlots

    recent: RecentSlots[dict[str, int]] = RecentSlots(8)
    for slot in range(4 * 96):
        recent.setdefault(slot, {})["cp"] = slot
        recent[slot - 3] = {"late": 1}          # a late write to a slot still in the window
        assert len(recent) <= 8
    assert sorted(recent) == list(range(4 * 96 - 8, 4 * 96))
    assert recent[4 * 96 - 1] == {"cp": 4 * 96 - 1} and recent.get(0) is None
