"""Tradeflow strategy service: runs strategy instances live on md.candles.v1 (design.md, "Strategies").

See docs/adr/0020 for how replicas share the markets, warm up and survive crashes.
"""
