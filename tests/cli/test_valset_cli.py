"""CLI for validator-set changes: new-validator folders and stored equivocation evidence."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gridledger.cli.main import app
from gridledger.crypto.sig import verify_signature
from gridledger.ledger.modules.governance.types import VALIDATOR_POP_CONTEXT, validator_pop_message
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.network_files import read_join
from tests.conftest import make_chain


def test_new_validator_folder_and_join_file(tmp_path, monkeypatch) -> None:
    chain = make_chain(n_validators=4)
    (tmp_path / "genesis.cbor").write_bytes(chain.genesis.encode())
    (tmp_path / "validator-0").mkdir()
    monkeypatch.setenv("GRIDLEDGER_PASSPHRASE", "pw")
    res = CliRunner().invoke(app, ["node", "new-validator", str(tmp_path), "--name", "north"])
    assert res.exit_code == 0, res.output
    d = tmp_path / "validator-1"
    assert (d / "validator.key.json").exists() and json.loads((d / "node.json").read_text())["index"] == 1
    body = read_join(d / "join.json")
    assert body["name"] == "north"
    assert verify_signature(body["alg"], body["pk"], validator_pop_message(chain.genesis.chain_id, "north"),
                            body["pop"], VALIDATOR_POP_CONTEXT)
    res = CliRunner().invoke(app, ["node", "new-validator", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "genesis" in res.output


def test_evidence_names_the_equivocator_by_address(tmp_path) -> None:
    chain = make_chain(n_validators=4)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, faults={2: "equivocate"})
    try:
        net.submit(chain.transfer(0, 1, 5))
        net.tick(900)
    finally:
        net.close()
    res = CliRunner().invoke(app, ["node", "evidence", str(tmp_path / "validator-0.sqlite")])
    assert res.exit_code == 0, res.output
    (line,) = [json.loads(x) for x in res.output.splitlines() if x.startswith("{")]
    assert line["validator"] == chain.validators[2].address.hex() and line["height"] == 1
    assert len(line["header_hashes"]) == 2 and len(line["sigs"]) == 2


def test_tx_transfer_exits_nonzero_naming_the_rule_when_the_receipt_failed(tmp_path, monkeypatch) -> None:
    from gridledger.client import Client
    from gridledger.crypto.keystore import save_key

    chain = make_chain()
    save_key(tmp_path, "p0", chain.users[0], "pw", 2**12)
    monkeypatch.setenv("GRIDLEDGER_PASSPHRASE", "pw")
    failed = {"height": 3, "receipt": {"tx": "ab", "ok": False, "rule": "insufficient-funds",
                                       "detail": "balance 5 < 10", "events": []}}
    monkeypatch.setattr(Client, "__init__", lambda self, url, key=None: None)
    monkeypatch.setattr(Client, "transfer", lambda self, to, amount, wait=True: failed)
    args = ["tx", "transfer", "--key", str(tmp_path / "p0.key.json"), "--to", "00" * 32,
            "--amount-micro", "10"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "insufficient-funds" in res.output
    ok = {"height": 3, "receipt": {**failed["receipt"], "ok": True, "rule": "", "detail": ""}}
    monkeypatch.setattr(Client, "transfer", lambda self, to, amount, wait=True: ok)
    assert CliRunner().invoke(app, args).exit_code == 0


def test_node_init_names_every_participant_address(tmp_path, monkeypatch) -> None:
    """Issue 20.5: an operator must find the address to send to. ``node init`` prints each
    participant's name and address, and ``keys list`` shows them again (no passphrase)."""
    from gridledger.crypto.keystore import list_keys

    monkeypatch.setenv("GRIDLEDGER_PASSPHRASE", "pw")
    monkeypatch.setenv("COLUMNS", "200")
    net = tmp_path / "net"
    res = CliRunner().invoke(app, ["node", "init", str(net), "--validators", "1",
                                   "--participants", "2"])
    assert res.exit_code == 0, res.output
    keys = list_keys(net / "participants")
    assert len(keys) == 2
    listed = CliRunner().invoke(app, ["keys", "list", "--dir", str(net / "participants")])
    for k in keys:
        assert k.address in res.output and k.address in listed.output
        assert k.name in res.output
