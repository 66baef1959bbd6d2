"""Validators hosted in a worker process (issue 17) behave as in-process ones: they execute
and vote on every block themselves, are named when faulty, crash and catch up, install a
release their operator reviews, and their stores verify — with the same state roots as a
network that runs every validator in one process."""

import pytest

from gridledger.errors import BlockError
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.validator_host import HostedValidator
from gridledger.node.verify import verify_dir
from tests.conftest import make_chain


def _drive(net, chain, blocks, start=0):
    out = []
    for b in range(start, start + blocks):
        net.submit(chain.transfer(b % 6, (b + 2) % 6, 100 + b), now_s=b)
        net.submit(chain.transfer((b + 1) % 6, (b + 3) % 6, 7), now_s=b)
        out += net.tick(900 * (b + 1))
    return out


def test_hosted_validators_reach_the_same_roots_and_stores_verify(tmp_path):
    chain = make_chain()
    local = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "local", snapshot_every=2)
    _drive(local, chain, 5)
    local_roots = local.state_roots()
    local.close()
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "hosted", snapshot_every=2,
                          hosted=(2, 3))
    assert [type(v).__name__ for v in net.validators] == ["Validator", "Validator",
                                                         "HostedValidator", "HostedValidator"]
    blocks = _drive(net, chain, 5)
    # each block certified with the hosted validators' own votes
    assert all({2, 3} <= set(dict(fb.cert.votes)) for fb in blocks)
    assert net.state_roots() == local_roots and len(set(local_roots)) == 1
    assert net.validators[3].height == net.height == 5
    net.close()
    assert [r.ok and r.blocks == 5 for r in verify_dir(tmp_path / "hosted")] == [True] * 4


def test_a_faulty_hosted_validator_is_named_and_a_crashed_one_catches_up(tmp_path):
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, hosted=(2, 3))
    _drive(net, chain, 2)
    net.validators[3].fault = "wrong-root"          # what the byzantine-validator scenario does
    blocks = _drive(net, chain, 2, start=2)
    assert all(3 in fb.offenders and 3 not in dict(fb.cert.votes) for fb in blocks)
    net.validators[3].fault = None
    net.crash(2)
    # an operator installs a release on every node, the crashed one too (contract-bug's
    # proposal during the crash window of a short run): no error, nothing to install there
    from gridledger.sim.releases import FAULTY_BANK

    for v in net.validators:
        v.app.install_release(FAULTY_BANK)
    _drive(net, chain, 2, start=4)                   # certified by 0, 1, 3
    restarted = net.restart(2)
    assert isinstance(restarted, HostedValidator) and restarted.height == net.height == 6
    blocks = _drive(net, chain, 1, start=6)
    assert set(dict(blocks[0].cert.votes)) == {0, 1, 2, 3}
    assert len(set(net.state_roots())) == 1
    # an operator's tools read the hosted validator's own store (read-only here)
    assert net.validators[2].store.tip() == 7
    net.close()
    reports = verify_dir(tmp_path)
    assert all(r.ok for r in reports)


def test_a_hosted_validator_installs_a_release_and_bad_input_is_refused(tmp_path):
    from gridledger.sim.releases import FAULTY_BANK

    chain = make_chain()
    with pytest.raises(ValueError, match="entry"):
        EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "x", hosted=(0,))
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, hosted=(1,))
    v = net.validators[1]
    v.app.install_release(FAULTY_BANK)               # a keeper holding a module travels by name
    assert v.app.catalog.declaration_digest is not None
    assert net.host is not None
    with pytest.raises(BlockError, match="validator host"):
        net.host.call("state", 99)                   # an error there is named here
    _drive(net, chain, 1)
    net.close()


def test_hosted_validators_are_sent_a_block_to_store_before_this_process_stores_its_own(
        tmp_path, monkeypatch):
    """The host writes its validators' stores (no reply awaited) while this process writes
    its own: it is told first (issue 17, twelfth session); the roots and stores as before."""
    from gridledger.node.validator import Validator

    order = []
    for cls in (Validator, HostedValidator):
        def spy(self, cert, _orig=cls.finalize):
            order.append(self.index)
            return _orig(self, cert)
        monkeypatch.setattr(cls, "finalize", spy)
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, hosted=(2, 3))
    _drive(net, chain, 2)
    assert order == [2, 3, 0, 1] * 2 and len(set(net.state_roots())) == 1
    net.close()
    assert all(r.ok and r.blocks == 2 for r in verify_dir(tmp_path))


