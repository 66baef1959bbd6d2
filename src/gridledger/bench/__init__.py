"""Benchmarks runnable as ``gridledger bench NAME``.

Each module ``gridledger.bench.NAME`` exposes ``run(quick: bool = False) -> dict``: it measures
GridLedger and its baseline/peer side by side in the same process and returns one JSON-able
object (snake_case keys with units). ``benchmarks/test_NAME.py`` runs the quick variant.
"""
