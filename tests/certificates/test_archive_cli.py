"""A bundle of an archived hour, with the CLI alone: four validators with their stores run
the chain past the hour's archive; ``export`` still lists the bundle (read back from the
store's block events), ``prove`` writes a two-level proof (record -> archive root ->
certified state root) that ``verify`` accepts with nothing else, and a tampered record is
refused. ``verify-chain`` replays the stores, archive included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gridledger.certificates import BundleProof, check_proof
from gridledger.cli.main import app as cli
from gridledger.ledger.modules.certificates import keeper
from gridledger.node.embedded import EmbeddedNetwork
from tests.ledger.modules.test_certificates import SLOT, cancel, mine, register, traded_slot
from tests.ledger.modules.test_certificates_archive import ARCHIVE_AT, CLOSE, HOUR
from tests.ledger.modules.world import World, make_world, t_settle


def test_an_archived_bundle_is_exported_proven_and_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world(4, consumers=(1,), n_validators=4)
    net = EmbeddedNetwork(w.app.genesis, w.validators, tmp_path / "net")
    real_block = World.block

    def both(self: World, txs: list[bytes], at: int) -> Any:
        for raw in txs:
            net.submit(raw, now_s=at)
        net.tick(at)
        return real_block(self, txs, at)

    monkeypatch.setattr(World, "block", both)
    try:
        w.ok([register(w, ["cp0", 8_000, 0, 0, 100])], 100)
        traded_slot(w)
        (start, _), = mine(w, 1)
        w.ok([cancel(w, 1, (SLOT, start, 600))], t_settle(SLOT) + 10)
        w.ok([], CLOSE)
        w.ok([], ARCHIVE_AT)
        w.ok([], ARCHIVE_AT + 900)         # the tip certifies the archive's block
        assert net.validators[0].state_root() == w.app.state.root()
        assert keeper.archive(w.app.state, HOUR) is not None
        assert keeper.bundle(w.app.state, SLOT, start) is None
    finally:
        net.close()
    runner = CliRunner()
    store = str(tmp_path / "net")
    res = runner.invoke(cli, ["certificates", "export", store, "--out", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "c.json").read_text())
    ix = {r["bundle_id"]: r for r in doc["ledger_index"]}
    assert ix[f"{SLOT}:{start}"]["archived_hour"] == HOUR
    out = tmp_path / "proof.json"
    res = runner.invoke(cli, ["certificates", "prove", store, f"{SLOT}:{start}", "--out", str(out)])
    assert res.exit_code == 0 and "two-level" in res.output, res.output
    res = runner.invoke(cli, ["certificates", "verify", str(out),
                              "--genesis-hash", w.app.genesis.hash.hex()])
    assert res.exit_code == 0 and "archived with hour" in res.output, res.output
    assert "cancelled" in res.output
    d = json.loads(out.read_text())
    ok = check_proof(BundleProof.from_json(d))
    assert ok.ok and ok.archived_hour == HOUR and ok.bundle is not None
    assert ok.bundle["owner"] == w.addr(1)
    # tampered: the record's value, its archive entry, or the record left out
    a = d["archived"]
    cases = {
        "value": {**d, "archived": {**a, "value": a["value"][:-2] + "00"}},
        "entry": {**d, "membership": {**d["membership"],
                                      "value": d["membership"]["value"][:-2] + "00"}},
        "no record": {**d, "archived": None},
        "another key": {**d, "archived": {**a, "key": keeper.bundle_key(SLOT, start + 1).hex()}},
    }
    for name, forged in cases.items():
        r = check_proof(BundleProof.from_json(forged))
        assert not r.ok and r.failures, name
    # the exported record matches the proven one; a claim it was active is refused
    bad = check_proof(BundleProof.from_json(
        {**d, "energytag": {**d["energytag"], "certificate_bundle_status": "Active"}}))
    assert not bad.ok
    # no bundle starts there in the archived hour: refused, not proven absent from live state
    res = runner.invoke(cli, ["certificates", "prove", store, f"{SLOT}:{start + 1}"])
    assert res.exit_code == 1 and "archive" in res.output, res.output
    res = runner.invoke(cli, ["verify-chain", store])
    assert res.exit_code == 0, res.output


def test_store_history_reads_a_closed_store_from_its_file(tmp_path: Path) -> None:
    """A run closes its stores before its summary reads the attacks' results: the history
    then reads the file (read-only) and leaves no side file behind."""
    from gridledger.node.store import StoreHistory
    w = make_world(4, consumers=(1,), n_validators=4)
    net = EmbeddedNetwork(w.app.genesis, w.validators, tmp_path / "net")
    try:
        net.tick(100)
        net.tick(200)
        hist = StoreHistory(net.validators[0].store)
        assert hist.block_events(2) == []
    finally:
        net.close()
    files = sorted(p.name for p in (tmp_path / "net").rglob("*"))
    hist._recent.clear()
    assert hist.block_events(1) == [] and hist.block_events(9) is None
    assert sorted(p.name for p in (tmp_path / "net").rglob("*")) == files
