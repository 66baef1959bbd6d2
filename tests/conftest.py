"""Shared fixtures: a small deterministic chain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridledger.crypto.sig import SigningKey
from gridledger.ledger.app import Application
from gridledger.ledger.execute import run_invariants
from gridledger.ledger.genesis import Genesis, make_genesis
from gridledger.ledger.tx import sign_tx
from gridledger.sim.keys import sim_key

CHAIN = "test-chain"


@dataclass
class Chain:
    genesis: Genesis
    validators: list[SigningKey]
    users: list[SigningKey]
    nonces: dict[bytes, int]

    def tx(self, key: SigningKey, kind: str, body: dict, nonce: int | None = None,
           chain_id: str = CHAIN) -> bytes:
        n = self.nonces.get(key.address, 0) if nonce is None else nonce
        if nonce is None:
            self.nonces[key.address] = n + 1
        return sign_tx(key, chain_id, n, kind, body)

    def transfer(self, i: int, j: int, amount: int, **kw: object) -> bytes:
        return self.tx(self.users[i], "bank/transfer",
                       {"to": self.users[j].address, "amount_micro": amount}, **kw)


def make_chain(n_validators: int = 4, n_users: int = 6, seed: int = 1) -> Chain:
    vk = [sim_key(seed, "validator", i) for i in range(n_validators)]
    uk = [sim_key(seed, "user", i) for i in range(n_users)]
    parts = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"v{i}"}
             for i, k in enumerate(vk)]
    parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "name": f"u{i}",
               "cp": f"cp{i}", "balance_micro": 1_000_000} for i, k in enumerate(uk)]
    return Chain(make_genesis(CHAIN, parts), vk, uk, {})


@pytest.fixture(scope="session")
def chain_template() -> Chain:
    return make_chain()


@pytest.fixture
def chain(chain_template: Chain) -> Chain:
    return Chain(chain_template.genesis, chain_template.validators, chain_template.users, {})


@pytest.fixture
def app(chain: Chain) -> Application:
    return Application(chain.genesis)


def apply(app: Application, txs: list[bytes], slot_time: int | None = None):
    """Finalize + commit one block and run every invariant (as every test must)."""
    header, result = app.finalize_block(txs, app.slot_time + 900 if slot_time is None else slot_time)
    app.commit()
    run_invariants(app.state, app.modules)
    return header, result


@pytest.fixture
def tmp_store_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


# Shared runs under pytest-xdist: a session- or module-scoped fixture is built once per
# *worker*, so a demo run shared by tests that land on both workers ran twice (the default
# day: ~100 s of CPU each). `make test` runs `-n 2 --dist loadgroup`: every test that reads
# such a run is marked with that run's `xdist_group`, so one worker builds it once and takes
# its tests while the other takes the rest. (pytest is pinned below 9: under pytest 9 xdist's
# groups are lost and schemathesis' cases share one node id.)
SHARED_RUN_DIRS = ("tests/sim",)
DEFAULT_DAY = ("default_day", "clear_day")  # clear_day *is* default_day while it runs clear


def _shared_run(item: pytest.Item) -> str | None:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    if any(name in info.names_closure for name in DEFAULT_DAY):
        return "default_day"
    for name in sorted(info.names_closure):
        for fdef in info.name2fixturedefs.get(name, ()):
            if fdef.scope in ("module", "session") and fdef.baseid.startswith(SHARED_RUN_DIRS):
                return f"{fdef.baseid}::{name}"
    return None


@pytest.hookimpl(wrapper=True)  # before xdist's own hook turns the marks into groups
def pytest_collection_modifyitems(config: pytest.Config,
                                  items: list[pytest.Item]) -> Iterator[None]:
    for item in items:
        if (group := _shared_run(item)) is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    yield
