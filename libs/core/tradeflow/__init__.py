"""Tradeflow shared code: the contract every service builds on."""
