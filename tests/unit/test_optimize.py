"""The optimiser: each search method finds the known optimum of a constructed problem; the
search space, the rules that reject a trial, and the study a job belongs to."""

from __future__ import annotations

from decimal import Decimal

import optuna
import pytest
from optuna.trial import TrialState
from tradeflow_backtest.optimize.runner import (
    StudyMismatch,
    StudyPlan,
    TrialSetup,
    default_trials,
    run_study,
)
from tradeflow_backtest.optimize.space import SearchSpace
from tradeflow_backtest.optimize.storage import open_storage
from tradeflow_backtest.runs import RunSettings
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategy import ParameterError
from tradeflow_trading.strategy.loader import load_catalog

from tests.research_problems import BEST, valley_and_peak, write_strategies

NO_FEES = RunSettings(cash=Decimal(10_000), fee_bps=Decimal(0))
AROUND = {"entry": {"low": 0, "high": 19}, "leave": {"low": 20, "high": 39}}  # 400 points, the optimum inside


def setup_for(tmp_path, *, space=AROUND, fixed=None, objective="return", min_trades=0, strategy="enter_exit_at"):
    path = write_strategies(tmp_path)
    declared = load_catalog([path]).get(strategy).parameters
    return TrialSetup(strategy, (str(path),), dict(fixed or {}), SearchSpace.of(declared, fixed or {}, space),
                      valley_and_peak(), "test", "BTC/USDT", NO_FEES, objective, min_trades)


def best_return() -> float:
    frame = valley_and_peak()
    return float(frame.open[BEST["leave"] + 1] / frame.open[BEST["entry"] + 1] - 1)


def test_a_grid_visits_every_point_once_and_finds_the_optimum(tmp_path):
    setup = setup_for(tmp_path, space={"entry": {"low": 4, "high": 12}, "leave": {"low": 26, "high": 34, "step": 2}})
    trials = default_trials("grid", setup.space, None)
    assert trials == 9 * 5
    outcome = run_study(setup, StudyPlan("grid", str(tmp_path / "j"), "grid", trials, seed=1))
    assert outcome.best_params == BEST
    assert outcome.best_value == pytest.approx(best_return(), rel=1e-9)
    assert outcome.complete == 45 and outcome.pruned == 0
    study = optuna.load_study(study_name="grid", storage=open_storage(str(tmp_path / "j")))
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 45


@pytest.mark.parametrize(("sampler", "population"), [("tpe", None), ("cmaes", None), ("nsga2", 16), ("pso", 10)])
def test_each_search_method_finds_the_known_optimum(tmp_path, sampler, population):
    outcome = run_study(setup_for(tmp_path), StudyPlan(sampler, str(tmp_path / "j"), sampler, 80, seed=1,
                                                       population=population))
    assert outcome.best_params == BEST
    assert outcome.best_value == pytest.approx(best_return(), rel=1e-9)
    assert outcome.table[0]["params"] == BEST and outcome.table[0]["metrics"]["trades"] == 1
    assert len({repr(row["params"]) for row in outcome.table}) == len(outcome.table)  # one row per parameter set


def test_a_seeded_search_is_reproducible(tmp_path):
    first = run_study(setup_for(tmp_path), StudyPlan("a", str(tmp_path / "a"), "pso", 30, seed=7))
    again = run_study(setup_for(tmp_path), StudyPlan("b", str(tmp_path / "b"), "pso", 30, seed=7))
    other = run_study(setup_for(tmp_path), StudyPlan("c", str(tmp_path / "c"), "pso", 30, seed=8))
    assert first.table == again.table
    assert first.table != other.table


def test_rule_breaking_parameters_and_too_few_trades_are_rejected_with_their_reason(tmp_path):
    # entry >= leave breaks the strategy's rule; min_trades 2 rejects every single-trade run.
    setup = setup_for(tmp_path, space={"entry": {"low": 18, "high": 22}, "leave": {"low": 18, "high": 22}},
                      min_trades=2)
    outcome = run_study(setup, StudyPlan("rules", str(tmp_path / "j"), "grid", 25))
    assert outcome.complete == 0 and outcome.best_params is None
    assert outcome.rejected == {"parameters": 15, "trades": 10}
    study = optuna.load_study(study_name="rules", storage=open_storage(str(tmp_path / "j")))
    reasons = {t.user_attrs["rejected"] for t in study.get_trials(states=(TrialState.PRUNED,))}
    assert "parameters: parameter 'entry': must be before leave (20)" in reasons
    assert "trades: 1 trades, fewer than 2" in reasons


def test_an_objective_expression_over_the_metrics_is_maximised(tmp_path):
    # Penalise the time in the market; the best by this expression, found by running every point.
    setup = setup_for(tmp_path, space={"entry": {"low": 4, "high": 12}, "leave": {"low": 20, "high": 34}},
                      objective="total_return - 3 * exposure")
    outcome = run_study(setup, StudyPlan("expr", str(tmp_path / "j"), "grid", default_trials("grid", setup.space, None)))
    strategy = load_catalog(setup.strategy_paths).get("enter_exit_at")
    backtest = NO_FEES.backtest(valley_and_peak(), "BTC/USDT", "test")
    scores = {}
    for entry in range(4, 13):
        for leave in range(20, 35):
            m = backtest.run(strategy, {"entry": entry, "leave": leave}).metrics
            scores[(entry, leave)] = m.total_return - 3 * m.exposure
    best = max(scores, key=scores.get)
    assert outcome.best_params == {"entry": best[0], "leave": best[1]} != BEST
    assert outcome.best_value == pytest.approx(scores[best], rel=1e-12)


def test_a_study_refuses_a_worker_of_another_job(tmp_path):
    run_study(setup_for(tmp_path), StudyPlan("same", str(tmp_path / "j"), "random", 3, seed=1))
    with pytest.raises(StudyMismatch, match="differs in: objective"):
        run_study(setup_for(tmp_path, objective="sharpe"), StudyPlan("same", str(tmp_path / "j"), "random", 3))


def test_the_search_space_is_the_declared_one_narrowed_and_checked():
    space = SearchSpace.of(SmaCross.parameters, {"slow": 30}, {"fast": {"low": 5, "high": 29, "step": 5}})
    assert [(d.name, d.low, d.high, d.step) for d in space.dimensions] == [("fast", 5, 25, 5)]
    assert space.grid() == {"fast": [5, 10, 15, 20, 25]}
    with pytest.raises(ParameterError, match="'fast'.*between 1 and 10000"):
        SearchSpace.of(SmaCross.parameters, {}, {"fast": {"low": 0}})
    with pytest.raises(ParameterError, match="'speed'.*not a parameter"):
        SearchSpace.of(SmaCross.parameters, {}, {"speed": {"low": 1}})
    with pytest.raises(ParameterError, match="'slow'.*both in --params"):
        SearchSpace.of(SmaCross.parameters, {"slow": 30}, {"slow": {"low": 20}})
    with pytest.raises(ParameterError, match="grid has more than"):
        SearchSpace.of(SmaCross.parameters, {}, None).grid()
