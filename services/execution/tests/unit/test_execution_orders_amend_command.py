"""``tradeflow orders amend``: its arguments, and a clear one-line failure when risk is not there."""

from __future__ import annotations

import socket

import pytest
from tradeflow_ops.cli.main import main


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("argv", [["orders", "amend"], ["orders", "amend", "o1", "--quantity", "lots"],
                                  ["orders", "amend", "o1", "--limit-price", "-3"]])
def test_it_needs_an_order_and_positive_decimals(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "usage: tradeflow orders amend" in capsys.readouterr().err


def test_an_amendment_changes_something(capsys):
    assert main(["orders", "amend", "o1", "--url", f"http://127.0.0.1:{closed_port()}"]) == 1
    assert "give --quantity, --limit-price or both" in capsys.readouterr().err


def test_an_unreachable_risk_is_one_line_naming_the_url(capsys, monkeypatch):
    monkeypatch.delenv("TRADEFLOW_RISK_URL", raising=False)
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["orders", "amend", "o1", "--quantity", "0.2", "--url", url]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tradeflow orders: risk at ") and url in err
    assert len(err.splitlines()) == 1
