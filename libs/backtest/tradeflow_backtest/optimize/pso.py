"""Particle swarm optimisation as an Optuna sampler whose swarm lives in the study, not in a process.

Why our own (docs/adr/0021): OptunaHub's ``samplers/pso`` keeps the swarm in the sampler
object and moves it in ``after_trial``, which Optuna calls only in the process that ran the
trial; with several workers (processes or machines) sharing one study each would fly its own
swarm over a fraction of the trials, and an interrupted run would restart the swarm from
nothing. It is also loaded from GitHub at run time (``optunahub.load_module``), which a
worker without internet access cannot do. This sampler instead derives everything from the
stored trials, so any number of workers and any restart see the same swarm:

- trial number ``n`` belongs to particle ``n mod swarm_size`` (trial numbers are unique in a
  study, whichever worker took them);
- a particle's position is its newest complete trial, its velocity the step from the one
  before, its personal best its best complete trial; the global best is the study's best;
- the next position is ``x + v'`` with
  ``v' = inertia * v + cognitive * r1 * (pbest - x) + social * r2 * (gbest - x)`` in the unit
  box of the numeric parameters (log scales in log space), clipped to it, ``r1, r2`` uniform
  from a generator seeded by (seed, trial number); a particle that would not move gets a small
  random velocity so a converged swarm keeps probing around the best;
- a particle without a complete trial yet starts at a uniformly random position.

Particles move asynchronously (as soon as their own previous trial is complete), the usual
form of PSO for parallel evaluation. Categorical parameters are not part of the swarm: they
are drawn at random for each trial. Trials that did not complete (pruned: a parameter rule or
too few trades) do not move their particle; the next trial of that particle draws new ``r1, r2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

RESTART_SPEED = 0.05  # of the box's width: how far a particle that stopped is nudged


class ParticleSwarmSampler(BaseSampler):
    def __init__(self, search_space: dict[str, BaseDistribution], *, swarm_size: int = 10, inertia: float = 0.7,
                 cognitive: float = 1.5, social: float = 1.5, seed: int | None = None) -> None:
        if swarm_size < 1:
            raise ValueError(f"swarm_size must be at least 1, got {swarm_size}")
        self.swarm_size = swarm_size
        self.inertia, self.cognitive, self.social = inertia, cognitive, social
        self._numeric = {name: d for name, d in search_space.items() if isinstance(d, FloatDistribution | IntDistribution)}
        self._seed = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**32)
        self._random = RandomSampler(seed=self._seed)

    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().entropy % 2**32)
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._numeric)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, float | int]:
        if not search_space:
            return {}
        if len(study.directions) != 1:
            raise ValueError("the particle swarm sampler optimises one objective")
        names = list(search_space)
        maximise = study.direction == StudyDirection.MAXIMIZE
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if all(name in t.params for name in names)]
        particle = trial.number % self.swarm_size
        own = sorted((t for t in complete if t.number % self.swarm_size == particle and t.number < trial.number),
                     key=lambda t: t.number)
        rng = np.random.default_rng([self._seed, trial.number])
        if not own:
            return self._decode(rng.random(len(names)), search_space)
        x = self._encode(own[-1], search_space)
        velocity = x - self._encode(own[-2], search_space) if len(own) > 1 else np.zeros(len(names))
        pick = max if maximise else min
        personal = self._encode(pick(own, key=_value), search_space)
        best = self._encode(pick(complete, key=_value), search_space)
        r1, r2 = rng.random(len(names)), rng.random(len(names))
        velocity = (self.inertia * velocity + self.cognitive * r1 * (personal - x) + self.social * r2 * (best - x))
        if np.allclose(velocity, 0.0, atol=1e-12):
            velocity = rng.normal(0.0, RESTART_SPEED, len(names))
        return self._decode(np.clip(x + velocity, 0.0, 1.0), search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    # --- the unit box ------------------------------------------------------------------------------

    @staticmethod
    def _encode(trial: FrozenTrial, space: dict[str, BaseDistribution]) -> np.ndarray:
        return np.array([_to_unit(trial.params[name], d) for name, d in space.items()])

    @staticmethod
    def _decode(position: Sequence[float], space: dict[str, BaseDistribution]) -> dict[str, float | int]:
        return {name: _from_unit(float(u), d) for u, (name, d) in zip(position, space.items(), strict=True)}


def _value(trial: FrozenTrial) -> float:
    return float(trial.value)


def _to_unit(value: float, d: FloatDistribution | IntDistribution) -> float:
    low, high, value = float(d.low), float(d.high), float(value)
    if d.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return 0.0 if high == low else (value - low) / (high - low)


def _from_unit(u: float, d: FloatDistribution | IntDistribution) -> float | int:
    low, high = float(d.low), float(d.high)
    if d.log:
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        value = low + u * (high - low)
    if isinstance(d, IntDistribution):
        step = d.step or 1
        return int(min(d.high, max(d.low, d.low + round((value - d.low) / step) * step)))
    if d.step is not None:
        k = round((value - low) / d.step)
        return float(min(high, max(low, low + k * d.step)))
    return float(min(high, max(low, value)))
