"""``gridledger`` — demo, verify-chain, bench, keys, node."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridledger.errors import GridLedgerError

app = typer.Typer(help="GridLedger: post-quantum ledger and transactive energy market.",
                  no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Manage encrypted ML-DSA keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
node_app = typer.Typer(help="Run a multi-process network (NATS JetStream ordering).",
                       no_args_is_help=True)
app.add_typer(node_app, name="node")
tx_app = typer.Typer(help="Sign and submit transactions to a node's HTTP API.",
                     no_args_is_help=True)
app.add_typer(tx_app, name="tx")
console = Console()
err = Console(stderr=True)

BENCHES = ("ledger", "clearing", "grid", "privacy", "network", "demo")


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(code)


def _startup_check() -> None:
    from gridledger.crypto.sig import check_backend

    try:
        check_backend()
    except GridLedgerError as exc:
        _fail(str(exc))


@app.command()
def demo(
    prosumers: Annotated[int, typer.Option(help="Community participants.")] = 30,
    hours: Annotated[Optional[int], typer.Option(help="Simulated hours (default: one day).")] = None,
    days: Annotated[Optional[int], typer.Option(help="Simulated days.")] = None,
    validators: Annotated[int, typer.Option(help="Validators on the embedded ledger.")] = 4,
    attacks: Annotated[str, typer.Option(help="Attack names, 'all' or 'none'.")] = "default",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("gridledger-out"),
    seed: Annotated[int, typer.Option(help="Scenario seed (same seed, same results).")] = 7,
    network: Annotated[Optional[str], typer.Option(help="SimBench code or pandapower file.")] = None,
    workload: Annotated[str, typer.Option(help="'community' or 'transfers'.")] = "community",
) -> None:
    """Run a community day on the embedded ledger and write report + summary.json."""
    _startup_check()
    if hours is not None and days is not None:
        _fail("give --hours or --days, not both")
    total_hours = hours if hours is not None else 24 * (days if days is not None else 1)
    if not 1 <= total_hours <= 24 * 366:
        _fail(f"--hours must be between 1 and 8784, got {total_hours}")
    if not 1 <= validators <= 31:
        _fail(f"--validators must be between 1 and 31, got {validators}")
    if not 2 <= prosumers <= 2000:
        _fail(f"--prosumers must be between 2 and 2000, got {prosumers}")
    if out.exists() and any(out.glob("**/*.sqlite")):
        import shutil

        shutil.rmtree(out / "ledger", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if workload == "community":
        try:
            sim = importlib.import_module("gridledger.sim.demo")
        except ModuleNotFoundError:
            workload = "transfers"
    if workload == "community":
        try:
            summary = sim.run_demo_cli(prosumers=prosumers, hours=total_hours,
                                       validators=validators, attacks=attacks, out=out,
                                       seed=seed, network=network, console=console)
        except GridLedgerError as exc:
            _fail(str(exc))
        return
    if workload != "transfers":
        _fail(f"unknown workload {workload!r} (community, transfers)")
    from gridledger.sim.transfers import TransferScenario, run_transfers

    blocks = total_hours * 4
    sc = TransferScenario(participants=prosumers, validators=validators, blocks=blocks, seed=seed)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as prog:
        task = prog.add_task("slots", total=blocks)
        summary = run_transfers(sc, out, lambda done, _t: prog.update(task, completed=done))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    t = Table(title="GridLedger demo (transfer workload)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("blocks", "txs", "certificates_ok", "validators_agree"):
        t.add_row(k, str(summary["ledger"][k]))
    t.add_row("money_conserved", str(summary["invariants"]["money_conserved"]))
    t.add_row("tx/s", str(summary["timings"]["tx_per_s"]))
    console.print(t)
    console.print(f"wrote {out / 'summary.json'}")


@app.command("verify-chain")
def verify_chain(
    directory: Annotated[Path, typer.Argument(help="A demo --out folder, a node data folder, or one .sqlite store.")],
) -> None:
    """Replay every ledger store under DIRECTORY from genesis and check every byte."""
    _startup_check()
    from gridledger.node.verify import find_stores, verify_store

    if not directory.exists():
        _fail(f"{directory} does not exist")
    stores = find_stores(directory)
    if not stores:
        _fail(f"no ledger store (*.sqlite) under {directory}")
    bad = 0
    for path in stores:
        r = verify_store(path)
        if r.ok:
            console.print(f"[green]ok[/]   {path}  blocks={r.blocks} state_root={r.state_root.hex()[:16]}…")
        else:
            bad += 1
            console.print(f"[red]BAD[/]  {path}  first bad block {r.bad_height}: {r.reason}")
    if bad:
        raise typer.Exit(1)


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(BENCHES)}")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object last.")] = False,
    quick: Annotated[bool, typer.Option(help="Smaller sizes (CI).")] = False,
) -> None:
    """Run a benchmark; figures are ratios against a peer/baseline measured in the same run."""
    _startup_check()
    if name not in BENCHES:
        _fail(f"unknown benchmark {name!r}; choose from {', '.join(BENCHES)}")
    try:
        mod = importlib.import_module(f"gridledger.bench.{name}")
    except ModuleNotFoundError as exc:
        _fail(f"benchmark {name!r} is not available in this build: {exc}")
    result = mod.run(quick=quick)
    if json_out:
        print(json.dumps(result, sort_keys=True))
    else:
        console.print_json(json.dumps(result))


def _passphrase(confirm: bool = False) -> str:
    env = os.environ.get("GRIDLEDGER_PASSPHRASE")
    if env is not None:
        return env
    return str(typer.prompt("passphrase", hide_input=True, confirmation_prompt=confirm))


KeyDir = Annotated[Path, typer.Option("--dir", help="Keystore folder.")]


@keys_app.command("new")
def keys_new(name: str, alg: Annotated[str, typer.Option(help="ml-dsa-44|65|87")] = "ml-dsa-65",
             directory: KeyDir = Path("keys")) -> None:
    """Create an encrypted ML-DSA key."""
    from gridledger.crypto.keystore import save_key
    from gridledger.crypto.sig import SigningKey

    _startup_check()
    try:
        key = SigningKey.generate(alg)
        path = save_key(directory, name, key, _passphrase(confirm=True))
    except GridLedgerError as exc:
        _fail(str(exc))
    console.print(f"{name}  {alg}  {key.address.hex()}  -> {path}")


@keys_app.command("show")
def keys_show(name: str, directory: KeyDir = Path("keys")) -> None:
    """Decrypt a key and show its algorithm, address and public key size."""
    from gridledger.crypto.keystore import load_key

    try:
        key = load_key(directory / f"{name}.key.json", _passphrase())
    except GridLedgerError as exc:
        _fail(str(exc))
    console.print(f"name: {name}\nalg: {key.alg}\naddress: {key.address.hex()}\n"
                  f"public key: {len(key.public_key.raw)} bytes")


@keys_app.command("list")
def keys_list(directory: KeyDir = Path("keys")) -> None:
    """List keys in the keystore folder (no passphrase needed)."""
    from gridledger.crypto.keystore import list_keys

    t = Table()
    for col in ("name", "alg", "address"):
        t.add_column(col)
    for k in list_keys(directory):
        t.add_row(k.name, k.alg, k.address)
    console.print(t)


@node_app.command("init")
def node_init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new network.")],
    validators: Annotated[int, typer.Option(help="Number of validators.")] = 4,
    participants: Annotated[int, typer.Option(help="Genesis participants with keys.")] = 10,
    chain_id: Annotated[str, typer.Option(help="Chain id.")] = "gridledger-net",
) -> None:
    """Create genesis, encrypted validator and participant keys, and node folders."""
    _startup_check()
    from gridledger.node.network_files import init_network

    if not 1 <= validators <= 31:
        _fail("--validators must be between 1 and 31")
    try:
        dirs = init_network(directory, validators, participants, chain_id, _passphrase(confirm=True))
    except GridLedgerError as exc:
        _fail(str(exc))
    for d in dirs:
        console.print(f"validator folder {d}")
    console.print(f"genesis {directory / 'genesis.cbor'}; participant keys in {directory / 'participants'}")


@node_app.command("start")
def node_start(
    node_dir: Annotated[Path, typer.Argument(help="A validator folder made by 'node init'.")],
    nats: Annotated[str, typer.Option(help="Comma-separated NATS server URLs.")] = "nats://127.0.0.1:4222",
    http_port: Annotated[int, typer.Option(help="HTTP API port (0: no API).")] = 0,
    http_host: Annotated[str, typer.Option(help="HTTP API address.")] = "127.0.0.1",
    tick_s: Annotated[float, typer.Option(help="Seconds between ticks.")] = 1.0,
    replicas: Annotated[int, typer.Option(help="JetStream replicas (3 on a 3-server cluster).")] = 3,
    fault: Annotated[Optional[str], typer.Option(help="Attack lab only: faults of node.validator.FAULTS, comma-separated.")] = None,
    quota_rate: Annotated[float, typer.Option(help="Admission quota per sender, tx/s (neutral reputation).")] = 20.0,
    quota_burst: Annotated[float, typer.Option(help="Admission burst per sender.")] = 200.0,
) -> None:
    """Run one validator until interrupted."""
    _startup_check()
    import signal

    from gridledger.node.process import ProcessConfig, ValidatorProcess

    if not (node_dir / "node.json").exists():
        _fail(f"{node_dir} is not a validator folder (no node.json)")
    cfg = ProcessConfig(node_dir, [u for u in nats.split(",") if u], http_host, http_port,
                        tick_s, replicas=replicas, fault=fault, quota_rate_per_s=quota_rate,
                        quota_burst=quota_burst)
    try:
        proc = ValidatorProcess(cfg, _passphrase())
    except GridLedgerError as exc:
        _fail(str(exc))
    signal.signal(signal.SIGTERM, lambda *_: proc.stop.set())
    console.print(f"validator {proc.validator.index} at height {proc.validator.height}; "
                  f"API {'http://%s:%d' % (http_host, http_port) if http_port else 'off'}")
    try:
        proc.run()
    except KeyboardInterrupt:
        proc.stop.set()


@node_app.command("cluster")
def node_cluster(
    directory: Annotated[Path, typer.Argument(help="Folder for the servers' JetStream data.")],
    size: Annotated[int, typer.Option(help="Servers.")] = 3,
) -> None:
    """Run a local NATS JetStream cluster on loopback until interrupted (for one machine)."""
    import time as _time

    from gridledger.node.nats_cluster import NatsCluster

    try:
        cluster = NatsCluster(directory, size).start()
    except GridLedgerError as exc:
        _fail(str(exc))
    console.print("NATS cluster: " + ",".join(cluster.urls))
    try:
        while True:
            _time.sleep(1)
    except KeyboardInterrupt:
        cluster.stop()


@node_app.command("new-validator")
def node_new_validator(
    net_dir: Annotated[Path, typer.Argument(help="The network folder (holds genesis.cbor).")],
    name: Annotated[Optional[str], typer.Option(help="Validator name (default validator-<k>).")] = None,
    alg: Annotated[str, typer.Option(help="ml-dsa-44|65|87")] = "ml-dsa-65",
) -> None:
    """Create a validator folder to be added by governance: key, node.json, join.json."""
    _startup_check()
    from gridledger.node.network_files import new_validator

    if not (net_dir / "genesis.cbor").exists():
        _fail(f"{net_dir} is not a network folder (no genesis.cbor)")
    try:
        d = new_validator(net_dir, _passphrase(confirm=True), name, alg)
    except GridLedgerError as exc:
        _fail(str(exc))
    join = json.loads((d / "join.json").read_text())
    console.print(f"validator folder {d}\naddress {join['address']}\n"
                  f"give {d / 'join.json'} to a validator: gridledger tx propose-validator "
                  f"--add {d / 'join.json'} --key <its key> --node <its API>")


@node_app.command("validators")
def node_validators(
    node: Annotated[str, typer.Option(help="Node API URL.")] = "http://127.0.0.1:8080",
) -> None:
    """Show the active validator set, the quorum and open validator-set proposals."""
    from gridledger.client import ApiRejected, Client

    try:
        out = Client(node).validators()
    except ApiRejected as exc:
        _fail(f"rejected ({exc.status}): {exc}")
    except Exception as exc:  # connection problems
        _fail(f"{node}: {exc}")
    console.print_json(json.dumps(out))


@node_app.command("evidence")
def node_evidence(
    store: Annotated[Path, typer.Argument(help="A validator's ledger.sqlite.")],
) -> None:
    """Print the equivocation evidence a validator stored, as JSON lines usable with
    'gridledger tx propose-validator --remove ADDR --evidence FILE' (one line per file)."""
    from gridledger.crypto.sig import address_of
    from gridledger.ledger.block import verify_vote_signature
    from gridledger.node.store import BlockStore
    from gridledger.node.validator import restore_app

    if not store.is_file():
        _fail(f"{store} is not a ledger store")
    st = BlockStore(store)
    try:
        genesis = st.genesis()
        if genesis is None:
            raise GridLedgerError(f"{store} holds no genesis")
        app, _ = restore_app(st, genesis)
        keys = app.validator_keys()
        for height, kind, body in st.evidence():
            if kind != "equivocation":
                continue
            signer = None
            for alg, pk in keys:  # name the signer by key: indices change with the set
                if all(verify_vote_signature(alg, pk, genesis.chain_id, int(body["height"]), h, sg)
                       for h, sg in zip(body["header_hashes"], body["sigs"])):
                    signer = address_of(alg, pk).hex()
            print(json.dumps({"height": int(body["height"]), "validator": signer,
                              "validator_index": body.get("validator"),
                              "header_hashes": [bytes(h).hex() for h in body["header_hashes"]],
                              "sigs": [bytes(sg).hex() for sg in body["sigs"]]}))
    except GridLedgerError as exc:
        _fail(str(exc))
    finally:
        st.close()


@tx_app.command("transfer")
def tx_transfer(
    key: Annotated[Path, typer.Option(help="Sender's keystore file.")],
    to: Annotated[str, typer.Option(help="Recipient address (hex).")],
    amount_micro: Annotated[int, typer.Option(help="Amount in micro-units.")],
    node: Annotated[str, typer.Option(help="Node API URL.")] = "http://127.0.0.1:8080",
    wait: Annotated[bool, typer.Option(help="Wait for the receipt.")] = True,
) -> None:
    """Sign a transfer locally and submit it.

    Exits 1 if the committed transaction failed (the rule is named on stderr)."""
    from gridledger.client import ApiRejected, Client
    from gridledger.crypto.keystore import load_key

    try:
        k = load_key(key, _passphrase())
        out = Client(node, k).transfer(bytes.fromhex(to), amount_micro, wait=wait)
    except ApiRejected as exc:
        _fail(f"rejected ({exc.status}): {exc}")
    except (GridLedgerError, ValueError) as exc:
        _fail(str(exc))
    _print_receipt(out)


def _tx_client(node: str, key: Path):  # type: ignore[no-untyped-def]
    from gridledger.client import Client
    from gridledger.crypto.keystore import load_key

    return Client(node, load_key(key, _passphrase()))


@tx_app.command("propose-validator")
def tx_propose_validator(
    key: Annotated[Path, typer.Option(help="The proposing validator's keystore file.")],
    add: Annotated[Optional[Path], typer.Option(help="join.json of the validator to add (from 'node new-validator').")] = None,
    remove: Annotated[Optional[str], typer.Option(help="Address (hex) of the validator to remove.")] = None,
    evidence: Annotated[Optional[Path], typer.Option(help="With --remove: one JSON line of 'node evidence'.")] = None,
    node: Annotated[str, typer.Option(help="Node API URL.")] = "http://127.0.0.1:8080",
    wait: Annotated[bool, typer.Option(help="Wait for the receipt.")] = True,
) -> None:
    """Propose adding or removing a validator (the proposal is your vote).

    Exits 1 if the committed transaction failed (its receipt names the rule)."""
    from gridledger.client import ApiRejected
    from gridledger.node.network_files import read_join

    if (add is None) == (remove is None):
        _fail("give exactly one of --add JOIN.json or --remove ADDRESS")
    if evidence is not None and remove is None:
        _fail("--evidence goes with --remove")
    try:
        c = _tx_client(node, key)
        if add is not None:
            out = c.propose_add_validator(read_join(add), wait=wait)
        else:
            ev = None
            if evidence is not None:
                e = json.loads(evidence.read_text().strip().splitlines()[0])
                ev = {"height": int(e["height"]),
                      "header_hashes": [bytes.fromhex(h) for h in e["header_hashes"]],
                      "sigs": [bytes.fromhex(sg) for sg in e["sigs"]]}
            out = c.propose_remove_validator(bytes.fromhex(str(remove)), ev, wait=wait)
    except ApiRejected as exc:
        _fail(f"rejected ({exc.status}): {exc}")
    except (GridLedgerError, ValueError, KeyError, OSError) as exc:
        _fail(str(exc))
    _print_receipt(out)


def _print_receipt(out: dict[str, object]) -> None:
    """Print the API answer; if the committed transaction failed, name its rule on stderr
    and exit 1."""
    console.print_json(json.dumps(out))
    rec = out.get("receipt")
    if isinstance(rec, dict) and not rec.get("ok", True):
        detail = f": {rec['detail']}" if rec.get("detail") else ""
        err.print(f"[bold red]error:[/] transaction failed, rule {rec.get('rule', '?')}{detail}")
        raise typer.Exit(1)


@tx_app.command("vote-validator")
def tx_vote_validator(
    key: Annotated[Path, typer.Option(help="The voting validator's keystore file.")],
    proposal: Annotated[int, typer.Option(help="Proposal id (see 'node validators').")],
    node: Annotated[str, typer.Option(help="Node API URL.")] = "http://127.0.0.1:8080",
    wait: Annotated[bool, typer.Option(help="Wait for the receipt.")] = True,
) -> None:
    """Approve a validator-set proposal (exits 1 if the receipt says it failed)."""
    from gridledger.client import ApiRejected

    try:
        out = _tx_client(node, key).vote_validator(proposal, wait=wait)
    except ApiRejected as exc:
        _fail(f"rejected ({exc.status}): {exc}")
    except (GridLedgerError, ValueError) as exc:
        _fail(str(exc))
    _print_receipt(out)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
