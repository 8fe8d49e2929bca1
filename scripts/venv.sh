#!/usr/bin/env bash
# `make dev`: a virtual environment (default .venv) with the test and lint tools of pyproject.toml's `dev` extra and
# this checkout installed editable. Nothing goes into the system's Python (Debian's and Ubuntu's refuse pip there:
# "externally-managed-environment"), and a machine without pip gets one inside the environment. pip uses its usual
# configuration and cache, so wheels already on the machine are reused.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'venv: %s\n' "$*" >&2; }
venv=${1:-.venv}
python=${PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
  log "no $python: install Python 3.9 or newer (Debian/Ubuntu: apt-get install python3)"
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a package of its own.
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    package=python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing $package (Python's venv module needs it here)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    else
      log "$python cannot make a virtual environment: install $package (sudo apt-get install $package), or run as root"
      exit 1
    fi
  fi
  log "creating $venv"
  "$python" -m venv "$venv"
fi

log "installing the dev tools into $venv"
"$venv/bin/python" -m pip install --quiet --editable '.[dev]'
