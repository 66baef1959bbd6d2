"""``gridledger`` — demo, verify-chain, audit, bench, keys, node."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridledger.cli.args import FAILURE, err, fail, hex32
from gridledger.cli.certificates import certificates_app
from gridledger.errors import ConfigError, GridError, GridLedgerError, KeystoreError
from gridledger.files import FileTooLarge, read_bounded
from gridledger.sim.modes import DEMO_PRIVACY

T = TypeVar("T")

app = typer.Typer(help="GridLedger: post-quantum ledger and transactive energy market.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
keys_app = typer.Typer(help="Manage encrypted ML-DSA keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
node_app = typer.Typer(help="Run a multi-process network (NATS JetStream ordering).",
                       no_args_is_help=True)
app.add_typer(node_app, name="node")
tx_app = typer.Typer(help="Sign and submit transactions to a node's HTTP API.",
                     no_args_is_help=True)
app.add_typer(tx_app, name="tx")
app.add_typer(certificates_app, name="certificates")
audit_app = typer.Typer(help="Audit bundles a regulator checks with the CLI alone.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")
console = Console(soft_wrap=True)  # lines naming files and blocks stay whole when piped

BENCHES = ("ledger", "clearing", "grid", "privacy", "network", "demo", "scale")


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(
        help="A demo --out folder (or a node data folder / one .sqlite store).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where the tables go (default: DIRECTORY/export).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    store: Annotated[Path | None, typer.Option(
        help="Which validator store to read (default: the first under DIRECTORY).")] = None,
) -> None:
    """Write the run's trades, prices, bills, readings, flags, sanctions, rejections (and
    flexibility, certificates, grid results when present) as flat tables for pandas.

    The store is verified first (as verify-chain does); the tables come from its certified
    receipts. Columns: docs/export.md. Exit 2: bad arguments or no store; exit 1: the store
    does not verify (nothing is written)."""
    _startup_check()
    from gridledger.export import FORMATS, ExportError, StoreDoesNotVerify, export_run

    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not directory.exists():
        _fail(f"{directory} does not exist")
    if store is not None:
        _ledger_store(store)
    else:
        from gridledger.node.verify import find_stores

        found = find_stores(directory)
        if not found:
            _fail(f"no ledger store (*.sqlite) under {directory}")
        _ledger_store(found[0])  # not a ledger store at all: usage (2), as verify-chain says
    if out is not None:
        _out_folder("--out", out)
    target = out if out is not None else (directory if directory.is_dir() else directory.parent) / "export"
    try:
        done = export_run(directory, target, fmt, store)
    except StoreDoesNotVerify as exc:
        _failure(str(exc))
    except ExportError as exc:
        _fail(str(exc))
    except OSError as exc:
        _failure(f"cannot write the tables to {target}: {exc}")
    t = Table(title=f"export of {done.store} ({done.blocks} blocks, verified)")
    t.add_column("table")
    t.add_column("rows", justify="right")
    t.add_column("file")
    for name, (file, rows) in done.files.items():
        t.add_row(name, f"{rows:,}", str(file))
    _show(t)


MAX_SEED = 2**63 - 1
# files an operator names, read whole: bounds far above any real one (a 1,000-member genesis
# is ~5 MB; evidence is a few headers and signatures), so a mistyped path costs nothing
GENESIS_MAX_BYTES = 64 * 1024 * 1024
EVIDENCE_MAX_BYTES = 1024 * 1024
MAX_MICRO = 2**64 - 1
_ALGS = ("ml-dsa-44", "ml-dsa-65", "ml-dsa-87")


def _show(t: Table) -> None:
    """Print a table with every cell whole — an address or a file must be copyable — even when
    that is wider than the terminal (or than the 80 columns rich assumes when piped)."""
    need = console.measure(t, options=console.options.update_width(10_000)).maximum
    width = console.width
    console.width = max(width, need)
    try:
        console.print(t)
    finally:
        console.width = width


_fail = fail


def _naming(path: Path, exc: Exception) -> str:
    """``exc``'s message, naming the file it is about (a replay error names only a block)."""
    msg = str(exc) or type(exc).__name__
    return msg if str(path) in msg else f"{path}: {msg}"


def _failure(msg: str) -> NoReturn:
    _fail(msg, FAILURE)


