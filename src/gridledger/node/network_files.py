"""Network folders: a new network's genesis and keys, a validator to be added by governance,
and the ``join.json`` that proposes it.

Layout: ``net/genesis.cbor``, ``net/validator-<i>/{validator.key.json, node.json}``,
``net/participants/p<i>.key.json``. Keys are encrypted keystores (``crypto.keystore``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from gridledger.crypto.keystore import save_key
from gridledger.crypto.sig import SigningKey
from gridledger.errors import ConfigError
from gridledger.files import read_bounded
from gridledger.ledger.genesis import Genesis, make_genesis
from gridledger.ledger.modules.governance.types import VALIDATOR_POP_CONTEXT, validator_pop_message


def init_network(out: Path, validators: int, participants: int, chain_id: str,
                 passphrase: str, balance_micro: int = 100_000_000,
                 scrypt_n: int = 2**15) -> list[Path]:
    """Create genesis, validator keys (encrypted) and participant keys for a new network.

    Layout: ``out/genesis.cbor``, ``out/validator-<i>/{validator.key.json, node.json}``,
    ``out/participants/p<i>.key.json``. Returns the validator folders.
    """
    out.mkdir(parents=True, exist_ok=True)
    if (out / "genesis.cbor").exists():
        raise ConfigError(f"{out} already holds a network (genesis.cbor exists)")
    vkeys = [SigningKey.generate("ml-dsa-65") for _ in range(validators)]
    pkeys = [SigningKey.generate("ml-dsa-65") for _ in range(participants)]
    parts: list[dict[str, Any]] = [
        {"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"validator-{i}"}
        for i, k in enumerate(vkeys)]
    parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "name": f"p{i}",
               "cp": f"cp-{i}", "balance_micro": balance_micro} for i, k in enumerate(pkeys)]
    genesis = make_genesis(chain_id, parts, {"genesis_time_unix": int(time.time())})
    (out / "genesis.cbor").write_bytes(genesis.encode())
    dirs = []
    for i, k in enumerate(vkeys):
        d = out / f"validator-{i}"
        save_key(d, "validator", k, passphrase, scrypt_n)
        (d / "node.json").write_text(json.dumps({"index": i, "chain_id": chain_id}, indent=2))
        dirs.append(d)
    for i, k in enumerate(pkeys):
        save_key(out / "participants", f"p{i}", k, passphrase, scrypt_n)
    return dirs


def new_validator(net: Path, passphrase: str, name: str | None = None, alg: str = "ml-dsa-65",
                  scrypt_n: int = 2**15) -> Path:
    """Create the folder of a validator to be added by governance: ``net/validator-<k>/``
    with an encrypted key, ``node.json`` and ``join.json``.

    ``join.json`` is what the proposing validator submits (``gridledger tx propose-validator
    --add``): the name, algorithm, public key and the key's proof of possession (signature
    over ``validator_pop_message(chain_id, name)``, context ``gl/validator-pop``). It holds
    nothing secret.
    """
    genesis = Genesis.decode((net / "genesis.cbor").read_bytes())
    k = 0
    while (net / f"validator-{k}").exists():
        k += 1
    d = net / f"validator-{k}"
    name = name or f"validator-{k}"
    key = SigningKey.generate(alg)
    save_key(d, "validator", key, passphrase, scrypt_n)
    (d / "node.json").write_text(json.dumps({"index": k, "chain_id": genesis.chain_id}, indent=2))
    pop = key.sign(validator_pop_message(genesis.chain_id, name), VALIDATOR_POP_CONTEXT)
    (d / "join.json").write_text(json.dumps(
        {"name": name, "alg": key.alg, "pk": key.public_key.raw.hex(), "pop": pop.hex(),
         "address": key.address.hex(), "chain_id": genesis.chain_id}, indent=2) + "\n")
    return d


JOIN_MAX_BYTES = 64 * 1024  # a name, an ML-DSA public key and its proof: a few KB


def read_join(path: Path) -> dict[str, Any]:
    """The ``governance/propose_add_validator`` body from a ``join.json`` (at most
    ``JOIN_MAX_BYTES``; ``FileTooLarge`` past it)."""
    j = json.loads(read_bounded(path, JOIN_MAX_BYTES, "join.json"))
    try:
        return {"alg": str(j["alg"]), "pk": bytes.fromhex(j["pk"]), "name": str(j["name"]),
                "pop": bytes.fromhex(j["pop"])}
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a join.json (alg, pk, name, pop): {exc}") from exc
