#!/usr/bin/env bash
# `make test` (the README's test command, run in the virtual environment that `make dev` filled with the test tools):
# make sure a Docker engine and the local registry the Swarm tests push to answer (provisioning them on a bare Debian
# machine), then run the whole suite against them. A missing engine or registry is a failure here, never a skip.
#
# The suite runs in three phases, so that it is fast without changing what a test proves:
#   1. every test whose meaning does not need the machine to itself, in parallel workers (each engine test has a
#      compose project, names and ports of its own; the Swarm tests share one worker and a swarm made before, and
#      the proxy-mode tests run one HAProxy and one nginx test at a time: two of a kind at once, each with its
#      load, its proxy and Docker's DNS busy, kept two cores busy enough that checks timed out); these groups are
#      the longest chains, so they are handed out first (tests/conftest.py);
#   2. the `serial` tests, one at a time with nothing beside them: zero failed requests at the tightest timings, and
#      the control that without the drain floor the same stack stops containers HAProxy still routes to;
#   3. the `exclusive` tests, which stop and restart the engine itself, or make it leave a swarm.
# Arguments go to pytest in every phase (e.g. a file or -k); a phase they select nothing from is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! timeout 10 docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1 \
    || ! docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
    || ! timeout 10 python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:5000/v2/")' 2>/dev/null; then
  bash scripts/provision.sh
fi

export REROLL_REQUIRE_ENGINE=1
workers=${REROLL_TEST_WORKERS:-4}  # more workers than cores: each test also waits (health checks, drains)
# (3 took 921 s instead of 684 s on two cores and failed as many tests)

# Each phase has a time limit, so that a run ends, with what it found, well inside CI's 30 minutes whatever hangs (an
# engine that stops answering, say): at the limit pytest gets SIGINT, and prints what passed and where it stood.
# The phases share one budget, 27 min, which leaves CI's provisioning inside its 30: the parallel phase may take up to
# 1170 s of it, and each later phase gets what the ones before it left, less what the ones after it are sure of
# (serial 300 s, exclusive 150 s), so that a phase slower than usual on a busy machine takes time from none but
# itself. (Usual times here on clean clones: 720-920 s, 160-320 s, 70-90 s.)
budget=${REROLL_TEST_BUDGET:-1620} limit_parallel=${REROLL_TEST_LIMIT_PARALLEL:-1170}
least_serial=${REROLL_TEST_LIMIT_SERIAL:-300} least_exclusive=${REROLL_TEST_LIMIT_EXCLUSIVE:-150}
left() {  # the seconds the budget has left, keeping $1 for later phases, but never fewer than $2
  local rest=$((budget - (SECONDS - budget_started) - $1))
  echo $((rest > $2 ? rest : $2))
}

failed=0
phase() {  # every phase runs, so one run shows every failure; pytest's 5 is "no test selected": nothing to do
  local name=$1 limit=$2; shift 2
  printf '\n==> %s (time limit %ss)\n' "$name" "$limit"
  local started=$SECONDS code=0
  timeout --signal=INT --kill-after=30 "$limit" python3 -m pytest "$@" || code=$?
  [ "$code" -ne 124 ] || printf '==> %s: stopped at its time limit (%ss)\n' "$name" "$limit"
  printf '==> %s: %ss (exit %s)\n' "$name" $((SECONDS - started)) "$code"
  [ "$code" -eq 0 ] || [ "$code" -eq 5 ] || failed=$code
  engine_check "$name"
}

# An engine that stopped answering fails every later test for no reason of its own: say so once, with the end of
# its log, and start it again (provisioning kills what is left of it) so that the next phase proves something.
engine_check() {
  timeout 20 docker info >/dev/null 2>&1 && return 0
  printf '==> the engine did not answer after the %s phase; the end of its log:\n' "$1"
  tail -n 30 /var/log/dockerd.log || true
  pkill -KILL -x dockerd || true
  pkill -KILL -x containerd || true
  sleep 2
  bash scripts/provision.sh
}

# The images built from Debian's packages (apt-get in a container keeps both cores busy for a minute) are built before
# the tests start, as the tests' fixtures would build them (same project names, so the fixtures then find them built):
# no test that measures time runs beside such a build (three failed at once in CI when they did). A build that fails
# here is tried again by its fixture, which fails the tests that need it.
prebuild() {
  local started=$SECONDS
  printf '\n==> images\n'
  build() {  # quiet unless it fails (compose warns on every build that buildx is not installed)
    local output
    output=$(timeout 900 docker compose -p "$1" build -q 2>&1) || printf '==> %s: build failed:\n%s\n' "$2" "$output"
  }
  (cd examples/haproxy && build rerollbuild examples/haproxy)  # first: the app image the other two reuse from cache
  (cd examples/proxy-haproxy && build rerollproxybuild examples/proxy-haproxy) &
  (cd examples/proxy-nginx && build rerollngxbuild examples/proxy-nginx) &
  wait
  printf '==> images: %ss\n' $((SECONDS - started))
}
prebuild

# The Swarm tests run in the parallel phase, in a swarm made before it and left after it, never during it: leaving a
# swarm makes engine 20.10 forget the DNS names of every container it runs (libnetwork's cleanupServiceDiscovery
# for all networks), so the proxies of the tests beside it answered NXDOMAIN for their apps until these were
# recreated (502s seen in CI). A swarm that was there before is used and kept (the Swarm tests do the same).
swarm_made=
leave_swarm() {
  [ -n "$swarm_made" ] || return 0
  swarm_made=
  timeout 60 docker swarm leave --force >/dev/null || printf '==> could not leave the swarm made for the tests\n'
}
trap leave_swarm EXIT  # an interrupted run too
if [ "$(timeout 20 docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = inactive ]; then
  timeout 60 docker swarm init --advertise-addr 127.0.0.1 >/dev/null && swarm_made=1
fi
budget_started=$SECONDS
phase "parallel ($workers workers)" "$limit_parallel" -n "$workers" --dist loadgroup \
  -m "not serial and not exclusive" --durations=15 -q "$@"
leave_swarm
phase "serial" "$(left "$least_exclusive" "$least_serial")" -m "serial" --durations=5 -v "$@"
phase "exclusive" "$(left 0 "$least_exclusive")" -m "exclusive" -v "$@"
exit "$failed"
