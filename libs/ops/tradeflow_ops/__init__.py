"""Operator tooling: the `tradeflow` command core (infra, db, run, demo, topics) and the local infrastructure."""
