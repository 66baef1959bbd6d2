"""kill -9 at arbitrary instants during commits: restart loses no committed block and all
validators reach the same state root."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.store import BlockStore
from gridledger.node.verify import verify_dir
from tests.conftest import make_chain

ROOT = Path(__file__).resolve().parents[2]


def _tips(d):
    tips = []
    for p in sorted(d.glob("validator-*.sqlite")):
        s = BlockStore(p)
        tips.append(s.tip())
        s.close()
    return tips


@pytest.mark.integration
def test_kill_minus_nine_during_commit_then_restart(tmp_path):
    d = tmp_path / "ledger"
    committed_before_kill = 0
    for round_, delay in enumerate((0.3, 0.55, 0.8)):
        proc = subprocess.Popen([sys.executable, "-m", "tests.node.crash_worker", str(d)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        # wait until this incarnation commits a few blocks, then kill it mid-stream
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line and int(line) >= committed_before_kill + 3:
                break
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        tips = _tips(d)
        assert min(tips) >= committed_before_kill  # nothing committed was lost
        reports = verify_dir(d)
        assert all(r.ok for r in reports), [(r.path.name, r.reason) for r in reports]
        committed_before_kill = max(tips)
    # a final restart in-process: laggards catch up, all agree, and the chain goes on
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, d)
    assert net.height >= committed_before_kill
    assert len(set(net.state_roots())) == 1
    for u in chain.users:
        chain.nonces[u.address] = net.entry.app.query(f"nonce/{u.address.hex()}")
    net.submit(chain.transfer(0, 1, 3))
    fbs = net.tick(10**7)
    assert fbs and fbs[-1].result.receipts[0].ok
    assert len(set(net.state_roots())) == 1
    net.close()
    assert all(r.ok for r in verify_dir(d))
