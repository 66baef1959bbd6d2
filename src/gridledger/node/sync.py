"""Catch-up: bring a lagging validator to a peer's tip from the peer's certified blocks.

Nothing is taken on trust: each block's link, transaction root and quorum certificate are
checked against the lagging validator's own state, the block is re-executed, and it is
stored only if re-execution gives exactly the certified header. The certificate is checked
against the validator set active at that height, read from the lagging validator's own
replayed state, so catch-up follows validator-set changes made by governance.
"""

from __future__ import annotations

from gridledger.errors import BlockError, StateRootMismatch
from gridledger.ledger.block import Certificate, Header, tx_root, verify_certificate
from gridledger.ledger.valset import keys_hash
from gridledger.node.store import BlockStore, StoredBlock
from gridledger.node.validator import Validator


def apply_certified(v: Validator, blk: StoredBlock) -> None:
    """Verify and apply one certified block from a peer to ``v``; raises ``BlockError``."""
    header = Header.decode(blk.header)
    cert = Certificate.decode(blk.cert)
    txs = blk.tx_list()
    if header.height != v.height + 1 or header.prev_hash != v.app.last_hash:
        raise BlockError(f"peer block {header.height} does not extend our tip {v.height}")
    if header.tx_root != tx_root(txs):
        raise BlockError(f"peer block {header.height}: tx_root mismatch")
    keys = v.app.validator_keys()  # the set of *this* height, from our own replayed state
    if header.validator_set_hash != keys_hash(keys):
        raise BlockError(f"peer block {header.height}: validator_set_hash is not the active set")
    verify_certificate(header, cert, keys)
    got, result = v.app.finalize_block(txs, header.slot_time)
    if got.hash != header.hash:
        v.app.discard()
        raise StateRootMismatch(f"re-executing peer block {header.height} gives another header")
    v.app.commit()
    snapshot = v.snapshot_after(header.height)
    v.store.append_block(header.height, header.encode(), txs, result.encode_receipts(),
                         blk.cert, blk.log_end, snapshot)
    v.log_end = blk.log_end
    v.diverged = False


def catch_up(v: Validator, peer: BlockStore) -> int:
    """Apply every block the peer has beyond ``v``'s tip; returns how many were applied."""
    n = 0
    for blk in peer.blocks(v.height + 1):
        apply_certified(v, blk)
        n += 1
    return n
