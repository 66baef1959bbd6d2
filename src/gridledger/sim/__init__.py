"""Scenario engine: communities, agents, attacks, metrics and reports."""
