"""``tradeflow optimize``: parameter search over a strategy's declared parameters with Optuna.

- :mod:`.space`: the searched dimensions (declared, narrowed by ``--space``, minus ``--params``);
- :mod:`.samplers`: grid, random, TPE, CMA-ES, NSGA-II (Optuna) and particle swarm (:mod:`.pso`);
- :mod:`.storage`: the study in PostgreSQL (several machines) or a journal file (one machine);
- :mod:`.runner`: trials as backtests in worker processes, resumable, and the results table.

Walk-forward analysis builds on it (:mod:`tradeflow_backtest.walkforward`). Decisions: docs/adr/0021.
"""

SAMPLERS = ("grid", "random", "tpe", "cmaes", "nsga2", "pso")  # here: `tradeflow --help` lists them without Optuna
