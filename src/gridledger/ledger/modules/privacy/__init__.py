"""Privacy on the ledger: pseudonymous trading with threshold identity escrow, and secure
aggregation results (docs/privacy.md, THREATS.md rows 3, 5, 8, 13).

Flow per epoch (``epoch_slots`` slots, e.g. a day):

1. ``privacy/join {epoch, tickets}`` — a member locks ``tickets x allowance`` in the epoch's
   pool, publicly (the anonymity set is everyone who joined). The ticket cap follows the
   member's reputation tier: full when good, half on watch, none when restricted/suspended.
2. Off the ledger the member makes one pseudonym per ticket (``privacy.create_pseudonym``:
   fresh ML-DSA key, identity escrowed under k-of-n ML-KEM-sealed Shamir shares) and sends
   the requests to the trustees, who check them without learning the identity and sign
   the Merkle root of the epoch's batch: ``privacy/certify {epoch, root, count,
   endorsements}`` (count <= tickets sold).
3. ``privacy/register {root, leaves}`` — anyone relays pseudonyms with Merkle paths; each
   gets the allowance from the pool, a stand-in connection point ``ps:<addr>``, and may
   trade and post ``privacy/reading`` only in its slots. Settlement runs as for everyone.
4. After the epoch's last settlement + ``close_delay_s``: balances go back to the pool; each
   member sends ``privacy/claim {epoch, amount_micro}`` = deposit - allowances drawn +
   its pseudonyms' final balances. If the claims add up to the pool, all are paid.
   Otherwise the pool is frozen and a ``pool`` dispute is recorded; trustees open every
   pseudonym of the epoch, the true dues are paid and over-claimers sanctioned.
5. Openings: only for a dispute recorded on the ledger — a decided trade dispute lost by a
   pseudonym (``privacy/request_opening``), a pool dispute, or a feeder whose pseudonymous
   readings disagree with the secure aggregate. The escrow is posted
   (``privacy/escrow``), each trustee posts its share (``privacy/release``); k shares open
   it, and the ``identity_opened`` event names the dispute and the trustees. The owner
   then takes the dispute's sanction and the reputation its pseudonym lost.
6. ``privacy/partial {slot, feeder, inclusion, included, value}`` — each aggregator's
   partial sum; at the settlement deadline the validators decode the feeder total
   (Reed-Solomon: a wrong partial is rejected and its aggregator named) and compare it
   with the readings settlement used.
7. EV roaming (``roaming.py``): ``privacy/roaming_charge {commitment, account, billing_sig,
   energy_wh, price_micro_per_kwh, amount_micro, foreign_community, foreign_dso}`` by the
   home DSO after it checked a foreign DSO's claim off the ledger
   (``privacy.roaming.settle_roaming_claim``): the member's signature over the salted
   certificate commitment from its billing token authorises the debit; the foreign DSO
   must be in genesis ``privacy.roaming_partners``; one charge per authorisation; the
   money goes to the grid account, which owes the foreign DSO.

State (``pv/``): config, epochs, tickets, batches, pseudonyms, claims, disputes, escrows,
releases, openings, partials, aggregates, roaming charges and what is owed to partners.
"""

from gridledger.ledger.modules.privacy.module import MODULE

__all__ = ["MODULE"]
