"""A study that outlives its workers: resumed after SIGKILL, and shared through PostgreSQL by
worker processes started separately (as on several machines)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import psycopg
import pytest
from optuna.trial import TrialState
from tradeflow_backtest.data import write_candles_csv
from tradeflow_backtest.optimize.storage import open_storage

from tests.research_problems import valley_and_peak, write_strategies

TRIALS = 24


@pytest.fixture
def job(tmp_path):
    candles = tmp_path / "valley.csv"
    with candles.open("w") as out:
        write_candles_csv(valley_and_peak(), out)
    env = {**os.environ, "TRADEFLOW_STRATEGY_PATHS": str(write_strategies(tmp_path))}
    argv = [sys.executable, "-m", "tradeflow_ops.cli", "optimize", "--strategy", "slow_enter_exit_at", "--params", "{}",
            "--space", '{"entry": {"low": 0, "high": 19}, "leave": {"low": 20, "high": 39}}', "--exchange", "binance",
            "--symbol", "BTC/USDT", "--timeframe", "1m", "--since", "2026-01-05", "--until", "2026-01-06",
            "--candles", str(candles), "--sampler", "random", "--seed", "3", "--objective", "return", "--fee-bps", "0",
            "--trials", str(TRIALS), "--no-store", "--no-progress", "--json"]
    return argv, env


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_study_killed_in_the_middle_continues_where_it_stopped(job, tmp_path):
    argv, env = job
    storage = str(tmp_path / "study.journal")
    argv = [*argv, "--storage", storage, "--study", "resumable", "--workers", "1"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        def some_done() -> bool:
            try:
                study = optuna.load_study(study_name="resumable", storage=open_storage(storage))
            except KeyError:
                return False
            return len(finished(study)) >= 5 and bool(study.get_trials(states=(TrialState.RUNNING,)))
        wait_for(some_done, 120, "five finished trials and one running")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    study = optuna.load_study(study_name="resumable", storage=open_storage(storage))
    done_before = {t.number: t.params for t in finished(study)}
    (interrupted,) = study.get_trials(states=(TrialState.RUNNING,))
    assert 5 <= len(done_before) < TRIALS

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    study = optuna.load_study(study_name="resumable", storage=open_storage(storage))
    after = finished(study)
    assert len(after) == TRIALS  # the study's size, not this run's: it continued, it did not start over
    assert {t.number: t.params for t in after if t.number in done_before} == done_before
    assert not study.get_trials(states=(TrialState.RUNNING,))
    # The trial the kill interrupted failed and was run again with its parameters.
    assert study.trials[interrupted.number].state == TrialState.FAIL
    (retry,) = [t for t in after if t.user_attrs.get("retry_of") == interrupted.number]
    assert retry.params == interrupted.params
    assert '"requeued":1' in second.stdout


def test_workers_started_separately_share_one_study_through_postgresql(job, database_url, unique_name):
    argv, env = job
    argv = [*argv, "--study", unique_name, "--workers", "1"]
    with psycopg.connect(database_url) as conn:
        ours = conn.execute("SELECT version_num FROM public.alembic_version").fetchall()
    # One worker names the database in --storage, the other takes it from TRADEFLOW_DATABASE_URL
    # (what the Kubernetes Job does, the URL being a secret): both join the same study.
    workers = [subprocess.Popen([*argv, "--storage", database_url], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True),
               subprocess.Popen([*argv, "--storage", "database"], env={**env, "TRADEFLOW_DATABASE_URL": database_url},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    study = optuna.load_study(study_name=unique_name, storage=open_storage(database_url))
    done = finished(study)
    assert TRIALS <= len(done) <= TRIALS + 1  # the last trials may finish together
    owners = {t.user_attrs["worker"] for t in done}
    assert {w.pid for w in workers} == {int(owner.rsplit(":", 1)[1]) for owner in owners}  # both took trials
    assert len({t.number for t in study.trials}) == len(study.trials)
    with psycopg.connect(database_url) as conn:
        # Optuna's tables are in their own schema; Tradeflow's migration version is untouched.
        assert conn.execute("SELECT version_num FROM public.alembic_version").fetchall() == ours
        assert conn.execute("SELECT count(*) FROM optuna.trials t JOIN optuna.studies s USING (study_id) "
                            "WHERE s.study_name = %s", (unique_name,)).fetchone()[0] == len(study.trials)
        assert conn.execute("SELECT to_regclass('public.trials')").fetchone()[0] is None
