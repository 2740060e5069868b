# One image recipe for every Tradeflow service, and for the operator tools. Build from the
# repository root:
#   docker build --build-arg SERVICE=ingest -t tradeflow/ingest:dev .
#   docker build --build-arg SERVICE=candle-builder -t tradeflow/candle-builder:dev .
#   docker build --build-arg SERVICE=tools -t tradeflow/tools:dev .   # `tradeflow` (db upgrade, topics, backtest, ...)
# A service image carries the shared libraries that service depends on and nothing else (no
# operator CLI, no local broker binary); the tools image carries the operator command and every
# service, since migrations form one chain across services (docs/adr/0012), and the research
# commands of tradeflow-backtest (backtest, optimize, ...; docs/adr/0021).
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: wheels of the libs, then the service (or the tools) installed into a venv ---
FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN test -n "${SERVICE}" || (echo "build with --build-arg SERVICE=<service>|tools" >&2; exit 1)
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY libs/ /src/libs/
COPY services/ /src/services/
# The libs as local wheels: pip takes from them exactly the ones the service depends on.
RUN pip wheel --no-deps --wheel-dir /wheels /src/libs/* \
 && if [ "${SERVICE}" = "tools" ]; then pip install --find-links /wheels /src/libs/ops /src/libs/backtest /src/services/*; \
    else pip install --find-links /wheels "/src/services/${SERVICE}"; fi \
 && if [ "${SERVICE}" = "tools" ]; then entry='exec tradeflow "$@"'; \
    else entry="exec tradeflow-service ${SERVICE}"; fi \
 && printf '#!/bin/sh\n%s\n' "${entry}" > /opt/venv/bin/tradeflow-entrypoint \
 && chmod 0755 /opt/venv/bin/tradeflow-entrypoint

# --- runtime: the venv only; no sources, no build tools ---
FROM ${PYTHON_IMAGE}
# Numeric uid/gid so Kubernetes' runAsNonRoot can verify the user without a passwd lookup.
RUN groupadd --system --gid 10001 tradeflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tradeflow
COPY --from=builder /opt/venv /opt/venv
# No .pyc writes at run time: the root filesystem is read-only in Kubernetes.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# The only writable place at run time (an emptyDir in Kubernetes); the user has no home.
ENV HOME=/tmp
WORKDIR /tmp
# Liveness only (the process serves HTTP); readiness (/readyz) is for orchestrators to poll.
# The port is TRADEFLOW_HTTP_PORT, which compose and Kubernetes always set for a service.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['TRADEFLOW_HTTP_PORT'], timeout=4)"]
ENTRYPOINT ["tradeflow-entrypoint"]
