"""Declared strategy parameters: validation errors that name the parameter, schema, search space."""

from __future__ import annotations

import pytest
from tradeflow_trading.strategies.rsi import Rsi
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategies.sma_cross_trend import SmaCrossTrend
from tradeflow_trading.strategy import (
    ChoiceParam,
    Decisions,
    Dimension,
    FloatParam,
    IntParam,
    ParameterError,
    VectorStrategy,
)


@pytest.mark.parametrize(("params", "parameter", "message"), [
    ({"fast": 10.5}, "fast", "must be an integer, got 10.5"),
    ({"fast": True}, "fast", "must be an integer, got True"),
    ({"fast": "10"}, "fast", "must be an integer, got '10'"),
    ({"fast": 0}, "fast", "must be between 1 and 10000, got 0"),
    ({"slow": 10_001}, "slow", "must be between 2 and 10000, got 10001"),
    ({"fast": 30, "slow": 30}, "fast", "must be less than slow (30), got 30"),
    ({"fats": 5}, "fats", "unknown parameter (known: fast, slow)"),
])
def test_sma_cross_refuses_bad_parameters_naming_them(params, parameter, message):
    with pytest.raises(ParameterError) as error:
        SmaCross(params)
    assert error.value.parameter == parameter
    assert error.value.message == message
    assert str(error.value) == f"parameter {parameter!r}: {message}"


def test_floats_choices_and_cross_rules_are_checked():
    with pytest.raises(ParameterError, match="'lower': must be less than upper") as error:
        Rsi({"lower": 80})
    assert error.value.parameter == "lower"
    with pytest.raises(ParameterError, match="'upper': must be a number, got 'high'"):
        Rsi({"upper": "high"})
    with pytest.raises(ParameterError, match="'upper': must be finite"):
        Rsi({"upper": float("nan")})
    with pytest.raises(ParameterError, match="'trend_timeframe': must be one of '1h', '4h', '1d', '1w', got '2w'"):
        SmaCrossTrend({"trend_timeframe": "2w"})
    with pytest.raises(ParameterError, match="'params': must be an object"):
        SmaCross([("fast", 5)])


def test_defaults_fill_in_and_integral_json_numbers_are_integers():
    params = SmaCross({"fast": 5.0}).params
    assert dict(params) == {"fast": 5, "slow": 30} and type(params.fast) is int
    assert params.slow == params["slow"] == 30
    with pytest.raises(AttributeError):
        params.fast = 3


def test_json_schema_of_the_catalog():
    assert SmaCross.params_schema() == {
        "type": "object",
        "properties": {
            "fast": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 10, "description": "closes in the fast mean"},
            "slow": {"type": "integer", "minimum": 2, "maximum": 10_000, "default": 30,
                     "description": "closes in the slow mean (more than fast)"},
        },
        "additionalProperties": False,
    }
    entry = SmaCrossTrend.catalog_entry()
    assert entry["name"] == "sma_cross_trend" and entry["kind"] == "vector"
    assert entry["description"].startswith("``sma_cross`` that never enters against a falling")
    assert entry["params"]["properties"]["trend_timeframe"] == {
        "enum": ["1h", "4h", "1d", "1w"], "default": "1w", "description": "timeframe of the trend"}


def test_search_space_for_the_optimiser():
    class Tuned(VectorStrategy):
        name = "tuned"
        period = IntParam(20, low=10, high=50, step=5)
        width = FloatParam(0.01, low=0.001, high=0.1, log=True)
        mode = ChoiceParam("fast", choices=("fast", "slow"))

        def decide(self, data):
            raise NotImplementedError

    assert Tuned.search_space() == [
        Dimension("period", "int", 10, 50, 5, False),
        Dimension("width", "float", 0.001, 0.1, None, True),
        Dimension("mode", "choice", choices=("fast", "slow")),
    ]
    with pytest.raises(ParameterError, match="'period': must be 10 plus a multiple of 5, got 12"):
        Tuned({"period": 12})
    assert Decisions  # the base classes come from the same public module


def test_a_declaration_with_an_invalid_default_fails_when_the_class_is_written():
    with pytest.raises(TypeError, match="invalid default for parameter: must be between 1 and 5, got 9"):
        IntParam(9, low=1, high=5)
    with pytest.raises(TypeError, match="low <= high"):
        FloatParam(1.0, low=2.0, high=1.0)
