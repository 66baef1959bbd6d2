"""Work a plug-in finishes later (``SimContext.later``) and the DSO's detection worker.

``later`` moves where a plug-in's transactions are signed, never what they are or in which
order they reach the ledger: a pending finish runs before the next signature by its signer,
before anything is deferred or submitted, before a tick and at the end of the run. The
DSO's state estimation in its worker gives what it gives in the caller (the same floats:
the worker is a fork of the caller holding the same model).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import types
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from gridledger.errors import GridError
from gridledger.grid import compute_envelope_report, detect_bad_meters, load_grid, measure_slot
from gridledger.sim.context import SimContext
from gridledger.sim.features import dso
from gridledger.sim.scenario import DEFAULT_NETWORK

DSO, MEMBER = b"dso", b"member"


class Key:
    def __init__(self, address: bytes) -> None:
        self.address = address


def ctx_stub() -> Any:
    """A ``SimContext`` reduced to what ``later`` and ``settle`` use, with ``tx`` and
    ``defer`` recording what was signed and deferred, in order."""
    ctx = types.SimpleNamespace(_later=[], _settling=False, signed=[], deferred=[])
    ctx.later = types.MethodType(SimContext.later, ctx)
    ctx.settle = types.MethodType(SimContext.settle, ctx)

    def tx(self: Any, key: Key, what: str) -> str:
        self.settle(key.address)
        self.signed.append((key.address, what))
        return what

    def defer(self: Any, raws: list[str]) -> None:
        self.settle()
        self.deferred.extend(raws)

    ctx.tx = types.MethodType(tx, ctx)
    ctx.defer = types.MethodType(defer, ctx)
    return ctx


def test_a_later_finish_signs_before_its_signer_signs_again() -> None:
    ctx = ctx_stub()
    ctx.later(lambda: ctx.defer([ctx.tx(Key(DSO), "flag")]), DSO)
    ctx.tx(Key(MEMBER), "order")            # another signer: the finish may wait on
    assert ctx.signed == [(MEMBER, "order")] and ctx._later
    ctx.tx(Key(DSO), "envelope")            # its signer: the finish first
    assert ctx.signed == [(MEMBER, "order"), (DSO, "flag"), (DSO, "envelope")]
    assert ctx.deferred == ["flag"] and not ctx._later


def test_pending_work_keeps_its_order_and_a_finish_settles_nothing_after_it() -> None:
    ctx = ctx_stub()
    ctx.later(lambda: ctx.defer([ctx.tx(Key(DSO), "first")]), DSO)
    ctx.later(lambda: ctx.defer([ctx.tx(Key(MEMBER), "second")]), MEMBER)
    ctx.later(lambda: ctx.defer([ctx.tx(Key(DSO), "third")]), DSO)
    ctx.tx(Key(MEMBER), "x")   # settles up to the member's pending one: first, second
    assert ctx.deferred == ["first", "second"]
    ctx.defer(["y"])           # anything deferred comes after every pending finish's
    assert ctx.deferred == ["first", "second", "third", "y"]
    assert [w for _a, w in ctx.signed] == ["first", "second", "x", "third"]


def test_a_batch_asked_for_later_is_signed_after_the_flags_whenever_it_is_read() -> None:
    """``txs_later`` (the DSO's envelopes, issue 17 twelfth session): the batch is made
    when read — after the previous slot's flags, still pending in the DSO's worker — or
    before the DSO's next signature if that comes first; either way the flags' and the
    envelopes' nonces and the deferred order are those of signing the envelopes at once."""
    def run(other_dso_signature_first: bool) -> Any:
        ctx = ctx_stub()
        ctx.txs_later = types.MethodType(SimContext.txs_later, ctx)
        ctx.later(lambda: ctx.defer([ctx.tx(Key(DSO), "flag")]), DSO)   # slot L-1's estimation
        batch = ctx.txs_later(lambda: [ctx.tx(Key(DSO), "envelope")], DSO)
        assert ctx.signed == []              # nothing waited for yet: the agents run
        ctx.tx(Key(MEMBER), "order")
        if other_dso_signature_first:
            ctx.tx(Key(DSO), "flex-request")
        assert list(batch) == ["envelope"] and len(batch) == 1 and batch[0] == "envelope"
        return ctx

    read = run(False)
    assert read.signed == [(MEMBER, "order"), (DSO, "flag"), (DSO, "envelope")]
    assert read.deferred == ["flag"] and not read._later
    early = run(True)
    assert [w for a, w in early.signed if a == DSO] == ["flag", "envelope", "flex-request"]


def test_a_batch_whose_finish_was_dropped_raises_when_read() -> None:
    ctx = ctx_stub()
    ctx.txs_later = types.MethodType(SimContext.txs_later, ctx)
    batch = ctx.txs_later(lambda: [ctx.tx(Key(DSO), "envelope")], DSO)
    ctx._later = []   # a failed run drops what it held (``SimContext.close``)
    with pytest.raises(RuntimeError, match="never made"):
        list(batch)


def test_a_failing_finish_raises_and_keeps_the_rest() -> None:
    ctx = ctx_stub()

    def fails() -> None:
        raise GridError("no estimate")

    ctx.later(fails, DSO)
    ctx.later(lambda: ctx.defer(["after"]), DSO)
    with pytest.raises(GridError):
        ctx.settle()
    assert len(ctx._later) == 1 and not ctx._settling
    ctx.settle()
    assert ctx.deferred == ["after"]


def deferring_stub() -> Any:
    """A ``SimContext`` reduced to ``defer``, ``defer_later``, ``take_deferred`` and a ``tx``
    that records signatures (the real methods; ``tx`` resolves as the real one does)."""
    ctx = types.SimpleNamespace(_later=[], _settling=False, _deferred=[], _pending=[],
                                _held=[], _made=[], signed=[])
    for name in ("settle", "defer", "defer_later", "take_deferred", "resolve_deferred",
                 "_resolve_for", "_resolve", "release_held", "_release_held"):
        setattr(ctx, name, types.MethodType(getattr(SimContext, name), ctx))

    def tx(self: Any, key: Key, what: str) -> bytes:
        self.settle(key.address)
        self._resolve_for(key.address)
        self.signed.append((key.address, what))
        return what.encode()

    ctx.tx = types.MethodType(tx, ctx)
    return ctx


def test_deferred_later_keeps_its_place_and_signs_before_its_signer_signs_again() -> None:
    """``defer_later`` (the validators' votes after a dry run in a forked process): the
    transactions are made when taken, in the place they were deferred at; a submit or a
    defer meanwhile does not make them; their signer's next signature does, first."""
    ctx = deferring_stub()
    made: list[str] = []

    def votes() -> list[bytes]:
        made.append("votes")
        return [ctx.tx(Key(MEMBER), "vote")]

    ctx.defer([b"before"])
    ctx.defer_later(votes, [MEMBER])
    ctx.defer([b"after"])            # deferred meanwhile: stays after the votes
    ctx.tx(Key(DSO), "flag")          # another signer: the votes still wait
    assert made == [] and ctx.signed == [(DSO, "flag")]
    assert ctx.take_deferred() == [b"before", b"vote", b"after"]
    assert ctx.signed == [(DSO, "flag"), (MEMBER, "vote")] and not ctx._pending
    ctx.defer_later(votes, [MEMBER])
    ctx.tx(Key(MEMBER), "propose")    # the signer signs again: its votes first (nonces)
    assert [w for _a, w in ctx.signed][-2:] == ["vote", "propose"]
    assert ctx.take_deferred() == [b"vote"]
    ctx.defer_later(votes, [MEMBER])
    ctx.resolve_deferred()            # the run's end: made, kept for the next take
    assert made == ["votes"] * 3 and ctx.take_deferred() == [b"vote"]


def holding_stub(height: int = 5, closes: int = 1) -> Any:
    """``deferring_stub`` over a network stub (``height``, ``blocks_to_close``) whose
    ``submit`` records (time, transactions) and puts held transactions made early first, as
    the real one does."""
    ctx = deferring_stub()
    ctx.net = types.SimpleNamespace(height=height, blocks_to_close=lambda: closes)
    ctx.submitted = []

    def submit(self: Any, raws: list[bytes], now_s: int) -> None:
        if self._made:
            raws, self._made = self._made + list(raws), []
        if raws:
            self.submitted.append((now_s, raws))

    ctx.submit = types.MethodType(submit, ctx)
    return ctx


def test_held_votes_go_at_the_last_tick_that_still_lands_them_by_their_height() -> None:
    """``defer_later(..., last_height=h)`` (the validators' votes, issue 17): not made at
    block A, but before the tick after which the next tick might close too many blocks to
    land them by ``h`` (``HOLD_MARGIN_BLOCKS`` kept): a function of heights and the
    mempool, not of when the dry run ends."""
    ctx = holding_stub()
    made: list[int] = []

    def votes() -> list[bytes]:
        made.append(ctx.net.height)
        return [ctx.tx(Key(MEMBER), "vote")]

    ctx.defer_later(votes, [MEMBER], last_height=10)
    assert ctx.take_deferred() == [] and made == []       # block A: held
    for h in (5, 6, 7):   # a tick closes 1: the next tick lands them at h + 2 <= 10 - 1
        ctx.net.height = h
        ctx._release_held(100 + h)
        assert made == [] and ctx.submitted == []
    ctx.net.height = 8    # the next one would land them at 10: the margin's block is gone
    ctx._release_held(108)
    assert made == [8] and ctx.submitted == [(108, [b"vote"])] and not ctx._pending
    ctx._release_held(109)                                # once
    assert ctx.submitted == [(108, [b"vote"])]
    # a tick that may close many blocks releases them earlier
    ctx = holding_stub(height=5, closes=4)
    ctx.defer_later(votes, [MEMBER], last_height=10)
    ctx._release_held(105)
    assert ctx.submitted == [(105, [b"vote"])]


def test_held_votes_made_early_go_first_and_at_the_end_of_the_run() -> None:
    ctx = holding_stub()

    def votes() -> list[bytes]:
        return [ctx.tx(Key(MEMBER), "vote")]

    ctx.defer_later(votes, [MEMBER], last_height=50)
    propose = ctx.tx(Key(MEMBER), "propose")   # its signer signs: the votes first (nonces)
    assert [w for _a, w in ctx.signed] == ["vote", "propose"]
    assert [*ctx.take_deferred(), propose] == [b"vote", b"propose"]  # first at block A
    ctx.defer_later(votes, [MEMBER], last_height=50)
    ctx.tx(Key(MEMBER), "propose")
    ctx.submit([b"propose"], 7)                # ... or first in the next submit
    assert ctx.submitted == [(7, [b"vote", b"propose"])]
    ctx.defer_later(votes, [MEMBER], last_height=50)
    ctx.release_held()                         # the run's last step: its block A takes them
    assert ctx.take_deferred() == [b"vote"] and not ctx._held
    with pytest.raises(ValueError, match="all held or none"):
        ctx.defer_later(votes, [MEMBER], last_height=50)
        ctx.defer_later(votes, [MEMBER])


def test_detection_in_the_worker_equals_detection_here() -> None:
    model = load_grid(DEFAULT_NETWORK)
    slot = model.window.start + 50    # midday: PV export on the feeder
    truth = model.forecast_wh_by_cp(slot)
    honest = measure_slot(model, slot, truth, rng=3)
    cp = model.cp_ids[3]
    lying = dict(honest.reported_wh_by_cp, **{cp: honest.reported_wh_by_cp[cp] + 4000})
    meas = dataclasses.replace(honest, reported_wh_by_cp=lying)
    here = detect_bad_meters(model, slot, meas)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                             initializer=dso._hold_model, initargs=(model,)) as ex:
        there, seconds = ex.submit(dso._detect_beside, slot, meas, None).result()
        assert not isinstance(there, GridError)
        follow, _s = ex.submit(dso._detect_beside, slot + 1,
                               measure_slot(model, slot + 1, model.forecast_wh_by_cp(slot + 1),
                                            rng=4), there).result()
    assert seconds > 0
    assert cp in here.flagged
    assert there == here
    assert follow == detect_bad_meters(
        model, slot + 1, measure_slot(model, slot + 1, model.forecast_wh_by_cp(slot + 1), rng=4),
        previous=here)


def test_envelopes_in_the_worker_equal_envelopes_here() -> None:
    model = load_grid(DEFAULT_NETWORK)
    slot = model.window.start + 50
    forecast = {cp: int(wh) for cp, wh in model.forecast_wh_by_cp(slot).items()}
    here = compute_envelope_report(model, slot, forecast_wh_by_cp=forecast)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                             initializer=dso._hold_model, initargs=(model,)) as ex:
        there, seconds = ex.submit(dso._envelopes_beside, slot, forecast).result()
    assert seconds > 0
    assert there.envelopes == here.envelopes
    assert repr(there) == repr(here)
