"""A loopback stand-in for the strategy service's ``/v1/backtests`` (built by another service):
records what the research commands POST and answers like the contract says."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BacktestsEndpoint:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.posted: list[dict] = []
        self.refused: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/backtests":
                    return self._answer(404, {"detail": "not found"})
                if self.headers.get("Authorization") != f"Bearer {endpoint.api_key}":
                    endpoint.refused.append(self.headers.get("Authorization", ""))
                    return self._answer(401, {"detail": "invalid key"})
                run = json.loads(body)
                endpoint.posted.append(run)
                self._answer(201, run | {"id": f"run-{len(endpoint.posted)}"})

            def do_GET(self) -> None:
                self._answer(200, endpoint.posted)

            def _answer(self, status: int, value) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BacktestsEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
