#!/usr/bin/env bash
# System packages a fresh Debian 12 machine lacks for `make setup`: Python's venv module, make,
# PostgreSQL 15 server binaries, the Apache TimescaleDB build, Chromium (the report test) and
# promtool (Debian's prometheus package: the dashboards' PromQL and the alert rules' unit tests).
# Idempotent: a no-op (no apt call at all) when everything is there.
set -euo pipefail
SUDO=""; if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
APT_INSTALL=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends)

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v make >/dev/null || need+=(make)
command -v runuser >/dev/null || need+=(util-linux)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
# The test of `tradeflow backtest --report` opens the HTML report in headless Chromium.
command -v chromium >/dev/null || need+=(chromium)
# promtool checks the dashboards' expressions and runs deploy/prometheus/tests (promtool test rules).
command -v promtool >/dev/null || need+=(prometheus)

if [ ${#need[@]} -gt 0 ]; then
  echo "system-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  if [[ " ${need[*]} " == *" postgresql-15 "* ]] && [ ! -f /etc/postgresql-common/createcluster.conf ]; then
    # Tradeflow runs its own private cluster (`tradeflow infra up`); Debian's default cluster
    # on port 5432 would only be an extra server to keep running.
    $SUDO "${APT_INSTALL[@]}" postgresql-common >/dev/null
    $SUDO sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
  fi
  $SUDO "${APT_INSTALL[@]}" "${need[@]}" >/dev/null
  if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    # Only promtool is wanted: not a Prometheus server running on this machine's port 9090.
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

bash "$(dirname "$0")/install-timescaledb.sh" \
  || echo "WARNING: TimescaleDB could not be installed; the local database runs as plain PostgreSQL" >&2
