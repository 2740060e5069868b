"""The work of ``tradeflow backtest``, ``optimize``, ``montecarlo`` and ``lookahead`` (options:
:mod:`tradeflow_backtest.commands`).

Each command: reads its settings and the strategy catalog, checks its options (a bad one is a
:class:`CliError` with exit status 2 naming it), loads the candles, runs, prints its result
on stdout (text, or JSON with ``--json``), writes ``--report``, and stores the run on the
strategy service unless ``--no-store`` (a failure to store is said on stderr and changes
neither the output nor the exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from decimal import Decimal
from typing import Any

import numpy as np
from tqdm import tqdm
from tradeflow.clients.backtests import BacktestStore, BacktestStoreError, MarketRef, ResearchRun
from tradeflow.clients.candles import CandleApiError
from tradeflow.commands import CliError
from tradeflow.settings import load_settings
from tradeflow.time import NS_PER_MS, format_time_ms
from tradeflow_trading.strategy.base import Strategy
from tradeflow_trading.strategy.candles import CandleFrame
from tradeflow_trading.strategy.loader import UnknownStrategy, load_catalog
from tradeflow_trading.strategy.params import ParameterError

from tradeflow_backtest import metrics as metrics_
from tradeflow_backtest.data import CandleFileError
from tradeflow_backtest.result import JSON_METRICS, BacktestResult
from tradeflow_backtest.runs import HistoryRequest, NoCandles, RunSettings, between, load_history
from tradeflow_backtest.settings import ResearchSettings

USAGE = 2


@dataclass(slots=True)
class Prepared:
    """A command's checked inputs and its candles."""

    args: argparse.Namespace
    settings: ResearchSettings
    strategy_type: type[Strategy]
    strategy_paths: tuple[str, ...]
    history: HistoryRequest
    run: RunSettings
    frame: CandleFrame

    def run_record(self, kind: str, params: dict[str, Any], **fields: Any) -> ResearchRun:
        return ResearchRun(kind=kind, strategy=self.args.strategy, params=params,
                           markets=[MarketRef(self.history.exchange, self.history.symbol)],
                           timeframe=self.history.timeframe, since=format_time_ms(self.history.since_ns),
                           until=format_time_ms(self.history.until_ns), **fields)