def test_a_block_goes_to_the_host_once_and_each_hosted_validator_executes_it(
        tmp_path, monkeypatch):
    """Issue 17 (thirteenth session): the second hosted validator's request names the block
    the host was just sent instead of carrying it again; each validator there still checks
    and executes it itself (its own vote on its own header), and a wrong-root fault on the
    second one is still its own."""
    from gridledger.node.validator_host import ValidatorHost

    sent = []
    real = ValidatorHost.send

    def spy(self, *msg, **kw):
        if msg[0] in ("execute", "execute_last"):
            sent.append((msg[0], msg[1]))
        return real(self, *msg, **kw)

    monkeypatch.setattr(ValidatorHost, "send", spy)
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, hosted=(2, 3))
    blocks = _drive(net, chain, 2)
    assert sent == [("execute", 2), ("execute_last", 3)] * 2
    assert all({2, 3} <= set(dict(fb.cert.votes)) for fb in blocks)
    net.validators[3].fault = "wrong-root"
    blocks = _drive(net, chain, 1, start=2)
    assert 3 in blocks[0].offenders and 2 not in blocks[0].offenders
    net.validators[3].fault = None
    _drive(net, chain, 1, start=3)
    assert len(set(net.state_roots())) == 1
    net.close()
    assert all(r.ok and r.blocks == 4 for r in verify_dir(tmp_path))
    # the host refuses to execute again before any block was sent
    host = ValidatorHost()
    try:
        with pytest.raises(BlockError, match="no block was sent"):
            host.call("execute_last", 2, None)
    finally:
        host.close()


def test_the_host_opens_its_validators_while_the_caller_opens_its_own(tmp_path, monkeypatch):
    """Issue 17 (fifteenth session): the hosted validators' ``open`` requests go first and,
    for new stores, their replies are read with the first reply wanted (here: their first
    height), so the host starts up (its imports) and opens them while this process opens its
    own and goes on — the caller waited ~0.5-0.8 s for the host before. Over existing stores
    (a restart: catch-up first) a host that cannot open a validator is an error of the
    network's construction, naming the host's failure."""
    from gridledger.node.validator import Validator
    from gridledger.node.validator_host import ValidatorHost

    events = []
    real_send, real_init = ValidatorHost.send, Validator.__init__

    def send(self, *msg, **kw):
        events.append(msg[:2])
        return real_send(self, *msg, **kw)

    def init(self, index, *a, **kw):
        events.append(("local", index))
        return real_init(self, index, *a, **kw)

    monkeypatch.setattr(ValidatorHost, "send", send)
    monkeypatch.setattr(Validator, "__init__", init)
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "net", hosted=(2, 3))
    assert events[:4] == [("open", 2), ("open", 3), ("local", 0), ("local", 1)]
    assert len(net.host._unread) == 2   # not waited for
    assert [v.height for v in net.validators] == [0, 0, 0, 0]
    assert len({v.last_hash for v in net.validators}) == 1
    _drive(net, chain, 2)
    assert net.validators[2].height == net.validators[3].height == 2
    assert len(set(net.state_roots())) == 1
    net.close()
    monkeypatch.undo()
    # the host's store path is a file's child: its open fails there, raised here
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "validator-3.sqlite").mkdir()
    chain = make_chain()
    with pytest.raises(BlockError, match="validator host"):
        EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "bad", hosted=(2, 3))


def test_lazy_and_then_replies_are_read_in_order_before_an_asked_one():
    """``ValidatorHost.recv`` reads the replies of lazy and ``then`` requests sent before
    the asked one first, in order; ``flush`` reads them without waiting for any asked one."""
    from gridledger.node.validator_host import ValidatorHost

    host = ValidatorHost()
    try:
        got = []
        host.send("execute_last", 2, None, then=got.append)   # refused: no block sent
        with pytest.raises(BlockError, match="no block was sent"):
            host.flush()
        chain = make_chain()
        host.send("open", 2, chain.validators[2].alg, chain.validators[2].seed,
                  chain.genesis.encode(), ":memory:", None, 50, False, then=got.append)
        host.send("state", 2, lazy=True)
        assert host.call("state", 2)[0] == 0 and len(got) == 1 and got[0][0] == 0
        host.send("state", 2, then=got.append)
        host.flush()
        assert len(got) == 2 and got[1][0] == 0
    finally:
        host.close()
