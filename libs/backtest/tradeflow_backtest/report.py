"""``--report FILE.html``: one self-contained HTML file about a run (plotly, its JavaScript inlined).

Sections: the metrics table and the run's settings; the price with the trades on it (entries
as green triangles up, exits red triangles down, at their fill times and prices); the equity
curve with the drawdown below it; the monthly returns as a year x month table of colours.
Nothing is fetched when the file is opened (no CDN, no fonts), so it can be mailed or archived.

Big histories are thinned for the charts only (the figures come from the full run): the price
keeps each bucket's first, highest, lowest and last close, equity its lowest and highest point
per bucket, so no spike or drawdown is hidden; at most :data:`MAX_POINTS` points a series.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tradeflow_trading.strategy.candles import CandleFrame

from tradeflow_backtest.result import BacktestResult

MAX_POINTS = 4000
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
PERCENT_METRICS = {"total_return", "cagr", "max_drawdown", "win_rate", "exposure"}


def thin(ts: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``max_points`` points keeping each bucket's first, lowest, highest and last."""
    n = values.shape[0]
    if n <= max_points:
        return ts, values
    buckets = np.array_split(np.arange(n), max_points // 4)
    keep = set()
    for rows in buckets:
        part = values[rows]
        keep.update((int(rows[0]), int(rows[np.argmin(part)]), int(rows[np.argmax(part)]), int(rows[-1])))
    order = np.array(sorted(keep))
    return ts[order], values[order]


def monthly_returns(equity_ts: np.ndarray, equity: np.ndarray, initial: float) -> pd.DataFrame:
    """Return of each calendar month (UTC): its last equity over the previous month's last (the
    initial cash for the first); rows are years, columns 1..12, NaN where the run was not."""
    if equity.size == 0:
        return pd.DataFrame(columns=range(1, 13))
    # A point is the equity at a candle's end: the one at midnight closes the month before.
    series = pd.Series(equity, index=pd.to_datetime(np.asarray(equity_ts) - 1, utc=True))
    month_end = series.groupby([series.index.year, series.index.month]).last()
    previous = np.concatenate(([initial], month_end.to_numpy()[:-1]))
    returns = month_end.to_numpy() / previous - 1.0
    table = pd.DataFrame({"year": [k[0] for k in month_end.index], "month": [k[1] for k in month_end.index],
                          "return": returns})
    return table.pivot(index="year", columns="month", values="return").reindex(columns=range(1, 13))


def build_figures(result: BacktestResult, frame: CandleFrame, symbol: str) -> list[tuple[str, go.Figure]]:
    times = pd.to_datetime(frame.ts_start, utc=True)
    price = make_subplots(rows=1, cols=1)
    price_ts, closes = thin(np.asarray(frame.ts_start), np.asarray(frame.close))
    price.add_trace(go.Scatter(x=pd.to_datetime(price_ts, utc=True), y=closes, mode="lines", name=f"{symbol} close",
                               line={"color": "#4a5568", "width": 1}))
    if len(frame) <= 600:  # few enough candles to draw them as candles
        price.add_trace(go.Candlestick(x=times, open=frame.open, high=frame.high, low=frame.low, close=frame.close,
                                       name="candles", opacity=0.6))
    trades = result.trades
    if trades:
        price.add_trace(go.Scatter(
            x=pd.to_datetime([t.entry_ts for t in trades], utc=True), y=[float(t.entry_price) for t in trades],
            mode="markers", name="entries", marker={"symbol": "triangle-up", "size": 9, "color": "#2f855a"},
            text=[f"buy {t.quantity} @ {t.entry_price}" for t in trades], hoverinfo="text+x"))
        price.add_trace(go.Scatter(
            x=pd.to_datetime([t.exit_ts for t in trades], utc=True), y=[float(t.exit_price) for t in trades],
            mode="markers", name="exits", marker={"symbol": "triangle-down", "size": 9, "color": "#c53030"},
            text=[f"sell @ {t.exit_price}, P&L {t.pnl:.2f}" for t in trades], hoverinfo="text+x"))
    price.update_layout(title=f"{symbol}: price and trades", height=420, xaxis_rangeslider_visible=False,
                        margin={"t": 50, "b": 30, "l": 60, "r": 20})

    initial = float(result.initial_cash)
    equity = np.asarray(result.equity, dtype=float)
    with_start = np.concatenate(([initial], equity))
    drawdown = 1.0 - with_start / np.maximum.accumulate(with_start)
    curve = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    eq_ts, eq_values = thin(np.asarray(result.equity_ts), equity)
    curve.add_trace(go.Scatter(x=pd.to_datetime(eq_ts, utc=True), y=eq_values, mode="lines", name="equity",
                               line={"color": "#2b6cb0"}), row=1, col=1)
    dd_ts, dd_values = thin(np.asarray(result.equity_ts), -drawdown[1:])
    curve.add_trace(go.Scatter(x=pd.to_datetime(dd_ts, utc=True), y=dd_values, mode="lines", name="drawdown",
                               fill="tozeroy", line={"color": "#c53030"}), row=2, col=1)
    curve.update_yaxes(title_text="equity", row=1, col=1)
    curve.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    curve.update_layout(title="Equity and drawdown", height=480, margin={"t": 50, "b": 30, "l": 60, "r": 20})

    table = monthly_returns(np.asarray(result.equity_ts), equity, initial)
    months = go.Figure(go.Heatmap(
        z=table.to_numpy(dtype=float), x=list(MONTHS), y=[str(y) for y in table.index], colorscale="RdYlGn", zmid=0,
        text=[[("" if np.isnan(v) else f"{v:.1%}") for v in row] for row in table.to_numpy(dtype=float)],
        texttemplate="%{text}", hovertemplate="%{y} %{x}: %{text}<extra></extra>", colorbar={"tickformat": ".0%"}))
    months.update_layout(title="Monthly returns", height=max(220, 90 + 40 * len(table)),
                         margin={"t": 50, "b": 30, "l": 60, "r": 20}, yaxis={"type": "category"})
    return [("price", price), ("equity", curve), ("months", months)]


def _metric_text(name: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if name in PERCENT_METRICS:
        return f"{value:.2%}"
    if name == "max_drawdown_duration_s":
        return f"{value / 86_400:,.1f} days"
    if isinstance(value, float):
        return f"{value:,.4f}"
    return str(value)


def render(result: BacktestResult, frame: CandleFrame, *, title: str, symbol: str,
           details: Mapping[str, Any]) -> str:
    """The report as HTML text (see the module docstring)."""
    figures = build_figures(result, frame, symbol)
    parts = []
    for i, (name, figure) in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"chart-{name}",
                                    config={"displaylogo": False, "responsive": True}))
    metrics = result.metrics.as_dict()
    rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(_metric_text(name, value))}</td></tr>"
                   for name, value in metrics.items())
    detail_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_detail(v))}</td></tr>"
                          for k, v in details.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #1a202c; }}
h1 {{ font-size: 1.4em; }} .tables {{ display: flex; gap: 40px; flex-wrap: wrap; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 3px 12px; border-bottom: 1px solid #e2e8f0; text-align: left; }}
td {{ font-variant-numeric: tabular-nums; }} section {{ margin-top: 18px; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<div class="tables"><table id="metrics"><caption>Metrics</caption>{rows}</table>
<table id="settings"><caption>Run</caption>{detail_rows}</table></div>
{"".join(f"<section>{part}</section>" for part in parts)}
</body></html>
"""


def _detail(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def write_report(path: Path, result: BacktestResult, frame: CandleFrame, *, title: str, symbol: str,
                 details: Mapping[str, Any]) -> None:
    path.write_text(render(result, frame, title=title, symbol=symbol, details=details), encoding="utf-8")