def prepare(args: argparse.Namespace, command: str) -> Prepared:
    settings = load_settings(ResearchSettings)
    if args.until <= args.since:
        raise CliError(f"--until ({format_time_ms(args.until * NS_PER_MS)}) must be after --since "
                       f"({format_time_ms(args.since * NS_PER_MS)})", exit_code=USAGE)
    if args.candles is not None and not args.candles.is_file():
        raise CliError(f"--candles {args.candles}: no such file", exit_code=USAGE)
    paths = tuple(str(p) for p in settings.strategy_paths)
    catalog = load_catalog(paths)
    try:
        strategy_type = catalog.get(args.strategy)
    except UnknownStrategy as exc:
        raise CliError(f"--strategy: {exc}", exit_code=USAGE) from None
    history = HistoryRequest(args.exchange, args.symbol, args.timeframe, args.since * NS_PER_MS,
                             args.until * NS_PER_MS, args.candles)
    expected = max(1, (history.until_ns - history.since_ns) // _length(args.timeframe))
    with _bar(args, f"{command}: candles", total=None if args.candles else expected, unit="candle") as bar:
        try:
            frame = load_history(history, settings.candle_builder_url, progress=bar.update)
        except CandleFileError as exc:
            raise CliError(f"--candles {args.candles}: {exc}", exit_code=USAGE) from None
        except (CandleApiError, NoCandles) as exc:
            raise CliError(str(exc)) from None
    return Prepared(args, settings, strategy_type, paths, history,
                    RunSettings(args.cash, args.fee_bps, args.slippage_bps), frame)


def _length(name: str) -> int:
    from tradeflow.timeframes import TIMEFRAMES

    return TIMEFRAMES[name].length_ns


def _bar(args: argparse.Namespace, what: str, *, total: int | None, unit: str = "it") -> tqdm:
    """A progress bar on stderr, shown only for what lasts over a second and on a terminal."""
    return tqdm(total=total, desc=what, unit=unit, file=sys.stderr, delay=1.0, leave=False, dynamic_ncols=True,
                disable=True if args.no_progress else None)


def validated_params(strategy_type: type[Strategy], params: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(strategy_type.validate_params(params))
    except ParameterError as exc:
        raise CliError(f"--params: {exc}", exit_code=USAGE) from None


def run_backtest(prepared: Prepared, params: dict[str, Any]) -> BacktestResult:
    args = prepared.args
    backtest = prepared.run.backtest(prepared.frame, prepared.history.symbol, prepared.history.exchange)
    with _bar(args, "backtest", total=None, unit="candle") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
        return backtest.run(prepared.strategy_type, params, progress=progress)


def store(prepared: Prepared, command: str, record: ResearchRun) -> None:
    """POST the run to the strategy service; a failure is said on stderr, never fatal."""
    if prepared.args.no_store:
        return
    keys = prepared.settings.configured_api_keys()
    try:
        answer = asyncio.run(_save(prepared.settings.strategy_url, keys[0] if keys else None, record))
    except BacktestStoreError as exc:
        print(f"tradeflow {command}: not stored: {exc}", file=sys.stderr)
        return
    ident = answer.get("id") if isinstance(answer, dict) else None
    print(f"tradeflow {command}: stored on the strategy service{f' as {ident}' if ident is not None else ''}",
          file=sys.stderr)


async def _save(url: str, key, record: ResearchRun) -> dict[str, Any]:
    client = BacktestStore(url, key)
    try:
        return await client.save(record)
    finally:
        await client.aclose()


def _print_json(value: Any) -> None:
    print(json.dumps(value, separators=(",", ":")), flush=True)


def _metric_lines(metrics: dict[str, Any]) -> list[str]:
    def text(name: str, value: Any) -> str:
        if value is None:
            return "n/a"
        if name in ("total_return", "cagr", "max_drawdown", "win_rate", "exposure"):
            return f"{value:.2%}"
        if name == "max_drawdown_duration_s":
            return f"{value / 86_400:,.1f} days"
        return f"{value:.4f}" if isinstance(value, float) else str(value)
    return [f"  {name.removesuffix('_s'):<24} {text(name, value)}" for name, value in metrics.items()]


def _report(prepared: Prepared, result: BacktestResult, title: str, details: dict[str, Any],
            frame: CandleFrame | None = None) -> None:
    if prepared.args.report is None:
        return
    from tradeflow_backtest.report import write_report

    try:
        write_report(prepared.args.report, result, frame if frame is not None else prepared.frame, title=title,
                     symbol=prepared.history.symbol, details=details)
    except OSError as exc:
        raise CliError(f"--report {prepared.args.report}: {exc.strerror or exc}") from None
    print(f"report written to {prepared.args.report}", file=sys.stderr)


def _details(prepared: Prepared, params: dict[str, Any], **more: Any) -> dict[str, Any]:
    h = prepared.history
    return {"strategy": prepared.args.strategy, "params": params, "market": f"{h.exchange} {h.symbol}",
            "timeframe": h.timeframe, "since": format_time_ms(h.since_ns), "until": format_time_ms(h.until_ns),
            "candles": len(prepared.frame)} | prepared.run.to_json() | more


# --- tradeflow backtest -----------------------------------------------------------------------------


def backtest_command(args: argparse.Namespace) -> int:
    prepared = prepare(args, "backtest")
    params = validated_params(prepared.strategy_type, args.params)
    result = run_backtest(prepared, params)
    output = result.to_json()
    if args.json:
        _print_json(output)
    else:
        print(f"{args.strategy} {json.dumps(params)} on {args.exchange} {args.symbol} {args.timeframe}, "
              f"{len(prepared.frame)} candles")
        print("\n".join(_metric_lines(result.metrics.as_dict())))
        print(f"  final cash {result.final_cash:f}, open positions {len(result.positions)}, "
              f"intents without a fill {len(result.unfilled)}")
    _report(prepared, result, f"Backtest: {args.strategy} on {args.symbol} {args.timeframe}", _details(prepared, params))
    store(prepared, "backtest", prepared.run_record(
        "backtest", params, settings=prepared.run.to_json(), metrics=result.metrics.as_dict(),
        trades=output["trades"], equity=output["equity"], summary={"candles": len(prepared.frame),
                                                                   "unfilled": len(result.unfilled)}))
    return 0


# --- tradeflow montecarlo ---------------------------------------------------------------------------


def montecarlo_command(args: argparse.Namespace) -> int:
    from tradeflow_backtest.montecarlo import METHODS, monte_carlo

    prepared = prepare(args, "montecarlo")
    params = validated_params(prepared.strategy_type, args.params)
    result = run_backtest(prepared, params)
    if not result.trades:
        raise CliError("the backtest closed no trade: nothing to resample")
    methods = METHODS if args.method == "both" else (args.method,)
    report = monte_carlo([t.pnl for t in result.trades], result.initial_cash, simulations=args.simulations,
                         seed=args.seed, methods=methods, confidence=args.confidence, ruin_level=args.ruin_level)
    summary = report.to_json()
    if args.json:
        _print_json(summary | {"backtest": {"metrics": result.to_json()["metrics"]}})
    else:
        low, high = (1 - args.confidence) / 2, 1 - (1 - args.confidence) / 2
        print(f"{args.strategy} {json.dumps(params)}: {len(result.trades)} trades, {args.simulations} simulations, "
              f"seed {args.seed}; backtest return {result.metrics.total_return:.2%}, "
              f"max drawdown {result.metrics.max_drawdown:.2%}")
        for simulation in report.results:
            r, d = simulation.total_return, simulation.max_drawdown
            print(f"  {simulation.method:<9} return: median {r.percentiles[50]:.2%}, {low:.1%}-{high:.1%} "
                  f"[{r.interval[0]:.2%}, {r.interval[1]:.2%}]; max drawdown: median {d.percentiles[50]:.2%}, "
                  f"[{d.interval[0]:.2%}, {d.interval[1]:.2%}]; P(loss) {simulation.probability_of_loss:.2%}, "
                  f"P(ruin: equity <= {args.ruin_level:g} x cash) {simulation.probability_of_ruin:.2%}")
    output = result.to_json()
    store(prepared, "montecarlo", prepared.run_record(
        "montecarlo", params, settings=prepared.run.to_json() | {"simulations": args.simulations, "seed": args.seed,
                                                                  "methods": list(methods),
                                                                  "confidence": args.confidence,
                                                                  "ruin_level": args.ruin_level},
        metrics=result.metrics.as_dict(), trades=output["trades"], equity=output["equity"], summary=summary))
    return 0


# --- tradeflow lookahead ----------------------------------------------------------------------------


def lookahead_command(args: argparse.Namespace) -> int:
    from tradeflow_backtest.lookahead import check_lookahead

    prepared = prepare(args, "lookahead")
    params = validated_params(prepared.strategy_type, args.params)
    report = check_lookahead(prepared.strategy_type, params, prepared.frame, args.symbol,
                             max_signals=args.max_signals, extra_cuts=args.extra_cuts)
    if args.json:
        _print_json(report.to_json())
    elif not report.checked:
        print(f"{report.strategy}: {report.note}")
    elif report.clean:
        print(f"{report.strategy}: no look-ahead: {report.signals} signals, {len(report.cuts)} truncated histories, "
              "every signal on the candles both saw is the same")
    else:
        print(f"{report.strategy}: LOOK-AHEAD: {len(report.changes)} signals change when later candles are removed:")
        for change in report.changes[:50]:
            print(f"  {change}")
        if len(report.changes) > 50:
            print(f"  ... and {len(report.changes) - 50} more")
    return 0 if report.clean else 1


# --- tradeflow optimize -----------------------------------------------------------------------------


def optimize_command(args: argparse.Namespace) -> int:
    from tradeflow_backtest.objectives import ObjectiveError, parse_objective
    from tradeflow_backtest.optimize.runner import StudyMismatch, TrialSetup, WorkerFailed, default_trials
    from tradeflow_backtest.optimize.space import SearchSpace
    from tradeflow_backtest.optimize.storage import StorageLocationError

    prepared = prepare(args, "optimize")
    strategy_type = prepared.strategy_type
    fixed = dict(args.params)
    for name, value in fixed.items():
        if name not in strategy_type.parameters:
            raise CliError(f"--params: parameter {name!r}: unknown parameter (known: "
                           f"{', '.join(strategy_type.parameters)})", exit_code=USAGE)
        try:
            fixed[name] = strategy_type.parameters[name].validate(value)
        except ParameterError as exc:
            raise CliError(f"--params: {exc}", exit_code=USAGE) from None
    try:
        space = SearchSpace.of(strategy_type.parameters, fixed, args.space)
        trials = default_trials(args.sampler, space, args.trials)
    except ParameterError as exc:
        raise CliError(f"--space: {exc}", exit_code=USAGE) from None
    try:
        parse_objective(args.objective)
    except ObjectiveError as exc:
        raise CliError(f"--objective: {exc}", exit_code=USAGE) from None
    setup = TrialSetup(args.strategy, prepared.strategy_paths, fixed, space, prepared.frame, args.exchange,
                       args.symbol, prepared.run, args.objective, args.min_trades)
    try:
        if args.walk_forward is not None:
            return _walk_forward(prepared, setup, trials)
        return _optimize(prepared, setup, trials)
    except StudyMismatch as exc:
        raise CliError(f"--study: {exc}", exit_code=USAGE) from None
    except StorageLocationError as exc:
        raise CliError(f"--storage: {exc}", exit_code=USAGE) from None
    except WorkerFailed as exc:
        raise CliError(str(exc)) from None


def _plan(prepared: Prepared, trials: int, study: str):
    from tradeflow_backtest.optimize.runner import StudyPlan

    args = prepared.args
    # "database": the Tradeflow database of TRADEFLOW_DATABASE_URL (a secret: never on a command line).
    storage = prepared.settings.libpq_url if args.storage == "database" else args.storage
    return StudyPlan(study=study, storage=storage, sampler=args.sampler, trials=trials,
                     workers=args.workers or os.cpu_count() or 1, seed=args.seed, population=args.population)


def study_name(args: argparse.Namespace, setup) -> str:
    """The study's default name: the job's fingerprint, so the same command resumes the same study."""
    job = setup.job() | {"sampler": args.sampler,
                         "walk_forward": list(args.walk_forward) if args.walk_forward else None}
    digest = hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{args.strategy}-{args.exchange}-{args.symbol.replace('/', '')}-{args.timeframe}-{args.sampler}-{digest}"


def _study_bar(args: argparse.Namespace, what: str):
    bar = _bar(args, what, total=None, unit="trial")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = min(done, total)
        bar.refresh()
    return bar, progress


def _optimize(prepared: Prepared, setup, trials: int) -> int:
    from tradeflow_backtest.optimize.runner import run_study

    args = prepared.args
    name = args.study or study_name(args, setup)
    plan = _plan(prepared, trials, name)
    print(f"tradeflow optimize: study {name} ({args.sampler}, {trials} trials, {plan.workers} workers)",
          file=sys.stderr)
    bar, progress = _study_bar(args, "optimize")
    with bar:
        outcome = run_study(setup, plan, progress=progress)
    best_result = None
    if outcome.best_params is not None:
        best_result = prepared.run.backtest(prepared.frame, args.symbol, args.exchange).run(
            prepared.strategy_type, outcome.best_params)
    table = outcome.table[:args.top]
    summary = outcome.to_json() | {"results": table, "sampler": args.sampler, "objective": args.objective,
                                   "min_trades": args.min_trades, "trials_asked": trials}
    if args.json:
        _print_json(summary | {"backtest": best_result.to_json() if best_result else None})
    else:
        _print_table(outcome, table, args)
    if best_result is not None:
        _report(prepared, best_result, f"Optimised: {args.strategy} on {args.symbol} {args.timeframe}",
                _details(prepared, outcome.best_params, objective=args.objective, sampler=args.sampler,
                         study=name, trials=outcome.complete))
        output = best_result.to_json()
        store(prepared, "optimize", prepared.run_record(
            "optimize", outcome.best_params, settings=prepared.run.to_json() | _search_settings(args, trials, name),
            metrics=best_result.metrics.as_dict(), trades=output["trades"], equity=output["equity"],
            summary=summary))
    return 0 if outcome.best_params is not None else 1


def _search_settings(args: argparse.Namespace, trials: int, name: str) -> dict[str, Any]:
    return {"sampler": args.sampler, "objective": args.objective, "min_trades": args.min_trades, "trials": trials,
            "space": args.space, "fixed": args.params, "study": name, "seed": args.seed}


def _print_table(outcome, table: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"study {outcome.study}: {outcome.complete} complete, {outcome.pruned} rejected "
          f"{json.dumps(outcome.rejected) if outcome.rejected else ''}, {outcome.failed} failed"
          f"{f', {outcome.requeued} interrupted trials queued again' if outcome.requeued else ''}")
    if not table:
        print("no trial met the rules: no best parameters")
        return
    print(f"{'rank':>4} {'trial':>6} {args.objective[:14]:>14} {'return':>9} {'sharpe':>8} {'max dd':>8} "
          f"{'trades':>6}  params")
    for rank, row in enumerate(table, 1):
        m = row["metrics"]
        print(f"{rank:>4} {row['trial']:>6} {row['value']:>14.4f} {_pct(m.get('total_return')):>9} "
              f"{_num(m.get('sharpe')):>8} {_pct(m.get('max_drawdown')):>8} {m.get('trades', 0):>6}  "
              f"{json.dumps(row['params'])}")
    print(f"best parameters: {json.dumps(outcome.best_params)}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# --- walk-forward -----------------------------------------------------------------------------------


def _walk_forward(prepared: Prepared, setup, trials: int) -> int:
    from tradeflow_backtest.optimize.runner import run_study
    from tradeflow_backtest.walkforward import (
        annualised,
        efficiency,
        stitch,
        trading_from,
        window_json,
        windows,
    )

    args = prepared.args
    train_ns, test_ns = args.walk_forward
    steps = windows(prepared.history.since_ns, prepared.history.until_ns, train_ns, test_ns)
    if not steps:
        raise CliError("--walk-forward: the range is shorter than one training window plus some test candles",
                       exit_code=USAGE)
    base = args.study or study_name(args, setup)
    frame = prepared.frame
    cash = prepared.run.cash
    pieces: list[tuple[np.ndarray, np.ndarray]] = []
    trades = []
    reports: list[dict[str, Any]] = []
    in_sample_annual: list[float] = []
    last_params: dict[str, Any] = {}
    for window in steps:
        train = between(frame, window.train_start, window.train_end)
        test_first, test_stop = np.searchsorted(frame.ts_start, [window.test_start, window.test_end])
        if len(train) == 0 or test_stop == test_first:
            reports.append(window_json(window, {}, {}, {}, None) | {"skipped": "no candles in a window"})
            continue
        plan = _plan(prepared, trials, f"{base}-wf{window.index}")
        bar, progress = _study_bar(args, f"walk-forward {window.index + 1}/{len(steps)}")
        with bar:
            outcome = run_study(dataclass_replace(setup, frame=train), plan, progress=progress)
        if outcome.best_params is None:
            reports.append(window_json(window, {}, {}, {}, None) | {"skipped": "no trial met the rules in sample"})
            continue
        params = outcome.best_params
        last_params = params
        warmup = max(1, int(prepared.strategy_type(params).warmup()))
        start_row = max(0, int(test_first) - warmup)
        piece_frame = frame.rows(start_row, int(test_stop))
        result = prepared.run.backtest(piece_frame, args.symbol, args.exchange, cash=cash).run(
            trading_from(prepared.strategy_type, window.test_start), params)
        inside = piece_frame.ts_start >= window.test_start
        equity = result.equity[inside]
        piece_return = float(equity[-1]) / float(cash) - 1.0
        pieces.append((result.equity_ts[inside], equity))
        trades.extend(result.trades)
        is_return = float(outcome.best_metrics["total_return"])
        is_annual = annualised(is_return, window.train_end - window.train_start)
        oos_annual = annualised(piece_return, window.test_end - window.test_start)
        in_sample_annual.append(is_annual)
        reports.append(window_json(
            window, params,
            {"objective": outcome.best_value, "total_return": is_return, "annualised_return": is_annual,
             "trades": outcome.best_metrics["trades"], "trials": outcome.complete},
            {"total_return": piece_return, "annualised_return": oos_annual, "trades": len(result.trades)},
            efficiency(oos_annual, is_annual)))
        cash = Decimal(repr(float(equity[-1])))
    ts, equity = stitch(pieces)
    if equity.size == 0:
        raise CliError("walk-forward: no window had a usable in-sample result")
    first_start = int(prepared.frame.ts_start[np.searchsorted(prepared.frame.ts_start, steps[0].test_start)])
    computed = metrics_.compute(equity, float(prepared.run.cash), first_start_ns=first_start, ends_ns=ts,
                                candle_length_ns=_length(args.timeframe), pnls=[t.pnl for t in trades],
                                exposed=np.zeros(equity.shape[0], dtype=bool))
    computed = dataclass_replace(computed, exposure=None)  # not known: the windows' positions are not kept
    oos = {name: value for name, value in computed.as_dict().items() if name != "exposure"}
    span = int(ts[-1]) - first_start
    overall = efficiency(annualised(oos["total_return"], span),
                         float(np.mean(in_sample_annual)) if in_sample_annual else None)
    summary = {"windows": reports, "train": args.walk_forward[0], "test": args.walk_forward[1],
               "out_of_sample": oos, "efficiency": overall, "sampler": args.sampler, "objective": args.objective}
    stitched = BacktestResult(trades=trades, metrics=computed, equity=equity, equity_ts=ts,
                              initial_cash=prepared.run.cash, final_cash=Decimal(repr(float(equity[-1]))),
                              positions={}, unfilled=[])
    output = stitched.to_json()
    output["metrics"] = {name: oos.get(name) for name in JSON_METRICS}
    if args.json:
        _print_json(summary | {"trades": output["trades"], "equity": output["equity"]})
    else:
        print(f"walk-forward {_duration(train_ns)}/{_duration(test_ns)}: {len(steps)} windows")
        print(f"{'#':>3} {'test from':<25} {'in-sample ret':>13} {'out-of-sample ret':>17} {'efficiency':>10}  params")
        for row in reports:
            if "skipped" in row:
                print(f"{row['index']:>3} {row['test_start']:<25} skipped: {row['skipped']}")
                continue
            print(f"{row['index']:>3} {row['test_start']:<25} {_pct(row['in_sample']['total_return']):>13} "
                  f"{_pct(row['out_of_sample']['total_return']):>17} {_num(row['efficiency']):>10}  "
                  f"{json.dumps(row['params'])}")
        print("out of sample, stitched:")
        print("\n".join(_metric_lines(oos)))
        print(f"walk-forward efficiency (annualised out-of-sample / in-sample return): {_num(overall)}")
    _report(prepared, stitched, f"Walk-forward (out of sample): {args.strategy} on {args.symbol} {args.timeframe}",
            _details(prepared, last_params, walk_forward=f"{_duration(train_ns)}/{_duration(test_ns)}",
                     efficiency="n/a" if overall is None else f"{overall:.3f}"), frame=between(frame, steps[0].test_start, prepared.history.until_ns))
    store(prepared, "walk_forward", prepared.run_record(
        "walk_forward", last_params, settings=prepared.run.to_json() | _search_settings(args, trials, base)
        | {"walk_forward": f"{_duration(train_ns)}/{_duration(test_ns)}"},
        metrics=oos, trades=output["trades"], equity=output["equity"], summary=summary))
    return 0


def _duration(ns: int) -> str:
    from tradeflow.timeframes import DAY_NS, HOUR_NS, MINUTE_NS, WEEK_NS

    for unit, length in (("w", WEEK_NS), ("d", DAY_NS), ("h", HOUR_NS), ("m", MINUTE_NS)):
        if ns % length == 0:
            return f"{ns // length}{unit}"
    return f"{ns}ns"
