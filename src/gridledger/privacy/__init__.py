"""Privacy: secure aggregation, differential privacy, pseudonyms with identity escrow, EV roaming.

Pure algorithms (DESIGN.md principle 3): nothing here reads a clock, a file or a socket.
Randomness that must stay secret (shares, masks, DP noise, fresh keys) is drawn at the
meter / aggregator / participant, outside the ledger, from an injected ``RandomBytes``
(``os.urandom`` by default). Verification functions a validator calls are deterministic.
"""
