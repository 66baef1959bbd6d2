"""Governance: the chain's parameter store and validator-set changes by vote.

State
  ``gov/params``           the non-default parameters, set at genesis from ``genesis["params"]``
                           (see ``types.Params`` for names and defaults); absent when all are
                           default
  ``gov/vs/prop/<id>``     validator-set proposal {id, action add|remove, validator (addr),
                           alg, pk, name, proposer, votes [addr, sorted], created, expires,
                           status open|passed|expired|applied|failed, activation, evidence?};
                           kept after it closes (the history of the set)
  ``gov/vs/open``          ids of open or passed-not-yet-applied proposals, ascending (absent
                           when none, so blocks without governance do no work)
  ``gov/vs/last``          the last proposal id (ids start at 1)
Messages (senders must be in the active validator set, else ``not-validator``)
  ``governance/propose_add_validator``     {alg, pk, name, pop}: ``pop`` is the new key's
      signature over ``types.validator_pop_message(chain_id, name)`` (context
      ``gl/validator-pop``). Rules: ``validator-alg``, ``validator-exists``,
      ``key-registered``, ``proposal-exists``, ``too-many-proposals``, ``bad-pop``.
  ``governance/propose_remove_validator``  {validator, evidence?}: ``evidence`` is stored
      equivocation evidence {height, header_hashes, sigs}, checked against the target's key
      (``bad-evidence``). Rules: ``unknown-validator``, ``last-validator``,
      ``min-validators``, ``proposal-exists``.
  ``governance/vote_validator``  {proposal}: approve. Rules: ``unknown-proposal``,
      ``proposal-expired``, ``proposal-closed``, ``already-voted``.
  The proposal is the proposer's vote. It passes in the block where votes from members of
  the *current* set reach ``quorum(n)`` of it (``ledger.block.quorum``, the quorum blocks
  need); votes of validators removed since no longer count. It takes effect for block
  ``h + 2`` (``types.ACTIVATION_DELAY``), applied at the end of block ``h + 1``. An open
  proposal expires after ``valset_vote_expiry_blocks`` blocks. A removal may never leave
  fewer than ``min_validators`` (default 4 = 3f + 1 with f = 1) nor zero validators,
  counting every change already passed.
Events
  ``validator_proposed`` {proposal, action, validator, name, proposer, expires, needed};
  ``validator_vote`` {proposal, voter, votes, needed};
  ``validator_proposal_passed`` {proposal, action, validator, votes, activation};
  block events ``validator_set_changed`` {proposal, action, validator, name, activation,
  validators, set_hash}, ``validator_proposal_expired`` {proposal, action, validator},
  ``validator_set_change_skipped`` {proposal, action, validator, reason} (a passed change
  that can no longer apply at activation, e.g. the key was registered as a meter meanwhile)
Invariants
  params-valid: the stored parameters parse and pass the cross-parameter rules.
  valset-proposals: the open index lists open/passed proposals in order, and the passed
  changes leave a non-empty set without duplicate addresses or keys.
"""

from gridledger.ledger.modules.governance.keeper import grid_account, load_params
from gridledger.ledger.modules.governance.module import MODULE
from gridledger.ledger.modules.governance.types import Params

__all__ = ["MODULE", "Params", "grid_account", "load_params"]
