#!/usr/bin/env bash
# System packages a fresh Debian 12 machine lacks: PostgreSQL 15 server binaries and the
# Apache TimescaleDB build. Idempotent; a no-op when everything is there.
set -euo pipefail
SUDO=""; if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v runuser >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash "$(dirname "$0")/install-timescaledb.sh" || echo "WARNING: TimescaleDB could not be installed; the database runs as plain PostgreSQL" >&2
