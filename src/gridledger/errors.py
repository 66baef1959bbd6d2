"""The GridLedger exception tree.

::

    GridLedgerError
    ├── CryptoBackendError          the installed cryptography lacks ML-DSA / ML-KEM
    ├── KeystoreError               keystore file missing, wrong passphrase, corrupt
    ├── CryptoError                 signature / sealing failure outside a transaction
    ├── RejectedTx (rule)           a transaction broke a named rule; state untouched
    │   ├── envelope: Oversize, MalformedEncoding, WrongChain, UnknownKind, BadSignature,
    │   │   ClassicalKey, UnknownAlgorithm, UnknownSender, ReplayedNonce, NonceGap; a
    │   │   committee sender: CommitteeSignature, UnknownMember, DuplicateSigner,
    │   │   CommitteeThreshold
    │   ├── admission: QuotaExceeded, MempoolFull
    │   ├── body categories: InvalidBody, Unauthorized, InsufficientFunds — each module's
    │   │   ``errors.py`` subclasses these with its own rules (``gate-closed`` ...)
    │   └── InternalError           a handler raised something unexpected (receipt only)
    ├── BlockError                  a block or certificate does not check out
    │   ├── BadCertificate, BadLink, StateRootMismatch, TxRootMismatch, BlockAborted
    ├── InvariantViolation          a post-block invariant failed (conservation, ...)
    ├── GridError                   network/profile/measurement input unusable
    └── ConfigError                 bad user configuration (CLI flags, files)

Every ``RejectedTx`` carries ``rule``: a short, stable, kebab-case name that API clients and
receipts use (``bad-signature``, ``replayed-nonce``, ``gate-closed`` ...). A rule name belongs
to exactly one class chain-wide; ``gridledger.ledger.rules.chain_rules`` lists them all with
their category (the body category or envelope class they derive from), which is what the API
maps to an HTTP status.
"""

from __future__ import annotations


class GridLedgerError(Exception):
    """Base of every error GridLedger raises on purpose."""


class CryptoBackendError(GridLedgerError):
    """The installed ``cryptography`` build cannot do ML-DSA / ML-KEM."""


class KeystoreError(GridLedgerError):
    """A keystore file is missing, corrupt, or the passphrase is wrong."""


class CryptoError(GridLedgerError):
    """A signature, key or sealed payload failed to check."""


class RejectedTx(GridLedgerError):
    """A transaction broke a rule; nothing it touched was changed."""

    rule: str = "rejected"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.rule}: {detail}" if detail else self.rule)


class Oversize(RejectedTx):
    """The encoded transaction is larger than the size limit."""

    rule = "oversize"


class MalformedEncoding(RejectedTx):
    """The bytes are not a canonical CBOR transaction envelope."""

    rule = "malformed-encoding"


class WrongChain(RejectedTx):
    """The transaction names another chain id (cross-chain replay)."""

    rule = "wrong-chain"


class UnknownKind(RejectedTx):
    """No module handles this transaction kind."""

    rule = "unknown-kind"


class BadSignature(RejectedTx):
    """The signature does not verify under the sender's registered key."""

    rule = "bad-signature"


class ClassicalKey(RejectedTx):
    """The key or signature algorithm is not post-quantum (policy: ML-DSA only)."""

    rule = "classical-key"


class UnknownAlgorithm(RejectedTx, CryptoError):
    """The signature-algorithm name is not one GridLedger knows (neither ML-DSA nor a known
    classical name). A ``CryptoError`` outside a transaction, a named rejection inside one."""

    rule = "unknown-algorithm"


class CommitteeSignature(RejectedTx):
    """A committee sender's signature is not a list of ``[member index, signature]`` pairs
    in ascending member order (``gridledger.ledger.committee``)."""

    rule = "committee-signature"


class UnknownMember(RejectedTx):
    """A committee signature names a member index outside the committee."""

    rule = "unknown-member"


class DuplicateSigner(RejectedTx):
    """A committee signature lists one member twice (it counts once towards k)."""

    rule = "duplicate-signer"


class CommitteeThreshold(RejectedTx):
    """A committee sender's transaction carries fewer than k member signatures."""

    rule = "committee-threshold"


class UnknownSender(RejectedTx):
    """The sender address is not a registered participant."""

    rule = "unknown-sender"


class ReplayedNonce(RejectedTx):
    """The nonce was already used (replay) or skips ahead (out of order)."""

    rule = "replayed-nonce"


class NonceGap(RejectedTx):
    """The nonce skips ahead of the sender's next nonce (out-of-order submission)."""

    rule = "nonce-gap"


class QuotaExceeded(RejectedTx):
    """The sender exceeded its admission quota (token bucket)."""

    rule = "quota-exceeded"


class MempoolFull(RejectedTx):
    """The mempool is full and this sender already holds its fair share."""

    rule = "mempool-full"


class InsufficientFunds(RejectedTx):
    """The sender's spendable balance does not cover the amount."""

    rule = "insufficient-funds"


class Unauthorized(RejectedTx):
    """The sender's role does not allow this transaction kind."""

    rule = "unauthorized"


class InvalidBody(RejectedTx):
    """The transaction body has missing, mistyped or out-of-range fields."""

    rule = "invalid-body"


class InternalError(RejectedTx):
    """A handler raised an exception that is not a rule (a defect). The transaction's changes
    are rolled back and its receipt names this rule and the exception type only, so every
    validator writes the same receipt."""

    rule = "internal-error"


class BlockError(GridLedgerError):
    """A block, its link or its certificate does not check out."""


class BadCertificate(BlockError):
    """The quorum certificate lacks 2f+1 valid, distinct validator signatures."""


class BadLink(BlockError):
    """The block's height or prev_hash does not follow its parent."""


class TxRootMismatch(BlockError):
    """The header's tx_root does not match the block's transactions."""


class StateRootMismatch(BlockError):
    """Re-executing the block gives a different state root than the header's."""


class BlockAborted(BlockError):
    """A block hook (begin/end of block) failed: the whole block is rolled back and the
    validator does not sign it. Deterministic, so every honest validator aborts alike."""


class InvariantViolation(GridLedgerError):
    """A post-block invariant (money conservation, non-negative balances, ...) failed."""


class GridError(GridLedgerError):
    """Network, profile or measurement input cannot be used; the message names what."""


class ConfigError(GridLedgerError):
    """A user-supplied setting is invalid; the message names it."""


class NotApplicable(ConfigError):
    """A scenario finds nothing to act on in this community (e.g. no meter runs the advised
    firmware); raised by ``Attack.setup`` before it recruits anyone. The run leaves the
    scenario out and says why (``summary.scenario.notes``) instead of failing."""