def _in_range(flag: str, value: float, lo: float, hi: float) -> None:
    def show(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    if not lo <= value <= hi:
        _fail(f"{flag} must be between {show(lo)} and {show(hi)}, got {show(value)}")


def _port_free(flag: str, host: str, port: int) -> None:
    """Exit 2 unless ``host:port`` can be listened on now, before any work (the servers bind
    once the work has started: `demo --serve` failed only after the setup)."""
    from gridledger.listen import ServeError, listening_socket

    try:
        listening_socket(host, port, backlog=1).close()
    except ServeError as exc:
        _fail(f"{flag}: {exc}" if exc.resolving else f"{flag} {port}: {exc}")


def _node_url(node: str) -> str:
    """``--node`` must be an http(s) URL with a host."""
    from urllib.parse import urlparse

    u = urlparse(node)
    if u.scheme not in ("http", "https") or not u.hostname:
        _fail(f"--node must be an http:// or https:// URL such as http://127.0.0.1:8080, got {node!r}")
    try:
        u.port  # noqa: B018  (parses the port: raises on a bad one)
    except ValueError:
        _fail(f"--node has a bad port: {node!r}")
    return node


def _address(flag: str, value: str) -> bytes:
    """A 32-byte address in hex."""
    return hex32(flag, value, "address")


def _existing_file(flag: str, path: Path) -> Path:
    if not path.exists():
        _fail(f"{flag} {path} does not exist")
    if not path.is_file():
        _fail(f"{flag} {path} is not a file")
    return path


def _out_folder(flag: str, path: Path) -> Path:
    """An output folder: absent (created later) or an existing folder, never a file."""
    if path.exists() and not path.is_dir():
        _fail(f"{flag} {path} exists and is not a folder")
    return path


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _ledger_store(path: Path) -> None:
    """Exit 2 unless ``path`` is a GridLedger ledger store, checked without writing to it."""
    import sqlite3

    from gridledger.node.store import BlockStore

    if not path.exists():
        _fail(f"{path}: no such file")
    if not path.is_file():
        _fail(f"{path} is not a file")
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if not head:
        _fail(f"{path} is empty: not a ledger store")
    if head != _SQLITE_MAGIC:
        _fail(f"{path} is not an SQLite database: not a ledger store")
    st = BlockStore(path, readonly=True)
    try:
        names = {r[0] for r in st.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        _fail(f"{path} is not a readable SQLite database: {exc}")
    finally:
        st.close()
    missing = [t for t in ("meta", "blocks") if t not in names]
    if missing:
        _fail(f"{path} is an SQLite database but not a GridLedger ledger store "
              f"(no {', '.join(missing)} table)")


def _node_call(node: str, call: Callable[[], T]) -> T:
    """Run a client call; a node that is down, slow or answers garbage is a failure (1)."""
    import httpx

    from gridledger.client import ApiRejected, NotCommitted

    try:
        return call()
    except ApiRejected as exc:
        _failure(f"rejected by the node ({exc.status}): {exc}")
    except NotCommitted as exc:  # was "internal error: TimeoutError": no defect, a network state
        _failure(f"{exc}; it may still commit: GET {node}/v1/tx/{exc.tx_hash} shows its receipt "
                 f"once it has one (a network without a quorum commits nothing: check "
                 f"'gridledger node validators --node {node}' and which validators run)")
    except httpx.TimeoutException:
        _failure(f"{node} did not answer in time")
    except httpx.TransportError as exc:
        _failure(f"cannot reach the node at {node}: {str(exc) or type(exc).__name__}")
    except httpx.HTTPError as exc:
        _failure(f"HTTP error talking to {node}: {exc}")
    except ValueError as exc:  # a reply that is not the API's JSON
        _failure(f"{node} answered something that is not the GridLedger API: {exc}")


def _startup_check() -> None:
    from gridledger.crypto.sig import check_backend

    try:
        check_backend()
    except GridLedgerError as exc:
        _fail(str(exc))


@app.command()
def demo(
    ctx: typer.Context,
    prosumers: Annotated[int, typer.Option(help="Community participants.")] = 30,
    hours: Annotated[int | None, typer.Option(help="Simulated hours (default: one day).")] = None,
    days: Annotated[int | None, typer.Option(help="Simulated days.")] = None,
    validators: Annotated[int, typer.Option(help="Validators on the embedded ledger.")] = 4,
    attacks: Annotated[str, typer.Option(help="Attack names, 'all' or 'none'.")] = "default",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("gridledger-out"),
    seed: Annotated[int, typer.Option(help="Scenario seed (same seed, same results).")] = 7,
    network: Annotated[str | None, typer.Option(help="SimBench code or pandapower file.")] = None,
    workload: Annotated[str, typer.Option(help="'community' or 'transfers'.")] = "community",
    privacy: Annotated[str, typer.Option(
        help="'on': households trade, meter and earn certificates under per-slot pseudonyms "
             "(privacy mode); 'off': under their own identities (clear mode).")
    ] = "on" if DEMO_PRIVACY else "off",
    serve: Annotated[int | None, typer.Option(
        help="Serve the live dashboard of the run at http://127.0.0.1:PORT/ while it runs.")] = None,
    profiles: Annotated[Path | None, typer.Option(
        help="CSV of the community's own 15-minute data (docs/profiles.md); the run starts "
             "at its first row.")] = None,
    scenario: Annotated[str, typer.Option(help="'default' or 'evening-peak' (EV chargers "
                                               "everywhere, a winter evening).")] = "default",
    flexibility: Annotated[str, typer.Option(help="'on' or 'off': the DSO buys flexibility "
                                                  "when it predicts a violation.")] = "on",
    config: Annotated[Path | None, typer.Option(
        help="Scenario file (TOML): every flag has a key, plus ledger \\[params]; flags given "
             "here override it.")] = None,
    write_config: Annotated[Path | None, typer.Option(
        help="Write the scenario (defaults, --config and flags applied) to this TOML file "
             "and stop.")] = None,
) -> None:
    """Run a community day on the embedded ledger and write report + summary.json (+ the
    scenario it ran, config.toml).

    Every flag is checked before any work (exit 2 names the flag); a run that fails exits 1."""
    _startup_check()
    if not attacks.strip(" ,"):  # `--attacks "$LIST"` with LIST unset must not run no attack
        _fail("--attacks is empty: give attack names, 'all' or 'none'")
    if privacy not in ("on", "off"):
        _fail(f"--privacy must be 'on' or 'off', got {privacy!r}")
    if serve is not None:
        _in_range("--serve", serve, 1, 65535)
        if write_config is None:
            _port_free("--serve", "127.0.0.1", serve)
    if config is not None or write_config is not None:
        if workload != "community":
            _fail("--config and --write-config describe community runs (--workload community)")
        if flexibility not in ("on", "off"):
            _fail(f"--flexibility must be 'on' or 'off', got {flexibility!r}")
        given = {name for name in ("prosumers", "hours", "days", "validators", "attacks", "seed",
                                   "network", "privacy", "scenario", "flexibility", "profiles",
                                   "serve", "out")
                 if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}
        _demo_from_config(config, write_config, out, given, prosumers=prosumers, hours=hours,
                          days=days, validators=validators, attacks=attacks, seed=seed,
                          network=network, privacy=privacy == "on", serve_port=serve,
                          profiles=profiles, scenario=scenario,
                          flexibility=flexibility == "on")
        return
    if hours is not None and days is not None:
        _fail("give --hours or --days, not both")
    if days is not None:
        _in_range("--days", days, 1, 366)
    if hours is not None:
        _in_range("--hours", hours, 1, 24 * 366)
    if flexibility not in ("on", "off"):
        _fail(f"--flexibility must be 'on' or 'off', got {flexibility!r}")
    if scenario not in ("default", "evening-peak"):
        _fail(f"--scenario must be 'default' or 'evening-peak', got {scenario!r}")
    default_hours = 8 if scenario == "evening-peak" else 24  # the evening and its rebound
    total_hours = hours if hours is not None else (24 * days if days is not None else default_hours)
    _in_range("--validators", validators, 1, 31)
    _in_range("--prosumers", prosumers, 2, 2000)
    _in_range("--seed", seed, 0, MAX_SEED)
    if serve is not None:
        _in_range("--serve", serve, 1, 65535)
    if workload not in ("community", "transfers"):
        _fail(f"--workload must be 'community' or 'transfers', got {workload!r}")
    _out_folder("--out", out)
    if workload == "community":
        try:
            sim = importlib.import_module("gridledger.sim.demo")
        except ModuleNotFoundError:
            workload = "transfers"
    if workload == "community":
        try:
            # network, attacks, sizes against the grid: all before --out is touched
            sim.check_scenario(sim.scenario_from_flags(prosumers, total_hours, validators,
                                                       attacks, seed, network, privacy == "on",
                                                       serve, profiles, scenario=scenario,
                                                       flexibility=flexibility == "on"))
        except ConfigError as exc:
            _fail(str(exc))
        _run_scenario(sim.scenario_from_flags(prosumers, total_hours, validators, attacks, seed,
                                              network, privacy == "on", serve, profiles,
                                              scenario=scenario,
                                              flexibility=flexibility == "on"), out)
        return
    from gridledger.sim.transfers import TransferScenario, run_transfers

    blocks = total_hours * 4
    sc = TransferScenario(participants=prosumers, validators=validators, blocks=blocks, seed=seed)
    try:
        if out.exists() and any(out.glob("**/*.sqlite")):
            import shutil

            shutil.rmtree(out / "ledger", ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as prog:
            task = prog.add_task("slots", total=blocks)
            summary = run_transfers(sc, out, lambda done, _t: prog.update(task, completed=done))
        (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    except (GridLedgerError, OSError) as exc:
        _failure(f"the demo failed: {exc}")
    t = Table(title="GridLedger demo (transfer workload)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("blocks", "txs", "certificates_ok", "validators_agree"):
        t.add_row(k, str(summary["ledger"][k]))
    t.add_row("money_conserved", str(summary["invariants"]["money_conserved"]))
    t.add_row("tx/s", str(summary["timings"]["tx_per_s"]))
    _show(t)
    console.print(f"wrote {out / 'summary.json'}")


def _run_scenario(sc: Any, out: Path) -> None:
    from gridledger.sim.demo import run_demo_cli

    try:
        out.mkdir(parents=True, exist_ok=True)
        summary = run_demo_cli(sc, out=out, console=console)
    except ConfigError as exc:
        _fail(str(exc))
    except (GridLedgerError, OSError) as exc:
        _failure(f"the demo failed: {exc}")
    if "interrupted" in summary:  # Ctrl-C: the partial report is written, exit as SIGINT
        raise typer.Exit(130)


def _demo_from_config(config: Path | None, write_to: Path | None, out: Path, given: set[str],
                      **flags: Any) -> None:
    """``demo --config`` / ``--write-config``: the file's scenario (or the defaults), with
    the flags given on the command line set over the file's keys; checked whole (flags
    first, naming the flag; then the document, naming the table and key) before any work."""
    from gridledger.sim.config import (
        DemoConfig,
        apply_flags,
        load_config,
        scenario_of,
        write_config,
    )
    from gridledger.sim.scenario import check_scenario

    if write_to is not None:
        _out_folder("--write-config", write_to.parent)
        if write_to.exists():
            _fail(f"--write-config {write_to} exists; remove it or name another file")
    if "hours" in given and "days" in given:
        _fail("give --hours or --days, not both")
    for flag, lo, hi in (("prosumers", 2, 2000), ("validators", 1, 31), ("seed", 0, MAX_SEED),
                         ("hours", 1, 24 * 366), ("days", 1, 366)):
        if flag in given:
            _in_range(f"--{flag}", flags[flag], lo, hi)
    if "scenario" in given and flags["scenario"] not in ("default", "evening-peak"):
        _fail(f"--scenario must be 'default' or 'evening-peak', got {flags['scenario']!r}")
    values = {"prosumers": flags["prosumers"], "network": flags["network"],
              "hours": flags["hours"], "days": flags["days"], "privacy": flags["privacy"],
              "scenario": flags["scenario"], "flexibility": flags["flexibility"],
              "profiles": flags["profiles"], "validators": flags["validators"],
              "seed": flags["seed"], "attacks": flags["attacks"], "serve": flags["serve_port"],
              "out": out}
    try:
        cfg = load_config(config) if config is not None else DemoConfig()
        cfg = apply_flags(cfg, {f: v for f, v in values.items() if f in given},
                          f"--config {config}" if config is not None else "flags")
        sc = scenario_of(cfg)
        check_scenario(sc)
    except ConfigError as exc:
        _fail(str(exc))
    if write_to is not None:
        try:
            write_config(sc, write_to, all_params=True, run=cfg.run.model_dump())
        except OSError as exc:
            _failure(f"cannot write {write_to}: {exc}")
        from gridledger.sim.demo import cli_command

        console.print(f"wrote {write_to}; run it with: {cli_command()} demo --config {write_to}")
        return
    run_out = Path(cfg.run.out) if cfg.run.out is not None else out
    _out_folder("--out" if "out" in given or cfg.run.out is None else "[run] out", run_out)
    if sc.serve_port is not None:
        _port_free("--serve" if "serve" in given else "[run] serve", "127.0.0.1", sc.serve_port)
    _run_scenario(sc, run_out)


@app.command("verify-chain")
def verify_chain(
    directory: Annotated[Path, typer.Argument(
        help="A demo --out folder, a node data folder, or one .sqlite store.")],
) -> None:
    """Replay every ledger store under DIRECTORY from genesis and check every byte.

    Stores are opened read-only: nothing is written to what is checked. Exit 2: DIRECTORY is
    missing or a file in it is not a ledger store; exit 1: a store fails verification."""
    _startup_check()
    from gridledger.node.verify import find_stores, verify_stores

    if not directory.exists():
        _fail(f"{directory} does not exist")
    stores = find_stores(directory)
    if not stores:
        _fail(f"no ledger store (*.sqlite) under {directory}")
    for path in stores:  # every input checked before any replay
        _ledger_store(path)
    bad = 0
    for path, r in zip(stores, verify_stores(stores), strict=True):  # two stores at a time
        if r.ok:
            console.print(f"[green]ok[/]   {path}  blocks={r.blocks} state_root={r.state_root.hex()[:16]}…")
        else:
            bad += 1
            console.print(f"[red]BAD[/]  {path}  first bad block {r.bad_height}: {r.reason}")
    if bad:
        raise typer.Exit(FAILURE)


@audit_app.command("export")
def audit_export(
    directory: Annotated[Path, typer.Argument(
        help="A demo --out folder, a node data folder, or one .sqlite store.")],
    out: Annotated[Path, typer.Argument(help="The bundle file to write.")],
    prove: Annotated[list[str] | None, typer.Option(
        help="State key prefix to prove at the tip (repeatable; default bank/).")] = None,
) -> None:
    """Write an audit bundle: genesis, every certified header and certificate, the blocks'
    transactions and receipts, and membership proofs of the audited state at the tip.

    With several stores under DIRECTORY the one with the most blocks is exported; the bundle
    is checked (as `audit verify --no-replay`) before it replaces OUT. Exit 2: DIRECTORY
    holds no ledger store or OUT is a folder; exit 1: the store does not make a valid bundle
    or OUT cannot be written (nothing is left behind)."""
    _startup_check()
    from gridledger.node.audit import DEFAULT_PREFIXES, export_bundle
    from gridledger.node.store import BlockStore
    from gridledger.node.verify import find_stores

    if not directory.exists():
        _fail(f"{directory} does not exist")
    if out.is_dir():
        _fail(f"OUT {out} is a folder; name the bundle file to write")
    _out_folder("OUT's folder", out.parent)
    stores = find_stores(directory)
    if not stores:
        _fail(f"no ledger store (*.sqlite) under {directory}")
    for path in stores:
        _ledger_store(path)

    def tip(path: Path) -> int:
        st = BlockStore(path, readonly=True)
        try:
            return st.tip()
        finally:
            st.close()

    source = max(stores, key=lambda p: (tip(p), -stores.index(p)))
    prefixes = tuple(p.encode() for p in prove) if prove else DEFAULT_PREFIXES
    try:
        rep = export_bundle(source, out, prefixes, check=True)
    except GridLedgerError as exc:
        _failure(_naming(source, exc))
    except OSError as exc:  # a full disk, a read-only folder: nothing (no .part) is left
        _failure(f"cannot write {out}: {exc}")
    console.print(f"[green]exported[/] {source} -> {out}: {rep.blocks} blocks, "
                  f"{rep.proofs} proofs, {rep.size_bytes:,} bytes; tip {rep.tip_hash.hex()[:16]}…, "
                  f"state root {rep.state_root.hex()[:16]}…")


@audit_app.command("verify")
def audit_verify(
    bundle: Annotated[Path, typer.Argument(help="An audit bundle written by `audit export`.")],
    replay: Annotated[bool, typer.Option(
        help="Re-execute every block from the genesis inside (full check).")] = True,
    genesis_hash: Annotated[str | None, typer.Option(
        help="The community's published genesis hash (hex): the bundle must start from it.")] = None,
) -> None:
    """Check an audit bundle with no other input: hash links from the genesis inside,
    quorum certificates, transaction and receipts roots, re-execution, and the proofs
    against the tip's certified state root. A failure names the record and, when it can be
    located, the altered byte. Exit 2: BUNDLE missing or not an audit bundle; exit 1: it fails
    (a truncated bundle, one with bytes appended, any altered byte)."""
    _startup_check()
    from gridledger.node.audit import looks_like_bundle, verify_bundle

    _existing_file("BUNDLE", bundle)
    pinned = None if genesis_hash is None else hex32("--genesis-hash", genesis_hash, "hash")
    try:
        if not looks_like_bundle(bundle):  # another file, not a damaged bundle: usage
            _fail(f"BUNDLE {bundle} is not an audit bundle (no GLAUDIT\\x01 magic at its start, "
                  "no GLAUDEND at its end); `gridledger audit export` writes one")
    except OSError as exc:
        _fail(f"BUNDLE {bundle} cannot be read: {exc}")
    r = verify_bundle(bundle, replay=replay, genesis_hash=pinned)
    if r.ok:
        console.print(f"[green]ok[/]   {bundle}  chain={r.chain_id} blocks={r.blocks} "
                      f"proofs={r.proofs} genesis={r.genesis_hash.hex()} "
                      f"tip={r.tip_hash.hex()[:16]}… state_root={r.state_root.hex()[:16]}…"
                      + ("" if r.replayed else " (not re-executed)"))
        return
    console.print(f"[red]BAD[/]  {bundle}")
    for f in r.findings:
        console.print(f"  {f}", markup=False)
    raise typer.Exit(FAILURE)


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
    """The keystore passphrase: ``$GRIDLEDGER_PASSPHRASE`` or asked for. ``confirm``: for a
    new key, which an empty passphrase would leave readable by anyone (the prompt asks again
    on an empty answer; an empty variable is refused, exit 2)."""
    env = os.environ.get("GRIDLEDGER_PASSPHRASE")
    if env is not None:
        if confirm and not env:
            _fail("GRIDLEDGER_PASSPHRASE is set but empty: a new key needs a passphrase "
                  "(unset it to be asked)")
        return env
    return str(typer.prompt("passphrase", hide_input=True, confirmation_prompt=confirm))


KeyDir = Annotated[Path, typer.Option("--dir", help="Keystore folder.")]


def _key_name(name: str) -> str:
    if not name or "/" in name or os.sep in name or name.startswith("."):
        _fail(f"invalid key name {name!r}: no slashes, not starting with a dot")
    return name


def _alg(alg: str) -> str:
    if alg not in _ALGS:
        _fail(f"--alg must be one of {', '.join(_ALGS)}, got {alg!r}")
    return alg


@keys_app.command("new")
def keys_new(name: str, alg: Annotated[str, typer.Option(help="ml-dsa-44|65|87")] = "ml-dsa-65",
             directory: KeyDir = Path("keys")) -> None:
    """Create an encrypted ML-DSA key (Argon2id, passphrase NFKC-normalised)."""
    from gridledger.crypto.keystore import save_key
    from gridledger.crypto.sig import SigningKey

    _startup_check()
    _key_name(name)
    _alg(alg)
    _out_folder("--dir", directory)
    if (directory / f"{name}.key.json").exists():
        _fail(f"{directory / f'{name}.key.json'} already exists")
    try:
        key = SigningKey.generate(alg)
        path = save_key(directory, name, key, _passphrase(confirm=True))
    except KeystoreError as exc:
        _fail(str(exc))
    except OSError as exc:
        _failure(f"cannot write the key: {exc}")
    console.print(f"{name}  {alg}  {key.address.hex()}  -> {path}")


@keys_app.command("show")
def keys_show(name: str, directory: KeyDir = Path("keys")) -> None:
    """Decrypt a key and show its algorithm, address and public key size."""
    path = _existing_file("key", directory / f"{name}.key.json")
    key = _load_signing_key(path, "key")
    console.print(f"name: {name}\nalg: {key.alg}\naddress: {key.address.hex()}\n"
                  f"public key: {len(key.public_key.raw)} bytes")


@keys_app.command("list")
def keys_list(directory: KeyDir = Path("keys")) -> None:
    """List keys in the keystore folder (no passphrase needed)."""
    from gridledger.crypto.keystore import list_keys

    try:
        keys = list_keys(directory)
    except KeystoreError as exc:
        _fail(f"--dir: {exc}")
    t = Table()
    for col in ("name", "alg", "address", "kdf"):
        t.add_column(col)
    for k in keys:
        t.add_row(k.name, k.alg, k.address, k.kdf)
    _show(t)
    listed = {k.path.name for k in keys}
    skipped = sorted(p.name for p in directory.glob("*.key.json") if p.name not in listed)
    if skipped:  # said, not hidden: a damaged key file is one its owner wants to know about
        err.print(f"[yellow]warning:[/] not listed, not readable as keystore files: "
                  f"{escape(', '.join(skipped))}")


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

    _in_range("--validators", validators, 1, 31)
    _in_range("--participants", participants, 0, 10_000)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", chain_id):
        _fail(f"--chain-id must be 1-64 letters, digits, '.', '_' or '-', got {chain_id!r}")
    _out_folder("DIRECTORY", directory)
    if (directory / "genesis.cbor").exists():
        _fail(f"{directory} already holds a network (genesis.cbor exists)")
    try:
        dirs = init_network(directory, validators, participants, chain_id, _passphrase(confirm=True))
    except ConfigError as exc:
        _fail(str(exc))
    except (GridLedgerError, OSError) as exc:
        _failure(f"cannot create the network: {exc}")
    for d in dirs:
        console.print(f"validator folder {d}")
    console.print(f"genesis {directory / 'genesis.cbor'}; participant keys in {directory / 'participants'}")
    _print_addresses(directory / "participants")


def _print_addresses(folder: Path) -> None:
    """The participants' names and addresses: what a transfer's ``--to`` takes (also later,
    without a passphrase: ``gridledger keys list --dir FOLDER``)."""
    from gridledger.crypto.keystore import list_keys

    keys = list_keys(folder) if folder.is_dir() else []
    if not keys:
        return
    t = Table(title=f"participant addresses (again any time: gridledger keys list --dir {folder})")
    for col in ("name", "address"):
        t.add_column(col, no_wrap=True)
    for k in keys:
        t.add_row(k.name, k.address)
    _show(t)


@node_app.command("start")
def node_start(
    node_dir: Annotated[Path, typer.Argument(help="A validator folder made by 'node init'.")],
    nats: Annotated[str, typer.Option(help="Comma-separated NATS server URLs.")] = "nats://127.0.0.1:4222",
    http_port: Annotated[int, typer.Option(help="HTTP API port (0: no API).")] = 0,
    http_host: Annotated[str, typer.Option(help="HTTP API address.")] = "127.0.0.1",
    tick_s: Annotated[float, typer.Option(help="Seconds between ticks.")] = 1.0,
    replicas: Annotated[int, typer.Option(help="JetStream replicas (3 on a 3-server cluster).")] = 3,
    fault: Annotated[str | None, typer.Option(
        help="Attack lab only: faults of node.validator.FAULTS, comma-separated.")] = None,
    quota_rate: Annotated[float, typer.Option(
        help="Admission quota per sender, tx/s (neutral reputation).")] = 20.0,
    quota_burst: Annotated[float, typer.Option(help="Admission burst per sender.")] = 200.0,
    network: Annotated[str | None, typer.Option(
        help="SimBench code or pandapower file of the community's network: the dashboard's "
             "network panel draws the power flow of the certified readings on it.")] = None,
) -> None:
    """Run one validator until interrupted."""
    _startup_check()
    from gridledger.node.process import ProcessConfig, ValidatorProcess

    if not (node_dir / "node.json").is_file():
        _fail(f"{node_dir} is not a validator folder (no node.json)")
    for need in (node_dir.parent / "genesis.cbor", node_dir / "validator.key.json"):
        if not need.is_file():
            _fail(f"{node_dir} is not a validator folder of a network ({need} is missing)")
    urls = [u.strip() for u in nats.split(",") if u.strip()]
    if not urls or any(not re.fullmatch(r"(nats|tls)://[^\s/]+", u) for u in urls):
        _fail(f"--nats must be comma-separated nats:// URLs, got {nats!r}")
    _in_range("--http-port", http_port, 0, 65535)
    _in_range("--tick-s", tick_s, 0.001, 3600)
    _in_range("--replicas", replicas, 1, 5)
    _in_range("--quota-rate", quota_rate, 1e-6, 1e9)
    _in_range("--quota-burst", quota_burst, 1, 1e9)
    if fault is not None:
        from gridledger.node.validator import FAULTS

        unknown = sorted(set(fault.split(",")) - set(FAULTS))
        if unknown:
            _fail(f"--fault: unknown {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    if network is not None:
        _check_node_network(network, node_dir.parent / "genesis.cbor", http_port)
    if http_port:
        _port_free("--http-port", http_host, http_port)
    cfg = ProcessConfig(node_dir, urls, http_host, http_port,
                        tick_s, replicas=replicas, fault=fault, quota_rate_per_s=quota_rate,
                        quota_burst=quota_burst, network=network)
    try:
        proc = ValidatorProcess(cfg, _passphrase())
    except ConfigError as exc:
        _fail(str(exc))
    except Exception as exc:  # wrong passphrase, NATS unreachable, a damaged store: all failures
        _failure(f"cannot start the validator: {str(exc) or type(exc).__name__}")
    # SIGINT explicitly too: inherited as ignored (a background job of a script) Ctrl-C
    # would otherwise never reach the validator
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: proc.stop.set())
    console.print(f"validator {proc.validator.index} at height {proc.validator.height}; "
                  f"API {f'http://{http_host}:{http_port}' if http_port else 'off'}")
    from gridledger.listen import ServeError

    try:
        proc.run()
    except KeyboardInterrupt:
        proc.stop.set()
    except ServeError as exc:  # taken between the check above and the bind
        _fail(f"--http-port {http_port}: {exc}")
    except RuntimeError as exc:  # its API stopped: not a validator to leave running unseen
        _failure(str(exc))


def _check_node_network(network: str, genesis_file: Path, http_port: int) -> None:
    """``node start --network``: the model loads, and the operator is told how many of the
    genesis participants' connection points are on it (the others are not drawn)."""
    from gridledger.grid import load_grid
    from gridledger.ledger.genesis import Genesis

    if http_port == 0:
        _fail("--network draws the dashboard's network panel: it needs --http-port")
    try:
        model = load_grid(network)
    except GridError as exc:
        _fail(f"--network: {exc}")
    try:
        genesis = Genesis.decode(read_bounded(genesis_file, GENESIS_MAX_BYTES, "genesis file"))
    except (GridLedgerError, ValueError, OSError) as exc:
        _failure(f"cannot read {genesis_file}: {exc}")
    parts = genesis.doc.get("participants", []) if isinstance(genesis.doc, dict) else []
    cps = {p["cp"] for p in parts if isinstance(p, dict) and p.get("cp")}
    on = len(cps & set(model.cp_ids))
    console.print(f"network {model.name}: {len(model.cp_ids)} connection points, {on} of the "
                  f"{len(cps)} in genesis on it (readings of the others are not drawn)")


@node_app.command("cluster")
def node_cluster(
    directory: Annotated[Path, typer.Argument(help="Folder for the servers' JetStream data.")],
    size: Annotated[int, typer.Option(help="Servers.")] = 3,
) -> None:
    """Run a local NATS JetStream cluster on loopback until interrupted (for one machine)."""
    from gridledger.node.nats_cluster import NatsCluster

    _in_range("--size", size, 1, 7)
    _out_folder("DIRECTORY", directory)
    # a service manager or `kill` stops us with SIGTERM, a closed terminal with SIGHUP:
    # either must take the servers down as Ctrl-C does, never leave them running (handlers
    # first: a signal that arrives while the servers start still stops them). SIGINT gets
    # its handler too: a process started in the background of a script inherits SIGINT
    # ignored, and Ctrl-C / `kill -INT` then did nothing (found by make test run from a
    # script: test_cluster_signals hung)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cluster = NatsCluster(directory, size).start()
    except ConfigError as exc:
        _fail(str(exc))
    except (GridLedgerError, OSError) as exc:
        _failure(f"cannot start the NATS cluster: {exc}")
    try:
        console.print("NATS cluster: " + ",".join(cluster.urls))
        if size < 3:  # JetStream replicates a stream on at most `size` servers
            console.print(f"(start the validators with --replicas {size}: {size} server"
                          f"{'s' if size > 1 else ''} hold{'' if size > 1 else 's'} each stream)")
        while not stop.wait(1):
            for line in cluster.revive():  # a server that died: back on its port, said
                console.print(line)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


@node_app.command("new-validator")
def node_new_validator(
    net_dir: Annotated[Path, typer.Argument(help="The network folder (holds genesis.cbor).")],
    name: Annotated[str | None, typer.Option(help="Validator name (default validator-<k>).")] = None,
    alg: Annotated[str, typer.Option(help="ml-dsa-44|65|87")] = "ml-dsa-65",
) -> None:
    """Create a validator folder to be added by governance: key, node.json, join.json."""
    _startup_check()
    from gridledger.node.network_files import new_validator

    if not (net_dir / "genesis.cbor").is_file():
        _fail(f"{net_dir} is not a network folder (no genesis.cbor)")
    _alg(alg)
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        _fail(f"--name must be 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    try:
        d = new_validator(net_dir, _passphrase(confirm=True), name, alg)
    except ConfigError as exc:
        _fail(str(exc))
    except (GridLedgerError, OSError, ValueError) as exc:
        _failure(f"cannot create the validator folder: {exc}")
    join = json.loads((d / "join.json").read_text())
    console.print(f"validator folder {d}\naddress {join['address']}\n"
                  f"give {d / 'join.json'} to a validator: gridledger tx propose-validator "
                  f"--add {d / 'join.json'} --key <its key> --node <its API>")


@node_app.command("validators")
def node_validators(
    node: Annotated[str, typer.Option(help="Node API URL.")] = "http://127.0.0.1:8080",
) -> None:
    """Show the active validator set, the quorum and open validator-set proposals."""
    from gridledger.client import Client

    _node_url(node)
    out = _node_call(node, lambda: Client(node).validators())
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

    _ledger_store(store)
    st = BlockStore(store, readonly=True)
    try:
        genesis = st.genesis()
        if genesis is None:
            raise GridLedgerError(f"{store} holds no genesis")
        app, _ = restore_app(st, genesis)
        keys = app.validator_keys()
        for _height, kind, body in st.evidence():
            if kind != "equivocation":
                continue
            signer = None
            for alg, pk in keys:  # name the signer by key: indices change with the set
                if all(verify_vote_signature(alg, pk, genesis.chain_id, int(body["height"]), h, sg)
                       for h, sg in zip(body["header_hashes"], body["sigs"], strict=False)):
                    signer = address_of(alg, pk).hex()
            print(json.dumps({"height": int(body["height"]), "validator": signer,
                              "validator_index": body.get("validator"),
                              "header_hashes": [bytes(h).hex() for h in body["header_hashes"]],
                              "sigs": [bytes(sg).hex() for sg in body["sigs"]]}))
    except GridLedgerError as exc:
        _failure(_naming(store, exc))
    finally:
        st.close()


def _load_signing_key(key: Path, flag: str = "--key") -> Any:
    """A key from its keystore file (checked to exist before the prompt). A file that is not
    a keystore is a usage error; a wrong passphrase a failure."""
    from gridledger.crypto.keystore import WrongPassphrase, load_key

    _existing_file(flag, key)
    try:
        return load_key(key, _passphrase())
    except WrongPassphrase as exc:
        _failure(str(exc))
    except KeystoreError as exc:
        _fail(f"{flag}: {exc}")


@tx_app.command("transfer")
def tx_transfer(
    key: Annotated[Path, typer.Option(help="Sender's keystore file.")],
    to: Annotated[str, typer.Option(help="Recipient address (hex).")],
    amount_micro: Annotated[int, typer.Option(help="Amount in micro-units.")],
    node: Annotated[str, typer.Option(help="Node API URL.")] = "http://127.0.0.1:8080",
    wait: Annotated[bool, typer.Option(help="Wait for the receipt.")] = True,
) -> None:
    """Sign a transfer locally and submit it.

    Exits 2 for a bad flag, 1 if the node is unreachable, refuses the transaction, or the
    committed transaction failed (the rule, e.g. ``unknown-recipient``, is named on stderr)."""
    from gridledger.client import Client

    recipient = _address("--to", to)
    _in_range("--amount-micro", amount_micro, 1, MAX_MICRO)
    _node_url(node)
    k = _load_signing_key(key)
    out = _node_call(node, lambda: Client(node, k).transfer(recipient, amount_micro, wait=wait))
    _print_receipt(out)


@tx_app.command("propose-validator")
def tx_propose_validator(
    key: Annotated[Path, typer.Option(help="The proposing validator's keystore file.")],
    add: Annotated[Path | None, typer.Option(
        help="join.json of the validator to add (from 'node new-validator').")] = None,
    remove: Annotated[str | None, typer.Option(help="Address (hex) of the validator to remove.")] = None,
    evidence: Annotated[Path | None, typer.Option(
        help="With --remove: one JSON line of 'node evidence'.")] = None,
    node: Annotated[str, typer.Option(help="Node API URL.")] = "http://127.0.0.1:8080",
    wait: Annotated[bool, typer.Option(help="Wait for the receipt.")] = True,
) -> None:
    """Propose adding or removing a validator (the proposal is your vote).

    Exits 1 if the committed transaction failed (its receipt names the rule)."""
    from gridledger.client import Client
    from gridledger.node.network_files import read_join

    if (add is None) == (remove is None):
        _fail("give exactly one of --add JOIN.json or --remove ADDRESS")
    if evidence is not None and remove is None:
        _fail("--evidence goes with --remove")
    _node_url(node)
    join: dict[str, Any] | None = None
    ev: dict[str, Any] | None = None
    target = b""
    try:
        if add is not None:
            join = read_join(_existing_file("--add", add))
        else:
            target = _address("--remove", str(remove))
            if evidence is not None:
                e = json.loads(read_bounded(_existing_file("--evidence", evidence), EVIDENCE_MAX_BYTES,
                                            "misbehaviour evidence file").decode().strip().splitlines()[0])
                ev = {"height": int(e["height"]),
                      "header_hashes": [bytes.fromhex(h) for h in e["header_hashes"]],
                      "sigs": [bytes.fromhex(sg) for sg in e["sigs"]]}
    except (ConfigError, FileTooLarge) as exc:
        _fail(f"{'--add' if add is not None else '--evidence'}: {exc}")
    except (ValueError, KeyError, TypeError, IndexError, OSError) as exc:
        bad = "--add" if add is not None else "--evidence"
        _fail(f"{bad}: not a file of the expected form ({type(exc).__name__}: {exc})")
    k = _load_signing_key(key)
    c = Client(node, k)
    if join is not None:
        body = join
        out = _node_call(node, lambda: c.propose_add_validator(body, wait=wait))
    else:
        out = _node_call(node, lambda: c.propose_remove_validator(target, ev, wait=wait))
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
    from gridledger.client import Client

    _in_range("--proposal", proposal, 0, MAX_MICRO)
    _node_url(node)
    k = _load_signing_key(key)
    out = _node_call(node, lambda: Client(node, k).vote_validator(proposal, wait=wait))
    _print_receipt(out)


def main() -> None:  # pragma: no cover
    """Entry point: the commands, and no traceback for anything they did not expect either
    (``GRIDLEDGER_DEBUG=1`` shows it)."""
    from gridledger.cli import _interrupted_while_starting

    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # started: Ctrl-C as usual
    try:
        rc = app(standalone_mode=False)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        err.print("aborted")
        raise SystemExit(FAILURE) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:
        if os.environ.get("GRIDLEDGER_DEBUG"):
            raise
        err.print(f"[bold red]error:[/] internal error: {type(exc).__name__}: {exc} "
                  "(GRIDLEDGER_DEBUG=1 shows the traceback)")
        raise SystemExit(FAILURE) from None
    code = rc if isinstance(rc, int) else 0
    if code == 130:  # Ctrl-C: typer turns KeyboardInterrupt into exit code 130
        err.print("interrupted")
    raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
