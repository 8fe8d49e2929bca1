#!/usr/bin/env bash
# `make demo`: provision when no engine answers (Debian), then run the zero-downtime demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! timeout 10 docker info >/dev/null 2>&1 || ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  bash scripts/provision.sh
fi
exec python3 scripts/demo.py "$@"
