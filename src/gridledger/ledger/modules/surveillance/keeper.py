"""The only code that touches ``sv/`` keys."""

from __future__ import annotations

from gridledger.ledger.modules.surveillance.types import Config, Finding, Flows, Supply, Watch
from gridledger.ledger.record import read, read_prefix
from gridledger.ledger.state import State

CFG = b"sv/cfg"          # -> Config (present iff genesis had the section)
WATCH = b"sv/w/"         # + slot(8) -> Watch: visible book per owner/side while open
FLOWS = b"sv/f/"         # + slot(8) -> Flows: pair flows of a cleared slot (wash window)
PENDING = b"sv/pending"  # [slot] handed to the market for clearing; trades read next block
FINDING = b"sv/x/"       # + id(8) -> Finding
SUBJECT = b"sv/s/"       # + addr(32) + id(8) -> b"\x01": findings by subject
COUNT = b"sv/n"          # number of findings so far (the next id)
FLAGGED = b"sv/p/"       # + a(32) + b(32) -> last slot the pair was found washing
SUPPLY = b"sv/k/"        # + slot(8) -> Supply: the final book's offers until the slot settles

_MARK = b"\x01"


def sk(slot: int) -> bytes:
    """Fixed-width big-endian slot, so key order is slot order."""
    return slot.to_bytes(8, "big")


def config(state: State) -> Config | None:
    return read(state, CFG, Config)


def put_config(state: State, cfg: Config) -> None:
    state.set_obj(CFG, cfg.to_obj())


# -- the visible book of open slots ----------------------------------------------------------

def watch(state: State, slot: int) -> Watch | None:
    return read(state, WATCH + sk(slot), Watch)


def put_watch(state: State, slot: int, w: Watch) -> None:
    state.set_obj(WATCH + sk(slot), w.to_obj())


def drop_watch(state: State, slot: int) -> None:
    state.delete(WATCH + sk(slot))


def watched_slots(state: State) -> list[int]:
    return [int.from_bytes(k[len(WATCH):], "big") for k in state.keys_with_prefix(WATCH)]


# -- slots cleared, trades still to read -------------------------------------------------------

def pending(state: State) -> list[int]:
    return list(state.get_obj(PENDING, []))


def set_pending(state: State, slots: list[int]) -> None:
    if slots:
        state.set_obj(PENDING, sorted(set(slots)))
    else:
        state.delete(PENDING)


# -- pair flows (wash window) ----------------------------------------------------------------

def flows(state: State, slot: int) -> Flows | None:
    return read(state, FLOWS + sk(slot), Flows)


def put_flows(state: State, slot: int, f: Flows) -> None:
    state.set_obj(FLOWS + sk(slot), f.to_obj())


def flow_slots(state: State) -> list[int]:
    return [int.from_bytes(k[len(FLOWS):], "big") for k in state.keys_with_prefix(FLOWS)]


def drop_flows(state: State, slot: int) -> None:
    state.delete(FLOWS + sk(slot))


def last_flagged(state: State, a: bytes, b: bytes) -> int | None:
    v = state.get_obj(FLAGGED + a + b)
    return None if v is None else int(v)


def set_flagged(state: State, a: bytes, b: bytes, slot: int) -> None:
    state.set_obj(FLAGGED + a + b, slot)


# -- what the final book offered, until the slot settles ----------------------------------------

def supply(state: State, slot: int) -> Supply | None:
    return read(state, SUPPLY + sk(slot), Supply)


def put_supply(state: State, slot: int, s: Supply) -> None:
    state.set_obj(SUPPLY + sk(slot), s.to_obj())


def drop_supply(state: State, slot: int) -> None:
    state.delete(SUPPLY + sk(slot))


def supply_slots(state: State) -> list[int]:
    return [int.from_bytes(k[len(SUPPLY):], "big") for k in state.keys_with_prefix(SUPPLY)]


# -- findings --------------------------------------------------------------------------------

def count(state: State) -> int:
    return state.get_int(COUNT)


def add_finding(state: State, f: Finding) -> None:
    """Store ``f`` (its id must be ``count``) and index it under each subject."""
    state.set_obj(FINDING + f.id.to_bytes(8, "big"), f.to_obj())
    for s in f.subjects:
        state.set(SUBJECT + s + f.id.to_bytes(8, "big"), _MARK)
    state.set_int(COUNT, f.id + 1)


def finding(state: State, fid: int) -> Finding | None:
    if not 0 <= fid < 2**63:
        return None
    return read(state, FINDING + fid.to_bytes(8, "big"), Finding)


def findings(state: State) -> list[Finding]:
    """Every finding, by id."""
    return [f for _, f in read_prefix(state, FINDING, Finding)]


def findings_of(state: State, addr: bytes) -> list[Finding]:
    """The findings naming ``addr``, by id."""
    prefix = SUBJECT + addr
    out = []
    for k in state.keys_with_prefix(prefix):
        f = finding(state, int.from_bytes(k[len(prefix):], "big"))
        if f is not None:
            out.append(f)
    return out


def subject_index_size(state: State) -> int:
    return len(state.keys_with_prefix(SUBJECT))
