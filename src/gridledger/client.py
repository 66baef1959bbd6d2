"""A Python client for the GridLedger HTTP API that signs locally and submits.

    client = Client("http://127.0.0.1:8080", key)
    receipt = client.transfer(to=addr, amount_micro=1_000, wait=True)
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from gridledger.crypto.sig import SigningKey
from gridledger.errors import RejectedTx
from gridledger.ledger.tx import sign_tx


class ApiRejected(RejectedTx):
    """The node rejected the transaction; ``rule`` is the rule it named."""

    def __init__(self, rule: str, detail: str, status: int) -> None:
        self.rule = rule
        self.status = status
        super().__init__(detail)


class NotCommitted(TimeoutError):
    """The node accepted the transaction, but no receipt came within the wait: it may still
    commit (a network without a quorum commits nothing until one is back)."""

    def __init__(self, tx_hash: str, timeout_s: float) -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} accepted but not committed in {timeout_s:g} s")


class Client:
    def __init__(self, base_url: str, key: SigningKey | None = None,
                 http: httpx.Client | None = None, timeout_s: float = 10.0) -> None:
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout_s)
        self.key = key
        self._chain_id: str | None = None
        self._nonce: int | None = None

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str(self.status()["chain_id"])
        return self._chain_id

    def _get(self, path: str) -> Any:
        r = self.http.get(path)
        if r.status_code >= 400:
            body = r.json()
            raise ApiRejected(body.get("rule", "error"), body.get("detail", ""), r.status_code)
        return r.json()

    def status(self) -> dict[str, Any]:
        return dict(self._get("/v1/status"))

    def account(self, address: bytes) -> dict[str, Any]:
        return dict(self._get(f"/v1/accounts/{address.hex()}"))

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        r = self.http.get(f"/v1/tx/{tx_hash}")
        return None if r.status_code == 404 else dict(r.json())

    def submit_raw(self, raw: bytes) -> dict[str, Any]:
        r = self.http.post("/v1/tx", content=raw, headers={"content-type": "application/cbor"})
        body = r.json()
        if r.status_code >= 400:
            raise ApiRejected(body.get("rule", "error"), body.get("detail", ""), r.status_code)
        return dict(body)

    def send(self, kind: str, body: dict[str, Any], wait: bool = False,
             timeout_s: float = 30.0) -> dict[str, Any]:
        """Sign ``kind``/``body`` with the client's key at its next nonce and submit it."""
        if self.key is None:
            raise ValueError("this client has no signing key")
        if self._nonce is None:
            self._nonce = int(self.account(self.key.address)["nonce"])
        raw = sign_tx(self.key, self.chain_id, self._nonce, kind, body)
        accepted = self.submit_raw(raw)
        self._nonce += 1
        if not wait:
            return accepted
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rec = self.receipt(accepted["tx_hash"])
            if rec is not None:
                return rec
            time.sleep(0.05)
        raise NotCommitted(accepted["tx_hash"], timeout_s)

    def transfer(self, to: bytes, amount_micro: int, wait: bool = False,
                 timeout_s: float = 30.0) -> dict[str, Any]:
        return self.send("bank/transfer", {"to": to, "amount_micro": amount_micro}, wait=wait,
                         timeout_s=timeout_s)

    # -- validator-set governance (senders must be validators in the active set) --------
    def validators(self) -> dict[str, Any]:
        """The active validator set, its quorum and the open validator-set proposals."""
        return dict(self._get("/v1/validators"))

    def propose_add_validator(self, join: dict[str, Any], wait: bool = False,
                              timeout_s: float = 30.0) -> dict[str, Any]:
        """``join``: ``{alg, pk, name, pop}`` (see ``gridledger.node.network_files.read_join``)."""
        body = {k: join[k] for k in ("alg", "pk", "name", "pop")}
        return self.send("governance/propose_add_validator", body, wait=wait, timeout_s=timeout_s)

    def propose_remove_validator(self, validator: bytes, evidence: dict[str, Any] | None = None,
                                 wait: bool = False, timeout_s: float = 30.0) -> dict[str, Any]:
        body: dict[str, Any] = {"validator": validator}
        if evidence is not None:
            body["evidence"] = evidence
        return self.send("governance/propose_remove_validator", body, wait=wait,
                         timeout_s=timeout_s)

    def vote_validator(self, proposal: int, wait: bool = False,
                       timeout_s: float = 30.0) -> dict[str, Any]:
        return self.send("governance/vote_validator", {"proposal": proposal}, wait=wait,
                         timeout_s=timeout_s)
