"""An OTLP/HTTP trace receiver on loopback: what a collector (Jaeger, the OpenTelemetry Collector)
would receive from the services, decoded into plain :class:`ReceivedSpan` records.

``POST /v1/traces`` with an ``ExportTraceServiceRequest`` in protobuf (the SDK exporter's format;
gzip accepted), answered with an empty ``ExportTraceServiceResponse`` as a collector does.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    kind: int
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...] = field(default=())  # (trace id, span id)


def _value(any_value) -> Any:
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, which) if which else None


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.endpoint = ""

    async def start(self) -> OtlpReceiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text=f"expected application/x-protobuf, got {request.content_type}")
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.requests += 1
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(ReceivedSpan(
                        service=str(resource.get("service.name", "")), name=span.name,
                        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(), kind=span.kind,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links)))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    async def wait_for(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            assert time.monotonic() < deadline, (
                f"{what}: not received within {timeout_s}s; {len(self.spans)} spans: "
                f"{sorted({(s.service, s.name) for s in self.spans})}")
            await asyncio.sleep(0.2)

    def by_id(self) -> dict[str, ReceivedSpan]:
        return {s.span_id: s for s in self.spans}

    def ancestry(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        """``span`` and its parents up to the root, root first; stops where a parent was not received."""
        spans = self.by_id()
        chain = [span]
        while chain[-1].parent_span_id and chain[-1].parent_span_id in spans:
            chain.append(spans[chain[-1].parent_span_id])
        return chain[::-1]
