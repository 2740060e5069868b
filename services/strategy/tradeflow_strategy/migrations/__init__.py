"""The strategy service's tables (revisions in versions/, one chain with every service's: ADR 0012)."""
