"""The search methods of ``tradeflow optimize --sampler``: Optuna's samplers and our particle swarm.

Each worker gets its own sampler; with ``--seed`` the worker's index is added to the seed, so
workers of one study explore different points and a one-worker run is reproducible.
"""

from __future__ import annotations

import optuna

from tradeflow_backtest.optimize import SAMPLERS
from tradeflow_backtest.optimize.pso import ParticleSwarmSampler
from tradeflow_backtest.optimize.space import SearchSpace


def make_sampler(name: str, space: SearchSpace, *, seed: int | None, worker: int = 0,
                 population: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` over ``space``; ``population`` sizes NSGA-II's generations and
    the swarm (default: Optuna's 50 and 10 particles), CMA-ES's is its own rule."""
    worker_seed = None if seed is None else seed + worker
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=worker_seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=worker_seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=worker_seed, multivariate=True)
    if name == "cmaes":
        # Categorical parameters are outside CMA-ES: drawn at random, without a warning per trial.
        return optuna.samplers.CmaEsSampler(seed=worker_seed, warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=worker_seed, population_size=population or 50)
    if name == "pso":
        return ParticleSwarmSampler(space.distributions(), swarm_size=population or 10, seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
