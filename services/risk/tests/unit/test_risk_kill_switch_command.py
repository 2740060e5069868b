"""``tradeflow kill-switch``: its arguments, and a clear one-line failure when risk is not there."""

from __future__ import annotations

import socket

import pytest
from tradeflow_ops.cli.main import main


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("argv", [["kill-switch", "on"], ["kill-switch", "on", "acc", "--all"],
                                  ["kill-switch", "maybe", "acc"]])
def test_it_needs_on_or_off_and_exactly_one_account_or_all(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "usage: tradeflow kill-switch" in capsys.readouterr().err


def test_an_unreachable_risk_is_one_line_naming_the_url(capsys, monkeypatch):
    monkeypatch.delenv("TRADEFLOW_RISK_URL", raising=False)
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["kill-switch", "on", "--all", "--url", url]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tradeflow kill-switch: cannot reach risk at {url}/v1/kill-switch: ")
    assert len(err.splitlines()) == 1
