"""Running a study: trials as backtests, in worker processes, on a shared Optuna storage.

A trial is one ``Backtest.run`` on candles prepared once per worker (indicator columns are
shared between its trials, ADR 0017). Its value is the objective (maximised); it is *pruned*,
with the reason in its ``rejected`` attribute, when its parameters break a rule of the
strategy (``fast < slow``), when it made fewer than ``min_trades`` trades, or when the
objective is undefined for it. Its metrics are kept with it (attribute ``metrics``).

``trials`` is the size of the study, not of this run: workers take trials until the study
holds that many finished (complete or pruned) ones, so running the same command again after
an interruption continues where it stopped, and workers on other machines that join the same
study (PostgreSQL storage, same ``--study``) share the count. A few trials more than asked can
finish when several workers start their last ones at once.

Processes, not threads (the engine holds the GIL). The parent prepares everything, runs one
backtest to compile (or load from numba's cache) every compiled function, closes its database
connections, then forks the workers on Linux, which inherit the compiled code and the
candles; elsewhere it spawns them (the candles are pickled, numba loads its on-disk cache).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import Trial, TrialState
from tradeflow_trading.strategy.candles import CandleFrame
from tradeflow_trading.strategy.loader import load_catalog
from tradeflow_trading.strategy.params import ParameterError

from tradeflow_backtest.objectives import parse_objective
from tradeflow_backtest.optimize.samplers import make_sampler
from tradeflow_backtest.optimize.space import SearchSpace
from tradeflow_backtest.optimize.storage import (
    WORKER_ATTR,
    close_storage,
    open_storage,
    requeue_orphans,
    worker_id,
)
from tradeflow_backtest.runs import RunSettings

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
JOB_ATTR = "tradeflow_job"


class StudyMismatch(ValueError):
    """The named study exists but was made for another job; the text names what differs."""


class WorkerFailed(RuntimeError):
    """A worker process ended with an error; the study keeps what it finished."""


@dataclass(frozen=True, slots=True)
class TrialSetup:
    """What a worker needs to run trials (picklable: spawned workers receive it)."""

    strategy: str
    strategy_paths: tuple[str, ...]
    fixed: dict[str, Any]
    space: SearchSpace
    frame: CandleFrame
    exchange: str
    symbol: str
    run: RunSettings
    objective: str
    min_trades: int = 0

    def job(self) -> dict[str, Any]:
        """What identifies the study's problem (a joining worker must have the same)."""
        return {"strategy": self.strategy, "exchange": self.exchange, "symbol": self.symbol,
                "timeframe": self.frame.timeframe, "first": int(self.frame.ts_start[0]) if len(self.frame) else None,
                "last": int(self.frame.ts_start[-1]) if len(self.frame) else None, "candles": len(self.frame),
                "fixed": self.fixed, "space": [repr(d) for d in self.space.dimensions], "objective": self.objective,
                "min_trades": self.min_trades, "run": self.run.to_json()}


@dataclass(frozen=True, slots=True)
class StudyPlan:
    """How to search: where the study lives, its name and size, the sampler, the worker count."""

    study: str
    storage: str | None
    sampler: str
    trials: int
    workers: int = 1
    seed: int | None = None
    population: int | None = None


@dataclass(slots=True)
class StudyOutcome:
    study: str
    best_params: dict[str, Any] | None
    best_value: float | None
    best_metrics: dict[str, Any] | None
    complete: int
    pruned: int
    failed: int
    rejected: dict[str, int] = field(default_factory=dict)  # why trials were pruned, by reason kind
    table: list[dict[str, Any]] = field(default_factory=list)  # the best trials, best first
    requeued: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "best": {"params": self.best_params, "value": self.best_value,
                                              "metrics": self.best_metrics},
                "trials": {"complete": self.complete, "pruned": self.pruned, "failed": self.failed,
                           "rejected": self.rejected, "requeued": self.requeued},
                "results": self.table}


class TrialEvaluator:
    """The objective function of a worker's trials (see the module docstring)."""

    def __init__(self, setup: TrialSetup) -> None:
        self.setup = setup
        self.strategy_type = load_catalog(setup.strategy_paths).get(setup.strategy)
        self.backtest = setup.run.backtest(setup.frame, setup.symbol, setup.exchange)
        self.objective = parse_objective(setup.objective)
        self.worker = worker_id()
        self._known: dict[str, dict[str, Any]] = {}

    def warm_up(self) -> None:
        """One run with the declared defaults: compiles (or loads) the engine's numba code."""
        try:
            self.backtest.run(self.strategy_type, {})
        except ParameterError:
            pass  # defaults that break a rule across parameters: the first trial compiles instead

    def __call__(self, trial: Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, self.worker)
        params = dict(self.setup.fixed) | self.setup.space.suggest(trial)
        try:
            validated = self.strategy_type.validate_params(params)
        except ParameterError as exc:
            return _reject(trial, f"parameters: {exc}")
        key = repr(sorted(validated.items()))
        metrics = self._known.get(key)
        if metrics is None:  # a parameter set proposed again is not run again (same candles, same result)
            metrics = self._known[key] = self.backtest.run(self.strategy_type, validated).metrics.as_dict()
        trial.set_user_attr("metrics", metrics)
        if metrics["trades"] < self.setup.min_trades:
            return _reject(trial, f"trades: {metrics['trades']} trades, fewer than {self.setup.min_trades}")
        value = self.objective.value(metrics)
        if value is None:
            return _reject(trial, f"objective: {self.setup.objective} is undefined for these metrics")
        return value


