"""The ``tradeflow`` operator command line (see shared/design.md, "Operator surface")."""
