"""``--report FILE.html`` opened in a real (headless) browser: it renders every chart from the file
alone, with no console error and no request to the network; the screenshot is kept."""

from __future__ import annotations

import re

import pytest
from tradeflow_backtest.data import write_candles_csv
from tradeflow_ops.cli.main import main

from tests.headless_browser import HeadlessChromium
from tests.strategy_candles import random_walk


@pytest.fixture(scope="module")
def browser():
    with HeadlessChromium() as chromium:
        yield chromium


def test_the_report_renders_offline_without_console_errors(tmp_path, browser, capsys):
    candles = tmp_path / "candles.csv"
    with candles.open("w") as out:
        write_candles_csv(random_walk(24 * 120, 41, tf="1h", volatility=0.01), out)
    report = tmp_path / "report.html"
    code = main(["backtest", "--strategy", "sma_cross", "--params", '{"fast": 10, "slow": 30}', "--exchange", "binance",
                 "--symbol", "BTC/USDT", "--timeframe", "1h", "--since", "2026-01-05", "--until", "2026-05-05",
                 "--candles", str(candles), "--report", str(report), "--no-store", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert report.stat().st_size > 3_000_000  # plotly.js inlined (the page is opened with no network below)

    page = browser.open(report.as_uri())
    page.wait_until("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", 60)
    shot = page.screenshot()
    (tmp_path / "report.png").write_bytes(shot)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000
    assert page.errors() == []
    assert {url.split(":", 1)[0] for url in page.requested_urls()} <= {"file", "data", "blob"}
    # What a reader sees: four charts drawn with data, the trades on the price, months, the metrics.
    assert page.evaluate("document.querySelectorAll('#chart-price .scatterlayer .trace').length") == 3
    assert page.evaluate("document.querySelectorAll('#chart-equity .scatterlayer .trace path.js-line').length") == 2
    assert page.evaluate("document.querySelectorAll('#chart-months .heatmaplayer image, #chart-months .hm').length") >= 1
    months = page.evaluate("Array.from(document.querySelectorAll('#chart-months .xtick text')).map(t => t.textContent)")
    assert months[:3] == ["Jan", "Feb", "Mar"]
    shown = page.evaluate("document.querySelector('#metrics').innerText")
    total = re.search(r"total_return\s+(-?[\d.]+%)", out).group(1)
    assert re.search(rf"total_return\s+{re.escape(total)}", shown)


def test_the_check_sees_a_page_that_fails(tmp_path, browser):
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>console.error('drawn wrong'); undefinedFunction();</script></body></html>")
    page = browser.open(broken.as_uri())
    errors = page.errors()
    assert any("drawn wrong" in e for e in errors) and any("undefinedFunction" in e for e in errors)
