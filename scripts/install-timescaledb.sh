#!/usr/bin/env bash
# Builds and installs the Apache-licensed TimescaleDB for the local PostgreSQL 15
# from Debian's own source package (trixie), as shared/design.md describes.
# Bookworm ships no TimescaleDB binary package; the Timescale-licensed build
# (continuous aggregates, compression, policies) lives only in the official image.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"

if [ -f "$("$PG_CONFIG" --sharedir)/extension/timescaledb.control" ]; then
  echo "timescaledb: already installed for PostgreSQL ${PG_MAJOR}"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

SRC_LIST=/etc/apt/sources.list.d/tradeflow-trixie-src.sources
if ! apt-cache showsrc timescaledb 2>/dev/null | grep -q '^Package: timescaledb'; then
  echo "timescaledb: adding Debian trixie deb-src entry ($SRC_LIST)"
  $SUDO tee "$SRC_LIST" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $SUDO apt-get update -qq
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "postgresql-server-dev-${PG_MAJOR}" cmake build-essential dpkg-dev libssl-dev libkrb5-dev >/dev/null

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
apt-get source -qq --download-only timescaledb >/dev/null
dpkg-source -x --no-check ./timescaledb_*.dsc src >/dev/null
cd src
# Debian's source is already stripped of the TSL directory (+dfsg): build Apache-only.
./bootstrap -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF \
  -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=NO -DUSE_TELEMETRY=OFF >/dev/null
make -C build -j"$(nproc)" >/dev/null
$SUDO make -C build install >/dev/null
echo "timescaledb: installed $(grep default_version "$("$PG_CONFIG" --sharedir)/extension/timescaledb.control")"
