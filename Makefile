# docker-reroll: install, test, demo, benchmark. Every target works on a fresh Debian or Ubuntu machine. The test and
# lint tools live in a virtual environment (VENV, default .venv), never in the system's Python.
PYTHON ?= $(shell command -v python3)
PLUGIN_DIR ?= $(or $(DOCKER_CONFIG),$(HOME)/.docker)/cli-plugins
VENV ?= .venv
# Made once the tools are in, again when pyproject.toml changes.
DEV_TOOLS := $(VENV)/.dev-tools
# Commands run as in the activated environment: python3, pip and pytest are its own.
IN_VENV := PATH="$(abspath $(VENV))/bin:$$PATH"

.DEFAULT_GOAL := help
.PHONY: help install uninstall dev test unit lint demo bench provision

help:  ## this list
	@sed -n 's/^\([a-z]*\):.*## \(.*\)/\1\t\2/p' $(MAKEFILE_LIST) | expand -t 12

install:  ## put the plugin (one executable file) where `docker reroll` finds it
	$(PYTHON) scripts/build_plugin.py $(PLUGIN_DIR)/docker-reroll

uninstall:  ## remove that file
	rm -f $(PLUGIN_DIR)/docker-reroll

provision:  ## Docker engine, compose v2 and v1, local base image (idempotent; needs root)
	bash scripts/provision.sh

dev: $(DEV_TOOLS)  ## the test and lint tools (pyproject.toml's `dev` extra) in the virtual environment

$(DEV_TOOLS): pyproject.toml
	PYTHON=$(PYTHON) bash scripts/venv.sh $(VENV)
	touch $@

test: $(DEV_TOOLS)  ## everything, against a real engine (provisioned first when none answers; needs root then)
	$(IN_VENV) bash scripts/test.sh

unit: $(DEV_TOOLS)  ## the tests that need no engine
	$(IN_VENV) python3 -m pytest -q tests/unit

lint: $(DEV_TOOLS)  ## ruff and mypy
	$(IN_VENV) python3 -m ruff check src tests scripts bench
	$(IN_VENV) python3 -m mypy

demo:  ## zero-downtime deploy under load behind HAProxy, with a report (provisions first; needs root then)
	bash scripts/demo.sh

bench: $(DEV_TOOLS)  ## deploy timings, start-up times and memory
	$(IN_VENV) bash scripts/bench.sh
