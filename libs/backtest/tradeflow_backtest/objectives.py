"""What an optimisation maximises: a named metric or an arithmetic expression over the metrics.

Names: ``sharpe``, ``sortino``, ``calmar``, ``return`` (the total return). Anything else is an
expression over the metrics of :class:`~tradeflow_backtest.metrics.Metrics` (``total_return``,
``cagr``, ``sharpe``, ``sortino``, ``calmar``, ``max_drawdown``, ``max_drawdown_duration_s``,
``win_rate``, ``profit_factor``, ``exposure``, ``trades``), e.g.
``sharpe * (1 - max_drawdown)`` or ``cagr / max(max_drawdown, 0.05)``. The objective is always
maximised (write ``-max_drawdown`` to minimise a drawdown).

Expressions are never ``eval``-ed: the text is parsed, only numbers, metric names, arithmetic
(``+ - * / ** %``), comparisons, ``and``/``or``/``not``, ``x if c else y`` and the functions
``abs min max sqrt log exp`` are accepted (anything else is refused when the command starts,
naming what), and the tree is evaluated by simpleeval with those names and functions only.

A trial whose objective is undefined (a metric it needs is null: no trades, no variation;
a division by zero; not a finite number) has no value: the optimiser records why and moves on.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simpleeval import SimpleEval

from tradeflow_backtest.metrics import Metrics

NAMED = {"sharpe": "sharpe", "sortino": "sortino", "calmar": "calmar", "return": "total_return"}
METRIC_NAMES = tuple(Metrics.__dataclass_fields__)
FUNCTIONS = {"abs": abs, "min": min, "max": max, "sqrt": math.sqrt, "log": math.log, "exp": math.exp}
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.Name,
                  ast.Load, ast.Constant, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)


class ObjectiveError(ValueError):
    """An objective that cannot be used; the text says what is wrong in it."""


@dataclass(frozen=True, slots=True)
class Objective:
    """``text`` as given; ``value(metrics)`` is the number to maximise, or None when undefined."""

    text: str
    tree: ast.Expression

    def value(self, metrics: Metrics | Mapping[str, Any]) -> float | None:
        values = metrics.as_dict() if isinstance(metrics, Metrics) else dict(metrics)
        needed = {node.id for node in ast.walk(self.tree) if isinstance(node, ast.Name)} - set(FUNCTIONS)
        if any(values.get(name) is None for name in needed):
            return None
        evaluator = SimpleEval(names={name: values[name] for name in needed}, functions=FUNCTIONS)
        try:
            result = evaluator.eval(self.text, previously_parsed=self.tree.body)
        except (ZeroDivisionError, OverflowError, ValueError, TypeError):
            return None
        if isinstance(result, bool) or not isinstance(result, int | float) or not math.isfinite(result):
            return None
        return float(result)


def parse_objective(text: str) -> Objective:
    """A named objective or a checked expression (see the module docstring)."""
    source = NAMED.get(text.strip(), text.strip())
    if not source:
        raise ObjectiveError("empty objective")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ObjectiveError(f"not an expression: {exc.msg} at column {exc.offset}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ObjectiveError(f"{type(node).__name__} is not allowed in an objective "
                                 "(numbers, metric names, arithmetic, comparisons and "
                                 f"{', '.join(FUNCTIONS)} only)")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or not isinstance(node.value, int | float)):
            raise ObjectiveError(f"only numbers are allowed as constants, got {node.value!r}")
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS
                                           or node.keywords):
            raise ObjectiveError(f"only the functions {', '.join(FUNCTIONS)} may be called")
        if isinstance(node, ast.Name) and node.id not in METRIC_NAMES and node.id not in FUNCTIONS:
            raise ObjectiveError(f"unknown name {node.id!r}; metrics: {', '.join(METRIC_NAMES)} "
                                 f"(or one of {', '.join(NAMED)})")
    return Objective(source, tree)
