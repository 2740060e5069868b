"""The instance and backtest APIs against the real database (and broker): what a client sees.

Two apps on one database stand for two replicas: an instance created through one runs on the
other after its next sync.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
import pytest
from tradeflow.settings import ConfigurationError
from tradeflow_strategy.bootstrap import SERVICE
from tradeflow_strategy.settings import StrategySettings

from tests.served_app import served
from tests.strategy_service import service_settings, strategy_app

pytestmark = pytest.mark.integration

ACCOUNTS = [{"id": "acct-paper", "exchange": "paper", "mode": "paper", "balances": {"USDT": "1000"}},
            {"id": "acct-binance", "exchange": "binance", "mode": "paper"}]


def settings_for(kafka_bootstrap: str, database_url: str, api_key: str, name: str) -> StrategySettings:
    return service_settings(kafka_bootstrap, database_url, api_key, name, accounts=ACCOUNTS)


def running(settings: StrategySettings, api_key: str):
    return strategy_app(settings, api_key)


async def test_instances_are_created_checked_listed_paused_resumed_and_deleted(
        kafka_bootstrap, database_url, api_key, unique_name):
    settings = settings_for(kafka_bootstrap, database_url, api_key, unique_name)
    one = f"one-{unique_name[-8:]}"
    body = {"id": one, "strategy": "sma_cross", "account_id": "acct-paper", "exchange": "paper",
            "symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1m", "params": {"fast": 5}}
    async with running(settings, api_key) as api, running(settings, api_key) as other_replica:
        catalog = (await api.get("/v1/strategies/catalog")).json()
        sma = next(entry for entry in catalog if entry["name"] == "sma_cross")
        assert sma["params"]["properties"]["fast"] == {"type": "integer", "minimum": 1, "maximum": 10_000,
                                                       "default": 10, "description": "closes in the fast mean"}
        assert {"rsi", "grid", "dca", "breakout", "bollinger_reversion", "sma_cross_trend"} <= {e["name"] for e in catalog}

        refused = {
            "strategy": ({"strategy": "nope"}, "strategy: unknown strategy 'nope'; known:"),
            "params.fast": ({"params": {"fast": 40, "slow": 30}}, "params.fast: must be less than slow (30), got 40"),
            "params.speed": ({"params": {"speed": 1}}, "params.speed: unknown parameter"),
            "timeframe": ({"timeframe": "2m"}, "timeframe: unknown timeframe '2m'"),
            "account_id": ({"account_id": "acct-x"}, "account_id: no account 'acct-x' is configured; known: acct-paper"),
            "exchange": ({"exchange": "binance"}, "exchange: account 'acct-paper' trades on 'paper', not 'binance'"),
            "id": ({"id": "a:b"}, "id: 1-64 of letters"),
            "symbols": ({"symbols": []}, "symbols: required"),
        }
        for change, message in refused.values():
            answer = await api.post("/v1/strategies", json=body | change)
            assert answer.status_code == 422 and answer.json()["detail"].startswith(message), answer.text
        wrong_type = await api.post("/v1/strategies", json=body | {"symbols": "BTC/USDT"})
        assert wrong_type.status_code == 422 and wrong_type.json()["detail"][0]["loc"] == ["body", "symbols"]
        assert (await api.post("/v1/strategies", json=body, headers={"Authorization": "Bearer wrong-key-0123456789"})
                ).status_code == 401

        created = await api.post("/v1/strategies", json=body)
        assert created.status_code == 201, created.text
        assert created.json() | {"created_at": None, "updated_at": None} == {
            "id": one, "strategy": "sma_cross", "account_id": "acct-paper", "exchange": "paper",
            "symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1m", "params": {"fast": 5, "slow": 30},
            "enabled": True, "state": "running", "error": None, "created_at": None, "updated_at": None}
        assert (await api.post("/v1/strategies", json=body)).status_code == 200  # the same again: no change
        taken = await api.post("/v1/strategies", json=body | {"params": {"fast": 6}})
        assert taken.status_code == 409 and "exists with another definition" in taken.json()["detail"]

        assert one in [i["id"] for i in (await api.get("/v1/strategies")).json()]
        detail = (await other_replica.get(f"/v1/strategies/{one}")).json()
        assert detail["status"] == "waiting" and [m["symbol"] for m in detail["markets"]] == ["BTC/USDT", "ETH/USDT"]
        assert (await api.get("/v1/strategies/nope")).status_code == 404

        paused = await api.post(f"/v1/strategies/{one}/pause")
        assert paused.status_code == 200 and paused.json()["state"] == "paused"
        assert (await other_replica.get(f"/v1/strategies/{one}")).json()["status"] == "paused"
        assert (await api.post(f"/v1/strategies/{one}/resume")).json()["state"] == "running"
        assert (await api.post("/v1/strategies/nope/pause")).status_code == 404
        assert (await api.delete(f"/v1/strategies/{one}", headers={"Authorization": ""})).status_code == 401
        assert (await api.delete(f"/v1/strategies/{one}")).status_code == 204
        assert (await other_replica.get(f"/v1/strategies/{one}")).status_code == 404
        assert (await api.delete(f"/v1/strategies/{one}")).status_code == 404


async def test_an_instance_created_on_one_replica_runs_on_the_other_after_its_sync(
        kafka_bootstrap, database_url, api_key, unique_name):
    settings = settings_for(kafka_bootstrap, database_url, api_key, unique_name)
    instance_id = f"shared-{unique_name[-8:]}"
    first_app, second_app = SERVICE.create_app(settings), SERVICE.create_app(settings)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (httpx.AsyncClient(transport=httpx.ASGITransport(app=first_app), base_url="http://a",
                                  headers=headers) as first,
                first_app.router.lifespan_context(first_app), second_app.router.lifespan_context(second_app)):
        engine = _engine_of(second_app)
        assert instance_id not in engine.instances
        created = await first.post("/v1/strategies", json={
            "id": instance_id, "strategy": "rsi", "account_id": "acct-binance", "exchange": "binance",
            "symbols": ["SOL/USDT"], "timeframe": "5m"})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 10
        while instance_id not in engine.instances:  # the second replica polls every 0.2 s
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert engine.instances[instance_id].state == "running"
        await first.post(f"/v1/strategies/{instance_id}/pause")
        while engine.instances[instance_id].state != "paused":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


def _engine_of(app):
    """The engine inside an app (its components are in the runtime the app factory keeps)."""
    from tradeflow_strategy.instance_sync import InstanceSync

    (sync,) = [c for c in app.state.runtime.components if isinstance(c, InstanceSync)]
    return sync._engine  # noqa: SLF001


async def test_a_bad_instance_in_the_configuration_stops_the_start_naming_the_variable_and_the_entry(
        kafka_bootstrap, database_url, api_key, unique_name):
    bad = [{"id": f"ok-{unique_name[-8:]}", "strategy": "rsi", "account_id": "acct-paper", "exchange": "paper",
            "symbols": ["BTC/USDT"], "timeframe": "1m"},
           {"id": "nope", "strategy": "sma_cross", "account_id": "acct-paper", "exchange": "paper",
            "symbols": ["BTC/USDT"], "timeframe": "1m", "params": {"fast": 50}}]
    settings = settings_for(kafka_bootstrap, database_url, api_key, unique_name).model_copy(
        update={"instances": bad})
    with pytest.raises(ConfigurationError, match=r"TRADEFLOW_STRATEGY_INSTANCES \(entry 2\): params.fast: must be "
                                                 r"less than slow \(30\), got 50"):
        async with running(settings, api_key):
            pass


RUN = {"kind": "backtest", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30},
       "markets": [{"exchange": "binance", "symbol": "BTC/USDT"}], "timeframe": "1m",
       "since": "2026-01-01T00:00:00+00:00", "until": "2026-02-01T00:00:00Z",
       "settings": {"cash": "10000", "fee_bps": 10}, "metrics": {"total_return": 0.12, "sharpe": None, "trades": 2},
       "trades": [{"entry_ts": "2026-01-02T00:00:00+00:00", "pnl": "12.5"}],
       "equity": [{"ts": "2026-01-01T00:01:00+00:00", "equity": "10000"}], "summary": {"note": "first"}}


async def test_backtest_runs_are_stored_listed_newest_first_and_read_back_whole(
        kafka_bootstrap, database_url, api_key, unique_name):
    settings = settings_for(kafka_bootstrap, database_url, api_key, unique_name)
    strategy = f"bt-{unique_name[-8:]}"
    async with running(settings, api_key) as api:
        ids = []
        for kind in ("backtest", "optimize", "backtest"):
            answer = await api.post("/v1/backtests", json=RUN | {"strategy": strategy, "kind": kind})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        listed = (await api.get("/v1/backtests", params={"strategy": strategy})).json()
        assert [r["id"] for r in listed] == ids[::-1]
        assert "trades" not in listed[0] and "equity" not in listed[0]
        assert listed[0]["since"] == "2026-01-01T00:00:00+00:00" and listed[0]["until"] == "2026-02-01T00:00:00+00:00"
        only = (await api.get("/v1/backtests", params={"strategy": strategy, "kind": "optimize", "limit": 5})).json()
        assert [r["id"] for r in only] == [ids[1]]
        assert len((await api.get("/v1/backtests", params={"strategy": strategy, "limit": 1})).json()) == 1
        whole = (await api.get(f"/v1/backtests/{ids[0]}")).json()
        assert {k: whole[k] for k in ("trades", "equity", "metrics", "settings", "summary", "markets", "params")} == {
            k: RUN[k] for k in ("trades", "equity", "metrics", "settings", "summary", "markets", "params")}
        assert (await api.get("/v1/backtests/nope")).status_code == 404

        for change, field in (({"kind": "guess"}, "kind"), ({"timeframe": "2m"}, "timeframe"),
                              ({"since": "2026-01-01T00:00:00"}, "since"), ({"markets": []}, "markets"),
                              ({"until": "2025-01-01T00:00:00Z"}, "until")):
            answer = await api.post("/v1/backtests", json=RUN | change)
            assert answer.status_code == 422, answer.text
            assert field in json.dumps(answer.json()["detail"]), answer.text
        missing = await api.post("/v1/backtests", json={k: v for k, v in RUN.items() if k != "strategy"})
        assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "strategy"]
        assert (await api.post("/v1/backtests", json=RUN, headers={"Authorization": ""})).status_code == 401


async def test_the_strategies_command_adds_lists_pauses_resumes_and_removes_through_the_api(
        kafka_bootstrap, database_url, api_key, unique_name):
    settings = settings_for(kafka_bootstrap, database_url, api_key, unique_name)
    instance_id = f"cli-{unique_name[-8:]}"
    async with served(SERVICE.create_app(settings)) as base:
        env = {**os.environ, "TRADEFLOW_STRATEGY_URL": base, "TRADEFLOW_API_KEYS": api_key}

        async def tradeflow(*args: str, key: bool = True) -> tuple[int, str]:
            process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "tradeflow"), "strategies", *args,
                env=env if key else {k: v for k, v in env.items() if k != "TRADEFLOW_API_KEYS"},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await process.communicate()
            return process.returncode, out.decode()

        add = ("add", instance_id, "--strategy", "sma_cross", "--account", "acct-paper", "--exchange", "paper",
               "--symbols", "BTC/USDT,ETH/USDT", "--params", '{"fast": 4, "slow": 9}')
        assert await tradeflow(*add) == (0, f"{instance_id}: created (running)\n")
        assert await tradeflow(*add) == (0, f"{instance_id}: exists already, unchanged (running)\n")
        code, out = await tradeflow("add", f"{instance_id}-x", "--strategy", "sma_cross", "--account", "acct-paper",
                                    "--exchange", "paper", "--symbols", "BTC/USDT", "--params", '{"fast": 40}')
        assert code == 1 and "422: params.fast: must be less than slow (30), got 40" in out
        code, out = await tradeflow("list")
        line = next(line for line in out.splitlines() if line.startswith(instance_id))
        assert line == f'{instance_id}  sma_cross  running  acct-paper  paper  BTC/USDT,ETH/USDT  1m  {{"fast": 4, "slow": 9}}'
        code, out = await tradeflow("pause", instance_id, key=False)
        assert code == 1 and "401" in out
        assert await tradeflow("pause", instance_id) == (0, f"{instance_id}: paused\n")
        assert await tradeflow("resume", instance_id) == (0, f"{instance_id}: running\n")
        assert await tradeflow("remove", instance_id) == (0, f"{instance_id}: removed\n")
        code, out = await tradeflow("remove", instance_id)
        assert code == 1 and f"404: no strategy instance '{instance_id}'" in out
