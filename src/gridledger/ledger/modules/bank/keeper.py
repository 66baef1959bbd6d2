"""The only code that touches ``bank/`` keys. Money moves; it is created only at genesis.

Every function takes the state explicitly and raises ``InsufficientFunds`` (changing
nothing) when money is short, or ``BadAmount`` for a negative amount (a caller's defect).
"""

from __future__ import annotations

from collections.abc import Iterator

from gridledger.errors import InsufficientFunds
from gridledger.ledger.modules.bank.errors import BadAmount
from gridledger.ledger.state import State

BAL = b"bank/bal/"
LOCK = b"bank/lock/"
SUPPLY = b"bank/supply"


def balance(state: State, addr: bytes) -> int:
    """Spendable money of ``addr`` (micro-units)."""
    return state.get_int(BAL + addr)


def locked(state: State, addr: bytes) -> int:
    """Locked money of ``addr``: order escrow, delivery deposits, pool tickets (micro-units)."""
    return state.get_int(LOCK + addr)


def supply(state: State) -> int:
    """All money that exists: minted at genesis, never changed since (micro-units)."""
    return state.get_int(SUPPLY)


def balances(state: State) -> Iterator[tuple[bytes, int, int]]:
    """``(addr, spendable, locked)`` of every account holding money, by address."""
    spend = {k[len(BAL):]: int(v) for k, v in state.items_with_prefix(BAL)}
    held = {k[len(LOCK):]: int(v) for k, v in state.items_with_prefix(LOCK)}
    for addr in sorted(spend.keys() | held.keys()):
        yield addr, spend.get(addr, 0), held.get(addr, 0)


def total_money(state: State) -> int:
    """Sum of every spendable and locked balance (equals ``supply`` after every block)."""
    return (sum(int(v) for _, v in state.items_with_prefix(BAL))
            + sum(int(v) for _, v in state.items_with_prefix(LOCK)))


def _nonnegative(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise BadAmount(f"amount must be a non-negative integer, got {type(amount).__name__}"
                        f"{' < 0' if isinstance(amount, int) else ''}")


def debit(state: State, addr: bytes, amount: int) -> None:
    _nonnegative(amount)
    bal = balance(state, addr)
    if bal < amount:
        raise InsufficientFunds(f"balance {bal} < {amount}")
    state.set_int(BAL + addr, bal - amount)


def credit(state: State, addr: bytes, amount: int) -> None:
    _nonnegative(amount)
    state.set_int(BAL + addr, balance(state, addr) + amount)


def move(state: State, src: bytes, dst: bytes, amount: int) -> None:
    """Transfer spendable money; raises ``InsufficientFunds`` and changes nothing if short."""
    debit(state, src, amount)
    credit(state, dst, amount)


def lock(state: State, addr: bytes, amount: int) -> None:
    """Move spendable money into the locked balance (escrow / deposit); 0 is a no-op (no key
    is written: a zero deposit leaves the state root where it was)."""
    _nonnegative(amount)
    if not amount:
        return
    debit(state, addr, amount)
    state.set_int(LOCK + addr, locked(state, addr) + amount)


def unlock(state: State, addr: bytes, amount: int) -> None:
    """Move locked money back to the spendable balance; 0 is a no-op."""
    _nonnegative(amount)
    if not amount:
        return
    have = locked(state, addr)
    if have < amount:
        raise InsufficientFunds(f"locked {have} < {amount}")
    state.set_int(LOCK + addr, have - amount)
    credit(state, addr, amount)


def pay_from_locked(state: State, src: bytes, dst: bytes, amount: int) -> None:
    """Pay ``amount`` out of ``src``'s locked balance to ``dst``'s spendable balance; 0 is a
    no-op."""
    _nonnegative(amount)
    if not amount:
        return
    have = locked(state, src)
    if have < amount:
        raise InsufficientFunds(f"locked {have} < {amount}")
    state.set_int(LOCK + src, have - amount)
    credit(state, dst, amount)


def mint_genesis(state: State, addr: bytes, amount: int) -> None:
    """Genesis allocation: the only place supply grows (documented minting rule)."""
    _nonnegative(amount)
    credit(state, addr, amount)
    state.set_int(SUPPLY, supply(state) + amount)
