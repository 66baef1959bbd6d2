"""Vote counting: the tally of one height, and the board of votes a validator process reads
from its orderer's vote channel.

Anyone who may publish on a shared vote channel (every validator may) can put anything
there, so nothing in a vote is taken on trust. A vote signs chain id, height and header hash
(``ledger.block.vote_message``); its validator index only says which key to check the
signature under. A vote counts, and is evidence against its validator, only if it verifies
under that key for the height it is counted at: a relabelled vote (another height, another
index) verifies under nothing and names nobody. An invalid vote is blamed on the node that
sent it only when the channel says who that was (the embedded network does); on a shared
stream it is counted as unattributed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gridledger.errors import MalformedEncoding
from gridledger.ledger.block import Certificate, Equivocation, Vote, quorum, vote_ok
from gridledger.node.orderer import Orderer

Keys = Sequence[tuple[str, bytes]]


@dataclass
class VoteTally:
    """Votes for one height of one chain, with equivocation and bad-vote detection."""

    n: int
    chain_id: str
    height: int
    by_hash: dict[bytes, dict[int, Vote]] = field(default_factory=dict)
    voted: dict[int, Vote] = field(default_factory=dict)
    evidence: list[Equivocation] = field(default_factory=list)
    offenders: dict[int, str] = field(default_factory=dict)
    unattributed: int = 0
    check: Callable[[Vote, Keys], bool] = field(default=vote_ok, repr=False, compare=False)

    def add(self, vote: Vote, keys: Keys, source: int | None = None) -> None:
        """Count ``vote`` (verified under ``keys[vote.validator]``); ``source`` is the
        validator it came from, when the channel knows it."""
        if vote.chain_id != self.chain_id or vote.height != self.height:
            self._invalid(source, "vote for another height or chain")
            return
        if not self.check(vote, keys):
            self._invalid(source, "invalid vote signature")
            return
        prev = self.voted.get(vote.validator)
        if prev is not None and prev.header_hash != vote.header_hash:
            self.evidence.append(Equivocation(vote.validator, vote.height, prev, vote))
            self.offenders[vote.validator] = "equivocation"
        self.voted.setdefault(vote.validator, vote)
        self.by_hash.setdefault(vote.header_hash, {})[vote.validator] = vote

    def _invalid(self, source: int | None, why: str) -> None:
        if source is None:
            self.unattributed += 1
        else:
            self.offenders.setdefault(source, why)

    def certificate(self) -> Certificate | None:
        need = quorum(self.n)
        for h in sorted(self.by_hash):
            votes = {i: v for i, v in self.by_hash[h].items()
                     if self.offenders.get(i) != "equivocation"}
            if len(votes) >= need:
                return Certificate.from_votes([votes[i] for i in sorted(votes)])
        return None


@dataclass
class _Height:
    keys: tuple[tuple[str, bytes], ...]
    stop: Callable[[], None] = field(default=lambda: None)
    # validator index -> header hash -> its valid vote; at most two headers per index
    # (two are already equivocation evidence; more prove nothing new)
    votes: dict[int, dict[bytes, Vote]] = field(default_factory=dict)


class VoteBoard:
    """The valid votes of the heights this validator works on, from the vote channel.

    ``open(height, keys)`` starts following a height's votes (the channel delivers those
    stored so far, then new ones); each is decoded strictly and kept only if it is for this
    chain and height and verifies under the key at its index in ``keys`` (the set of that
    height). ``close_below`` stops following older heights. Memory is therefore bounded by
    the open heights × validators × two headers, whatever anyone publishes: votes for
    heights far ahead stay in the channel until the chain gets there, and invalid votes are
    only counted (``rejected``).
    """

    MAX_HEADERS_PER_VALIDATOR = 2

    def __init__(self, orderer: Orderer, chain_id: str) -> None:
        self.orderer = orderer
        self.chain_id = chain_id
        self.rejected = 0  # undecodable, mislabelled or invalid votes seen
        self._heights: dict[int, _Height] = {}
        self._cond = threading.Condition()

    def publish(self, vote: Vote) -> None:
        self.orderer.publish_vote(vote.height, vote.encode())

    def open(self, height: int, keys: Keys) -> None:
        """Follow ``height``'s votes, checked against ``keys`` (idempotent)."""
        with self._cond:
            if height in self._heights:
                return
            slot = self._heights[height] = _Height(tuple(keys))
        try:
            stop = self.orderer.follow_votes(height, lambda data: self._deliver(height, data))
        except BaseException:
            # not following it: forget the height, so the next ``open`` tries again
            with self._cond:
                if self._heights.get(height) is slot:
                    del self._heights[height]
            raise
        with self._cond:
            if self._heights.get(height) is slot:
                slot.stop = stop
                return
        stop()  # closed while we subscribed

    def _deliver(self, height: int, data: bytes) -> None:
        try:
            vote = Vote.decode(data)
        except MalformedEncoding:
            vote = None
        with self._cond:
            slot = self._heights.get(height)
            if slot is None:
                return
            if vote is None or vote.chain_id != self.chain_id or vote.height != height:
                self.rejected += 1
                return
            mine = slot.votes.get(vote.validator, {})
            if vote.header_hash in mine or len(mine) >= self.MAX_HEADERS_PER_VALIDATOR:
                return  # nothing new: a copy, or a third header of a proven equivocator
            keys = slot.keys
        ok = vote_ok(vote, keys)  # outside the lock: ML-DSA verification takes a while
        with self._cond:
            slot = self._heights.get(height)
            if not ok:
                self.rejected += 1
                return
            if slot is None:
                return
            mine = slot.votes.setdefault(vote.validator, {})
            if vote.header_hash not in mine and len(mine) < self.MAX_HEADERS_PER_VALIDATOR:
                mine[vote.header_hash] = vote
                self._cond.notify_all()

    def close_below(self, height: int) -> None:
        """Stop following heights below ``height`` and forget their votes."""
        with self._cond:
            gone = [h for h in self._heights if h < height]
            stops = [self._heights.pop(h).stop for h in gone]
        for stop in stops:
            stop()

    def close(self) -> None:
        self.close_below(2**63)

    def heights(self) -> int:
        """How many heights are followed (memory bound checks)."""
        with self._cond:
            return len(self._heights)

    def held(self) -> int:
        """How many votes are held in memory (memory bound checks)."""
        with self._cond:
            return sum(len(m) for s in self._heights.values() for m in s.votes.values())

    def votes(self, height: int) -> list[Vote]:
        """The valid votes of an open height (each verified under its index's key)."""
        with self._cond:
            slot = self._heights.get(height)
            if slot is None:
                return []
            return [v for i in sorted(slot.votes) for v in slot.votes[i].values()]

    def wait(self, height: int, pred: Callable[[list[Vote]], bool], timeout_s: float) -> bool:
        """Wait until ``pred(votes(height))`` holds; False on timeout."""
        def ready() -> bool:
            slot = self._heights.get(height)
            votes = [] if slot is None else [v for m in slot.votes.values() for v in m.values()]
            return pred(votes)

        with self._cond:
            return bool(self._cond.wait_for(ready, timeout_s))


def board_check(_vote: Vote, _keys: Keys) -> bool:
    """The ``VoteTally`` check for votes taken from a ``VoteBoard``: the board keeps only
    votes that verified under the key of their index for their height."""
    return True