def _reject(trial: Trial, reason: str) -> float:
    trial.set_user_attr("rejected", reason)
    raise optuna.TrialPruned(reason)


def open_study(setup: TrialSetup, plan: StudyPlan) -> tuple[optuna.Study, int]:
    """Create or join the study, check it is the same problem, requeue orphaned trials."""
    storage = open_storage(plan.storage)
    study = optuna.create_study(study_name=plan.study, storage=storage, direction="maximize", load_if_exists=True)
    job = setup.job() | {"sampler": plan.sampler}
    known = study.user_attrs.get(JOB_ATTR)
    if known is None:
        study.set_user_attr(JOB_ATTR, job)
    elif known != job:
        differs = sorted(k for k in set(known) | set(job) if known.get(k) != job.get(k))
        raise StudyMismatch(f"study {plan.study!r} was made for another job (differs in: {', '.join(differs)}); "
                            "use another --study name")
    return study, requeue_orphans(study)


def finished_trials(study: optuna.Study) -> int:
    return study._storage.get_n_trials(study._study_id, FINISHED)


def work(setup: TrialSetup, plan: StudyPlan, worker: int, evaluator: TrialEvaluator | None = None) -> None:
    """One worker: take trials until the study holds ``plan.trials`` finished ones."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    evaluator = evaluator or TrialEvaluator(setup)
    study = optuna.load_study(study_name=plan.study, storage=open_storage(plan.storage),
                              sampler=make_sampler(plan.sampler, setup.space, seed=plan.seed, worker=worker,
                                                   population=plan.population))
    while finished_trials(study) < plan.trials:
        study.optimize(evaluator, n_trials=1, catch=())


def _work_in_child(setup: TrialSetup, plan: StudyPlan, worker: int) -> None:
    try:
        work(setup, plan, worker)
    except KeyboardInterrupt:
        sys.exit(130)


def run_study(setup: TrialSetup, plan: StudyPlan, *, progress: Callable[[int, int], None] | None = None,
              poll_s: float = 0.5) -> StudyOutcome:
    """Run the plan's workers on the study (see the module docstring) and summarise it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, requeued = open_study(setup, plan)
    evaluator = TrialEvaluator(setup)
    evaluator.warm_up()
    if plan.workers <= 1:
        if progress is not None:
            progress(finished_trials(study), plan.trials)
        work(setup, plan, 0, evaluator)
    else:
        close_storage(study._storage)  # no pooled connection may cross the fork
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        processes = [context.Process(target=_work_in_child, args=(setup, plan, i), name=f"optimize-worker-{i}")
                     for i in range(plan.workers)]
        for process in processes:
            process.start()
        try:
            while any(p.is_alive() for p in processes):
                if progress is not None:
                    progress(finished_trials(study), plan.trials)
                time.sleep(poll_s)
        except BaseException:
            for process in processes:
                process.terminate()
            raise
        finally:
            for process in processes:
                process.join()
        failed = [p for p in processes if p.exitcode not in (0, None)]
        if failed:
            raise WorkerFailed(f"{len(failed)} of {len(processes)} workers failed (exit codes "
                               f"{', '.join(str(p.exitcode) for p in failed)}); the study keeps its finished trials")
    if progress is not None:
        progress(finished_trials(study), plan.trials)
    outcome = summarise(study, setup.fixed)
    outcome.requeued = requeued
    return outcome


def summarise(study: optuna.Study, fixed: Mapping[str, Any], *, rows: int = 20) -> StudyOutcome:
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    reasons = Counter(str(t.user_attrs.get("rejected", "pruned")).split(":", 1)[0] for t in pruned)
    table: list[dict[str, Any]] = []
    seen: set[str] = set()
    for t in complete:  # one row per parameter set (samplers may propose one several times)
        key = repr(sorted(t.params.items()))
        if key in seen:
            continue
        seen.add(key)
        table.append({"trial": t.number, "value": t.value, "params": dict(fixed) | t.params,
                      "metrics": t.user_attrs.get("metrics", {})})
        if len(table) == rows:
            break
    best = complete[0] if complete else None
    return StudyOutcome(
        study=study.study_name, best_params=dict(fixed) | best.params if best else None,
        best_value=best.value if best else None, best_metrics=best.user_attrs.get("metrics") if best else None,
        complete=len(complete), pruned=len(pruned), failed=sum(t.state == TrialState.FAIL for t in trials),
        rejected=dict(reasons), table=table)


def default_trials(sampler: str, space: SearchSpace, asked: int | None) -> int:
    """``--trials`` or, for a grid, its number of points (asking more than the grid has is capped)."""
    if sampler == "grid":
        size = space.grid_size()
        return size if asked is None else min(asked, size)
    return asked if asked is not None else 100
