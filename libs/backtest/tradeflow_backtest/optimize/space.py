"""The search space of an optimisation: the strategy's declared parameters, narrowed by the user.

A strategy declares each parameter's type and its widest range (``Strategy.search_space()``,
:class:`~tradeflow_trading.strategy.params.Dimension`); those ranges are what the strategy
accepts, usually far wider than worth searching (``sma_cross``'s ``fast`` goes to 10,000). The
command narrows them with ``--space``::

    {"fast": {"low": 5, "high": 50, "step": 5}, "slow": {"low": 20, "high": 200}, "mode": {"choices": ["a", "b"]}}

Bounds must be values the strategy accepts (checked by the declared parameter, so an error
names it). Parameters fixed with ``--params`` are not searched; every other declared parameter
is, over ``--space`` or its declared range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from optuna import Trial
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from tradeflow_trading.strategy.params import Dimension, Param, ParameterError

MAX_GRID_POINTS = 1_000_000


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """The searched dimensions, in declaration order."""

    dimensions: tuple[Dimension, ...]

    @classmethod
    def of(cls, declared: Mapping[str, Param], fixed: Mapping[str, Any],
           overrides: Mapping[str, Any] | None = None) -> SearchSpace:
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise ParameterError(unknown[0], f"not a parameter of this strategy (known: {', '.join(declared)})")
        both = sorted(set(overrides) & set(fixed))
        if both:
            raise ParameterError(both[0], "given both in --params (fixed) and in --space (searched)")
        dims = []
        for name, param in declared.items():
            if name in fixed:
                continue
            dimension = param.dimension()
            if name in overrides:
                dimension = _narrowed(param, dimension, overrides[name])
            dims.append(dimension)
        if not dims:
            raise ParameterError("params", "every parameter is fixed: nothing to search")
        return cls(tuple(dims))

    def suggest(self, trial: Trial) -> dict[str, Any]:
        """This trial's values, asked of its sampler."""
        values: dict[str, Any] = {}
        for d in self.dimensions:
            if d.kind == "choice":
                values[d.name] = trial.suggest_categorical(d.name, list(d.choices))
            elif d.kind == "int":
                values[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
            else:
                values[d.name] = trial.suggest_float(d.name, float(d.low), float(d.high), step=d.step, log=d.log)
        return values

    def distributions(self) -> dict[str, BaseDistribution]:
        return {d.name: _distribution(d) for d in self.dimensions}

    def grid(self) -> dict[str, list[Any]]:
        """Every value of each dimension, for grid search (floats need a step)."""
        values: dict[str, list[Any]] = {}
        for d in self.dimensions:
            if d.kind == "choice":
                values[d.name] = list(d.choices)
            elif d.kind == "int":
                values[d.name] = list(range(int(d.low), int(d.high) + 1, int(d.step or 1)))
            else:
                if not d.step:
                    raise ParameterError(d.name, "grid search needs a step for a float parameter (give one in --space)")
                count = int(math.floor((d.high - d.low) / d.step + 1e-9)) + 1
                values[d.name] = [round(d.low + k * d.step, 12) for k in range(count)]
        if math.prod(len(v) for v in values.values()) > MAX_GRID_POINTS:
            raise ParameterError(self.dimensions[0].name, f"the grid has more than {MAX_GRID_POINTS:,} points: "
                                 "narrow it with --space (low, high, step)")
        return values

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


def _distribution(d: Dimension) -> BaseDistribution:
    if d.kind == "choice":
        return CategoricalDistribution(list(d.choices))
    if d.kind == "int":
        return IntDistribution(int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
    return FloatDistribution(float(d.low), float(d.high), step=d.step, log=d.log)


def _narrowed(param: Param, dimension: Dimension, given: Any) -> Dimension:
    if not isinstance(given, Mapping):
        raise ParameterError(param.name, f"--space wants an object like {{\"low\": .., \"high\": ..}} or "
                             f"{{\"choices\": [..]}}, got {given!r}")
    allowed = {"choices"} if dimension.kind == "choice" else {"low", "high", "step", "log"}
    extra = sorted(set(given) - allowed)
    if extra:
        raise ParameterError(param.name, f"--space key {extra[0]!r} does not apply (use {', '.join(sorted(allowed))})")
    if dimension.kind == "choice":
        choices = tuple(param.validate(c) for c in given.get("choices", dimension.choices))
        if not choices:
            raise ParameterError(param.name, "--space needs at least one choice")
        return replace(dimension, choices=choices)
    low = param.validate(given.get("low", dimension.low))
    high = param.validate(given.get("high", dimension.high))
    if low > high:
        raise ParameterError(param.name, f"--space low {low} is above high {high}")
    step = given.get("step", dimension.step)
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0
                             or (dimension.kind == "int" and not float(step).is_integer())):
        raise ParameterError(param.name, f"--space step must be a positive {'integer' if dimension.kind == 'int' else 'number'}"
                             f", got {step!r}")
    log = bool(given.get("log", dimension.log))
    if log and (low <= 0 or (step not in (None, 1) and dimension.kind == "int") or
                (dimension.kind == "float" and step is not None)):
        raise ParameterError(param.name, "a log scale needs low > 0 and no step")
    if dimension.kind == "int":
        step = int(step or 1)
        high = low + (high - low) // step * step  # Optuna wants high on the grid of low + k * step
    return replace(dimension, low=low, high=high, step=step, log=log)
