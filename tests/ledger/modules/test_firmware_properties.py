"""Property: whatever mix of readings, releases, approvals, advisories and patches, the
registry's quarantine of each meter is what an independent model of the rules says, every
rejected patch changes nothing, and the invariants hold after every block."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gridledger.meter import SignedRelease
from gridledger.meter.device import patch_body
from gridledger.meter.vendor import image_hash
from tests.ledger.modules.test_firmware import FwWorld, img, make_fw_world

N_METERS = 3


@dataclass
class Model:
    """The rules, stated directly: per cp its firmware of record and a pending mismatch;
    per version a release status; the advised versions."""

    status: dict[str, str]                        # version -> pending | approved
    image: dict[str, bytes]                       # version -> image hash
    advised: set[str] = field(default_factory=set)
    record: dict[int, bytes] = field(default_factory=dict)
    mismatch: dict[int, bytes] = field(default_factory=dict)
    unknown: bytes = image_hash(b"homebrew")

    def version_of(self, image: bytes) -> str | None:
        return next((v for v, h in self.image.items() if h == image), None)

    def reason(self, i: int) -> str | None:
        if i not in self.record:
            return None
        if i in self.mismatch:
            return "firmware-mismatch"
        v = self.version_of(self.record[i])
        if v is None:
            return "unknown-firmware"
        if self.status[v] != "approved":
            return "unapproved-firmware"
        return "advised-firmware" if v in self.advised else None

    def read(self, i: int, image: bytes) -> None:
        if i not in self.record:
            self.record[i] = image
        elif image != self.record[i]:
            self.mismatch.setdefault(i, image)

    def patch_ok(self, i: int, v: str) -> bool:
        if self.status.get(v) != "approved" or v in self.advised:
            return False
        cur = self.version_of(self.record[i]) if i in self.record else None
        if cur is None:
            return True
        key = lambda s: tuple(int(x) for x in s.split("."))  # noqa: E731
        reinstall = cur == v and i in self.mismatch
        return key(cur) >= key("1.0.0") and (key(v) > key(cur) or reinstall)


VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0")
ops = st.lists(st.one_of(
    st.tuples(st.just("read"), st.integers(0, N_METERS - 1), st.sampled_from((*VERSIONS, "?"))),
    st.tuples(st.just("publish"), st.sampled_from(VERSIONS[2:]), st.just(0)),
    st.tuples(st.just("approve"), st.sampled_from(VERSIONS[2:]),
              st.sets(st.integers(0, 4), min_size=1)),
    st.tuples(st.just("advise"), st.sampled_from(VERSIONS), st.just(0)),
    st.tuples(st.just("patch"), st.integers(0, N_METERS - 1), st.sampled_from(VERSIONS)),
), min_size=1, max_size=14)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_quarantine_follows_the_rules(steps: list[tuple[str, object, object]]) -> None:
    w: FwWorld = make_fw_world(n_users=N_METERS)
    rel: dict[str, SignedRelease] = {"1.0.0": w.base["1.0.0"], "1.1.0": w.base["1.1.0"]}
    for v in VERSIONS[2:]:
        rel[v] = w.acme.sign("AM-1", v, img(f"am1-{v}"), "1.0.0")
    m = Model({"1.0.0": "approved", "1.1.0": "approved"},
              {v: r.manifest.image_sha3 for v, r in rel.items() if v in ("1.0.0", "1.1.0")})
    approvers = [w.dso, *w.validators]
    approvals: dict[str, set[int]] = {}
    n_adv = 0
    for op, a, b in steps:
        if op == "read":
            image = m.unknown if b == "?" else rel[str(b)].manifest.image_sha3
            w.read(int(a), image)  # type: ignore[call-overload]
            m.read(int(a), image)  # type: ignore[call-overload]
        elif op == "publish":
            ok = w.block([w.tx(w.acme.key, "firmware/release", rel[str(a)].body())]).receipts[0].ok
            assert ok == (str(a) not in m.status)
            if ok:
                m.status[str(a)], m.image[str(a)] = "pending", rel[str(a)].manifest.image_sha3
        elif op == "approve":
            v, who = str(a), sorted(b)  # type: ignore[call-overload]
            res = w.block([w.tx(approvers[k], "firmware/approve", {"release": rel[v].release_id})
                           for k in who])
            for k, r in zip(who, res.receipts, strict=True):
                fresh = m.status.get(v) == "pending" and k not in approvals.get(v, set())
                assert r.ok == fresh, (r.rule, v, k)
                if r.ok:
                    got = approvals.setdefault(v, set())
                    got.add(k)
                    if 0 in got and len(got - {0}) >= 3:
                        m.status[v] = "approved"
                        event("a release reached the quorum")
        elif op == "advise":
            n_adv += 1
            w.ok([w.tx(w.acme.key, "firmware/advisory",
                       w.acme.advisory_body(f"A-{n_adv}", "AM-1", [str(a)], "high"))])
            m.advised.add(str(a))
        else:
            i, v = int(a), str(b)  # type: ignore[call-overload]
            r = w.block([w.tx(w.meters[i], "firmware/patch",
                              patch_body(rel[v], rel[v].manifest.image_sha3))]).receipts[0]
            assert r.ok == m.patch_ok(i, v), (r.rule, i, v, m)
            event(f"patch {'accepted' if r.ok else 'rejected: ' + r.rule}")
            if r.ok:
                m.record[i] = rel[v].manifest.image_sha3
                m.mismatch.pop(i, None)
        for i in range(N_METERS):
            assert w.reason(i) == m.reason(i), (i, steps)
    listed = {q["cp"] for q in w.app.query("firmware/quarantined")}
    assert listed == {f"cp{i}" for i in range(N_METERS) if m.reason(i) is not None}
