"""The only code that touches ``bank/`` keys. Money moves; it is never created here."""

from __future__ import annotations

from gridledger.errors import InsufficientFunds, InvalidBody
from gridledger.ledger.state import State

BAL = b"bank/bal/"
LOCK = b"bank/lock/"
SUPPLY = b"bank/supply"


def balance(state: State, addr: bytes) -> int:
    return state.get_int(BAL + addr)


def locked(state: State, addr: bytes) -> int:
    return state.get_int(LOCK + addr)


def _positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise InvalidBody(f"amount must be a non-negative integer, got {amount!r}")


def debit(state: State, addr: bytes, amount: int) -> None:
    _positive(amount)
    bal = balance(state, addr)
    if bal < amount:
        raise InsufficientFunds(f"balance {bal} < {amount}")
    state.set_int(BAL + addr, bal - amount)


def credit(state: State, addr: bytes, amount: int) -> None:
    _positive(amount)
    state.set_int(BAL + addr, balance(state, addr) + amount)


def move(state: State, src: bytes, dst: bytes, amount: int) -> None:
    """Transfer spendable money; raises ``InsufficientFunds`` and changes nothing if short."""
    debit(state, src, amount)
    credit(state, dst, amount)


def lock(state: State, addr: bytes, amount: int) -> None:
    """Move spendable money into the locked balance (escrow / deposit)."""
    debit(state, addr, amount)
    state.set_int(LOCK + addr, locked(state, addr) + amount)


def unlock(state: State, addr: bytes, amount: int) -> None:
    _positive(amount)
    have = locked(state, addr)
    if have < amount:
        raise InsufficientFunds(f"locked {have} < {amount}")
    state.set_int(LOCK + addr, have - amount)
    credit(state, addr, amount)


def pay_from_locked(state: State, src: bytes, dst: bytes, amount: int) -> None:
    """Pay ``amount`` out of ``src``'s locked balance to ``dst``'s spendable balance."""
    _positive(amount)
    have = locked(state, src)
    if have < amount:
        raise InsufficientFunds(f"locked {have} < {amount}")
    state.set_int(LOCK + src, have - amount)
    credit(state, dst, amount)


def mint_genesis(state: State, addr: bytes, amount: int) -> None:
    """Genesis allocation: the only place supply grows (documented minting rule)."""
    _positive(amount)
    credit(state, addr, amount)
    state.set_int(SUPPLY, state.get_int(SUPPLY) + amount)
