"""``tradeflow optimize`` trials per second: one worker process against two, same study size.

A seeded random walk of 1m candles (default 525,600: a year, as bench/backtest.py) through ``sma_cross``
with fees, a random search (seeded) over fast 2..60 and slow 61..400, objective Sharpe, the
study in a journal file (the default storage of ``tradeflow optimize``). The same study size
(default 24 trials) is run with ``workers=1`` and ``workers=2`` (forked processes, each with
its own prepared candles and indicator cache). Figures:

- ``optimize_trials_per_s_{1,2}_workers``: trials / wall time of the whole ``run_study`` call
  (opening the study, compiling or loading the engine's numba code in the parent, forking,
  the trials, the summary): what a user waits for;
- ``optimize_trial_phase_per_s_{1,2}_workers``: trials / (last trial's end - first trial's
  start), from the trials' own timestamps: the search itself;
- ``optimize_cpu_ms_per_trial_{1,2}_workers``: CPU time of the parent and the workers per trial
  (equal when parallel work costs nothing extra);
- ``optimize_cores_used_{1,2}_workers``: CPU time / wall time: the cores the run actually got;
- ``optimize_speedup_2_workers``: the trial-phase ratio, two workers over one (ideal 2.0 on two
  idle cores; the development box is shared, so the load average is logged with each figure).
  On trials much shorter than ~50 ms the journal file's synchronous writes (one fsync per
  storage call, under a file lock) dominate and two workers gain little.

Prints JSON lines ``{"name", "value", "unit", "baseline"}``; progress on stderr.
Run: ``make bench`` or ``.venv/bin/python bench/optimize.py [--candles N] [--trials N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, log  # noqa: E402

T0 = 1_735_689_600_000_000_000  # 2025-01-01 00:00 UTC


def candles(n: int):
    from tradeflow.timeframes import timeframe
    from tradeflow_trading.strategy import CandleFrame

    rng = np.random.default_rng(20260102)
    close = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 0.0007, n))), 2)
    opens = np.r_[close[0], close[:-1]]
    spread = np.round(close * rng.random(n) * 0.0005, 2)
    return CandleFrame.from_arrays(timeframe("1m"), T0 + np.arange(n, dtype=np.int64) * 60_000_000_000, opens,
                                   np.maximum(opens, close) + spread, np.minimum(opens, close) - spread, close,
                                   np.ones(n))


def measure(frame, trials: int, workers: int, directory: str) -> tuple[float, float]:
    import optuna
    from tradeflow_backtest.optimize.runner import StudyPlan, TrialSetup, run_study
    from tradeflow_backtest.optimize.space import SearchSpace
    from tradeflow_backtest.optimize.storage import open_storage
    from tradeflow_backtest.runs import RunSettings
    from tradeflow_trading.strategies.sma_cross import SmaCross

    space = SearchSpace.of(SmaCross.parameters, {}, {"fast": {"low": 2, "high": 60}, "slow": {"low": 61, "high": 400}})
    setup = TrialSetup("sma_cross", (), {}, space, frame, "bench", "BTC/USDT", RunSettings(fee_bps=Decimal(10)),
                       "sharpe", 0)
    storage = os.path.join(directory, f"bench-{workers}.journal")
    plan = StudyPlan(f"bench-{workers}", storage, "random", trials, workers=workers, seed=11)
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    outcome = run_study(setup, plan)
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    study = optuna.load_study(study_name=plan.study, storage=open_storage(storage))
    done = [t for t in study.trials if t.datetime_complete is not None]
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    phase = (last - first).total_seconds()
    log(f"{workers} worker(s): {len(done)} trials ({outcome.complete} complete, {outcome.pruned} rejected) in "
        f"{wall:.2f} s wall, trial phase {phase:.2f} s, {cpu:.2f} CPU s ({cpu / len(done) * 1000:.0f} ms a trial, "
        f"parent and workers); load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores")
    return len(done) / wall, len(done) / phase, cpu / len(done) * 1000, cpu / wall


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the forked workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candles", type=int, default=525_600)
    parser.add_argument("--trials", type=int, default=24)
    args = parser.parse_args()
    frame = candles(args.candles)
    log(f"{args.candles:,} 1m candles, sma_cross, random search, {args.trials} trials per study")
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-optimize-") as directory:
        one_wall, one_phase, one_cpu, one_cores = measure(frame, args.trials, 1, directory)
        two_wall, two_phase, two_cpu, two_cores = measure(frame, args.trials, 2, directory)
    emit("optimize_trials_per_s_1_worker", one_wall, "trials/s")
    emit("optimize_trials_per_s_2_workers", two_wall, "trials/s", baseline=one_wall)
    emit("optimize_trial_phase_per_s_1_worker", one_phase, "trials/s")
    emit("optimize_trial_phase_per_s_2_workers", two_phase, "trials/s", baseline=one_phase)
    emit("optimize_cpu_ms_per_trial_1_worker", one_cpu, "ms")
    emit("optimize_cpu_ms_per_trial_2_workers", two_cpu, "ms", baseline=one_cpu)
    ratio("optimize_cores_used_1_worker", one_cores, "cores", 1.0)
    ratio("optimize_cores_used_2_workers", two_cores, "cores", 2.0)
    ratio("optimize_speedup_2_workers", two_phase / one_phase, "x", 2.0)


def ratio(name: str, value: float, unit: str, baseline: float) -> None:
    """A result line with two decimals (``emit`` keeps one, too coarse for a ratio)."""
    print(json.dumps({"name": name, "value": round(value, 2), "unit": unit, "baseline": baseline}), flush=True)


if __name__ == "__main__":
    main()
