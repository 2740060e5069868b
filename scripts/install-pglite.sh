#!/usr/bin/env bash
# The licensed TimescaleDB the test suite runs its `timescaledb` mode against (docs/adr/0011):
# PGlite (PostgreSQL in WebAssembly) with the TimescaleDB extension, served over TCP by
# tests/pglite/server.mjs. Needs Node.js >= 18 and npm; without them the suite still runs the
# other modes and says in its header that licensed mode was not run. Idempotent.
set -euo pipefail
dir="$(cd "$(dirname "$0")/../tests/pglite" && pwd)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "WARNING: node/npm not found: the tests will not run the licensed TimescaleDB mode (PGlite)" >&2
  exit 0
fi
if [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
  exit 0  # already installed from this lock file
fi
echo "pglite: installing the test suite's licensed TimescaleDB (npm ci in tests/pglite)" >&2
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2 \
  || echo "WARNING: npm ci failed: the tests will not run the licensed TimescaleDB mode (PGlite)" >&2
