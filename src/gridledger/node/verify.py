"""``verify-chain``: replay a ledger store from genesis and check every byte.

For each block: height and ``prev_hash`` link, ``tx_root`` over the stored transactions,
the header's validator-set hash and quorum certificate against the validator set of the
parent state (so sets changed by governance are followed: each height is checked against
the set active at it), re-execution giving the header's ``state_root`` and
``receipts_root``, and the stored receipts equal to the recomputed ones. Snapshots are checked against their block's state root. The first failure
is named with its height and reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gridledger.errors import GridLedgerError
from gridledger.ledger.app import Application
from gridledger.ledger.block import Certificate, Header, tx_root, verify_certificate
from gridledger.ledger.modules import Module
from gridledger.ledger.modules.registry.keeper import keys_hash
from gridledger.ledger.state import State
from gridledger.node.store import STORE_SUFFIX, BlockStore


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    blocks: int
    state_root: bytes
    bad_height: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_height is None


def verify_store(path: str | Path, modules: Sequence[Module] | None = None) -> VerifyReport:
    """Replay one SQLite store; never raises for bad content, reports it."""
    path = Path(path)
    store = BlockStore(path)
    try:
        genesis = store.genesis()
        if genesis is None:
            return VerifyReport(path, 0, b"", 0, "no genesis document in store")
        try:
            app = Application(genesis, modules)
        except GridLedgerError as exc:
            return VerifyReport(path, 0, b"", 0, f"genesis does not build: {exc}")
        expected = 1
        roots: dict[int, bytes] = {}
        for blk in store.blocks(1):
            h = blk.height
            if h != expected:
                return VerifyReport(path, expected - 1, app.state.root(), expected,
                                    f"block {expected} is missing (next stored is {h})")
            try:
                header = Header.decode(blk.header)
                cert = Certificate.decode(blk.cert)
                txs = blk.tx_list()
            except Exception as exc:
                return VerifyReport(path, h - 1, app.state.root(), h, f"undecodable: {exc}")
            if header.height != h or header.chain_id != app.chain_id:
                return VerifyReport(path, h - 1, app.state.root(), h, "header height/chain id")
            if header.prev_hash != app.last_hash:
                return VerifyReport(path, h - 1, app.state.root(), h,
                                    "prev_hash does not link to the previous block")
            if header.tx_root != tx_root(txs):
                return VerifyReport(path, h - 1, app.state.root(), h,
                                    "tx_root does not match the stored transactions")
            keys = app.validator_keys()  # the set active at height h (state after h - 1)
            if header.validator_set_hash != keys_hash(keys):
                return VerifyReport(path, h - 1, app.state.root(), h,
                                    "validator_set_hash is not the active validator set")
            try:
                verify_certificate(header, cert, keys)
            except GridLedgerError as exc:
                return VerifyReport(path, h - 1, app.state.root(), h, f"certificate: {exc}")
            try:
                got, result = app.finalize_block(txs, header.slot_time)
            except GridLedgerError as exc:
                return VerifyReport(path, h - 1, app.state.root(), h, f"execution: {exc}")
            if got.state_root != header.state_root:
                app.discard()
                return VerifyReport(path, h - 1, app.state.root(), h,
                                    "re-execution gives a different state_root")
            if got.receipts_root != header.receipts_root or result.encode_receipts() != blk.receipts:
                app.discard()
                return VerifyReport(path, h - 1, app.state.root(), h,
                                    "receipts differ from re-execution")
            if got.hash != header.hash:
                app.discard()
                return VerifyReport(path, h - 1, app.state.root(), h, "header fields differ")
            app.commit()
            roots[h] = header.state_root
            expected += 1
        snap = store.latest_snapshot()
        if snap is not None:
            sh, data = snap
            if roots.get(sh) != State(data).root():
                return VerifyReport(path, expected - 1, app.state.root(), sh,
                                    f"snapshot at height {sh} does not match its block")
        return VerifyReport(path, expected - 1, app.state.root())
    except Exception as exc:  # a corrupt SQLite file is a finding, not a crash
        return VerifyReport(path, 0, b"", 0, f"store unreadable: {exc}")
    finally:
        store.close()


def find_stores(root: str | Path) -> list[Path]:
    """Every ledger store under ``root`` (a file or a directory), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob(f"*{STORE_SUFFIX}") if p.is_file())


def verify_dir(root: str | Path) -> list[VerifyReport]:
    return [verify_store(p) for p in find_stores(root)]
