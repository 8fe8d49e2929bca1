#!/usr/bin/env bash
# `make test` (the README's test command, run in the virtual environment that `make dev` filled with the test tools):
# make sure a Docker engine and the local registry the Swarm tests push to answer (provisioning them on a bare Debian
# machine), then run the whole suite against them. A missing engine or registry is a failure here, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! timeout 10 docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1 \
    || ! docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
    || ! timeout 10 python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:5000/v2/")' 2>/dev/null; then
  bash scripts/provision.sh
fi

export REROLL_REQUIRE_ENGINE=1
exec python3 -m pytest -v --durations=15 "$@"
