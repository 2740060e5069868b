"""Monte Carlo over trades: hand-computed paths, seeded and reproducible, shuffle keeps the return."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
import pytest
from tradeflow_backtest.montecarlo import monte_carlo, paths, trade_returns

PNLS = [D(100), D(-300), D(50), D(200), D(-150), D(80)]


def test_trade_returns_are_on_the_equity_each_trade_started_with():
    assert trade_returns([D(100), D(-220), D(50)], D(1000)).tolist() == pytest.approx([0.1, -0.2, 50 / 880])


def test_paths_by_hand():
    # +10 %, -20 %, +25 %: 1.1, 0.88, 1.1 -> final 10 %, deepest 20 % below the 1.1 peak, lowest 0.88.
    final, drawdown, lowest = paths(np.array([[0.1, -0.2, 0.25]]))
    assert final.tolist() == pytest.approx([0.1])
    assert drawdown.tolist() == pytest.approx([0.2])
    assert lowest.tolist() == pytest.approx([0.88])


def test_the_same_seed_gives_the_same_figures_and_another_seed_others():
    first = monte_carlo(PNLS, D(1000), simulations=500, seed=42)
    again = monte_carlo(PNLS, D(1000), simulations=500, seed=42)
    other = monte_carlo(PNLS, D(1000), simulations=500, seed=43)
    assert first.to_json() == again.to_json()
    for a, b in zip(first.results, again.results, strict=True):
        assert np.array_equal(a.returns, b.returns) and np.array_equal(a.max_drawdowns, b.max_drawdowns)
    assert not np.array_equal(first.results[1].returns, other.results[1].returns)


def test_shuffling_keeps_the_final_return_and_varies_the_drawdown():
    report = monte_carlo(PNLS, D(1000), simulations=300, seed=1, methods=["shuffle"])
    (shuffle,) = report.results
    compounded = float(np.prod(1 + trade_returns(PNLS, D(1000)))) - 1
    assert compounded == pytest.approx(float(sum(PNLS) / 1000))  # all-in trades: the P&L adds up
    assert np.allclose(shuffle.returns, compounded)
    assert shuffle.max_drawdowns.min() < shuffle.max_drawdowns.max()
    low, high = shuffle.max_drawdown.interval
    assert low <= shuffle.max_drawdown.percentiles[50] <= high


def test_bootstrap_draws_with_replacement_and_ruin_follows_its_definition():
    # One trade in two loses 60 %: any sequence with a loss before enough gains falls below half.
    pnls = [D(-600), D(1000)]
    report = monte_carlo(pnls, D(1000), simulations=4000, seed=3, methods=["bootstrap"], ruin_level=0.5)
    (boot,) = report.results
    returns = trade_returns(pnls, D(1000))  # -0.6, then +2.5
    # With two draws: (-0.6, -0.6) ruined, (-0.6, 2.5) ruined, (2.5, -0.6) 3.5 -> 1.4: not ruined, (2.5, 2.5) not.
    assert returns.tolist() == pytest.approx([-0.6, 2.5])
    assert boot.probability_of_ruin == pytest.approx(0.5, abs=0.03)
    assert set(np.round(boot.returns, 6)) <= {round(0.4 * 0.4 - 1, 6), round(0.4 * 3.5 - 1, 6), round(3.5 * 3.5 - 1, 6)}
    deep = monte_carlo(pnls, D(1000), simulations=4000, seed=3, methods=["bootstrap"], ruin_level=0.2)
    assert deep.results[0].probability_of_ruin == pytest.approx(0.25, abs=0.03)  # only -60 % twice (0.16)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="no closed trades"):
        monte_carlo([], D(1000))
    with pytest.raises(ValueError, match="confidence"):
        monte_carlo(PNLS, D(1000), confidence=1.5)
