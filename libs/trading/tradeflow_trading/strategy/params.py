"""Declared strategy parameters: types, ranges, defaults, validation, JSON schema, search space.

A strategy declares its parameters as class attributes::

    class SmaCross(VectorStrategy):
        fast = IntParam(10, low=1, high=1000, doc="candles in the fast mean")
        slow = IntParam(30, low=2, high=5000, doc="candles in the slow mean")

From the declarations come, with no code of the strategy's own:

- validation of an instance's ``params`` (unknown names, wrong types, out of range, a choice
  not offered), each error a :class:`ParameterError` naming the parameter (the strategy
  service answers it as a 422 with that name; ``tradeflow backtest`` prints it);
- the catalog's JSON schema (:func:`params_schema`, ``GET /v1/strategies/catalog``);
- the optimiser's search space (:func:`search_space`): integers, floats (optionally on a
  log scale or a step) and choices, as :class:`Dimension` values an Optuna study maps to
  ``suggest_int`` / ``suggest_float`` / ``suggest_categorical``.

Rules across parameters (``fast < slow``) live in the strategy's ``check_params``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

DimensionKind = Literal["int", "float", "choice"]


class ParameterError(ValueError):
    """A parameter value the strategy does not accept; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"parameter {parameter!r}: {message}")
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True, slots=True)
class Dimension:
    """One axis of the optimiser's search space (bounds inclusive)."""

    name: str
    kind: DimensionKind
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


class Param:
    """A declared parameter. Subclasses say what values it takes."""

    kind: DimensionKind

    def __init__(self, default: Any, *, doc: str = "") -> None:
        self.default = default
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def validate(self, value: Any) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def dimension(self) -> Dimension:
        raise NotImplementedError

    def _error(self, message: str) -> ParameterError:
        return ParameterError(self.name, message)

    def _check_default(self) -> None:
        """A declaration whose own default is invalid is a bug in the strategy: fail at import."""
        try:
            self.validate(self.default)
        except ParameterError as exc:
            raise TypeError(f"invalid default for parameter: {exc.message}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class IntParam(Param):
    """An integer in [low, high] (optionally every ``step``, or searched on a log scale)."""

    kind = "int"

    def __init__(self, default: int, *, low: int, high: int, step: int = 1, log: bool = False, doc: str = "") -> None:
        super().__init__(default, doc=doc)
        if low > high or step < 1:
            raise TypeError(f"IntParam needs low <= high and step >= 1, got low={low} high={high} step={step}")
        self.low, self.high, self.step, self.log = low, high, step, log
        self._check_default()

    def validate(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON writers may print 10 as 10.0
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._error(f"must be an integer, got {value!r}")
        if not self.low <= value <= self.high:
            raise self._error(f"must be between {self.low} and {self.high}, got {value}")
        if (value - self.low) % self.step:
            raise self._error(f"must be {self.low} plus a multiple of {self.step}, got {value}")
        return value

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.low, "maximum": self.high, "default": self.default}
        if self.step != 1:
            schema["multipleOf"] = self.step  # exact when low is a multiple of step too
        return schema

    def dimension(self) -> Dimension:
        return Dimension(self.name, "int", self.low, self.high, self.step, self.log)


class FloatParam(Param):
    """A finite number in [low, high] (optionally on a ``step`` grid or a log scale)."""

    kind = "float"

    def __init__(self, default: float, *, low: float, high: float, step: float | None = None, log: bool = False,
                 doc: str = "") -> None:
        super().__init__(default, doc=doc)
        if low > high or (log and low <= 0) or (step is not None and step <= 0):
            raise TypeError(f"FloatParam needs low <= high (low > 0 on a log scale) and step > 0, got "
                            f"low={low} high={high} step={step} log={log}")
        self.low, self.high, self.step, self.log = low, high, step, log
        self._check_default()

    def validate(self, value: Any) -> float:
        if not _is_number(value):
            raise self._error(f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self._error(f"must be finite, got {value}")
        if not self.low <= value <= self.high:
            raise self._error(f"must be between {self.low} and {self.high}, got {value}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.low, "maximum": self.high, "default": self.default}

    def dimension(self) -> Dimension:
        return Dimension(self.name, "float", self.low, self.high, self.step, self.log)


class ChoiceParam(Param):
    """One of a fixed set of JSON scalars (strings, numbers, booleans)."""

    kind = "choice"

    def __init__(self, default: Any, *, choices: tuple[Any, ...], doc: str = "") -> None:
        super().__init__(default, doc=doc)
        if not choices:
            raise TypeError("ChoiceParam needs at least one choice")
        self.choices = tuple(choices)
        self._check_default()

    def validate(self, value: Any) -> Any:
        # 1 == True in Python: compare types too, so a boolean choice is not met by an integer.
        for choice in self.choices:
            if value == choice and type(value) is type(choice):
                return choice
        raise self._error(f"must be one of {', '.join(repr(c) for c in self.choices)}, got {value!r}")

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.choices), "default": self.default}

    def dimension(self) -> Dimension:
        return Dimension(self.name, "choice", choices=self.choices)


class Params(Mapping[str, Any]):
    """Validated parameter values: a read-only mapping that also reads as attributes (``p.fast``)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("parameters are read-only")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items(), key=lambda item: item[0])))


def declared_params(cls: type) -> dict[str, Param]:
    """The parameters a class declares, base classes first, in declaration order."""
    found: dict[str, Param] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Param):
                found[name] = value
    return found


def validate_params(declared: Mapping[str, Param], raw: Mapping[str, Any] | None) -> Params:
    """``raw`` checked against ``declared``: defaults filled in, every error naming its parameter."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ParameterError("params", f"must be an object of parameter values, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        known = ", ".join(declared) or "none"
        raise ParameterError(unknown[0], f"unknown parameter (known: {known})")
    return Params({name: param.validate(raw[name]) if name in raw else param.default
                   for name, param in declared.items()})


def params_schema(declared: Mapping[str, Param]) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a strategy's ``params`` object."""
    properties = {}
    for name, param in declared.items():
        schema = param.schema()
        if param.doc:
            schema["description"] = param.doc
        properties[name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": False}


def search_space(declared: Mapping[str, Param]) -> list[Dimension]:
    return [param.dimension() for param in declared.values()]
