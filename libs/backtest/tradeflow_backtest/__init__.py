"""Tradeflow's backtest engine and research tools.

- :mod:`.engine`, :mod:`.broker`, :mod:`.metrics`, :mod:`.result`, :mod:`.data`: SDK strategies
  over candle history through the shared fill rule (ADR 0017);
- :mod:`.commands` / :mod:`.research`: ``tradeflow backtest``, ``optimize``, ``montecarlo``,
  ``lookahead``; :mod:`.optimize` (Optuna studies), :mod:`.walkforward`, :mod:`.montecarlo`,
  :mod:`.lookahead`, :mod:`.report` (HTML), :mod:`.objectives` (ADR 0021).
"""
