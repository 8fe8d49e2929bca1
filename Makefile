# docker-reroll: install, test, demo, benchmark. Every target works on a fresh Debian machine.
PYTHON ?= $(shell command -v python3)
PLUGIN_DIR ?= $(or $(DOCKER_CONFIG),$(HOME)/.docker)/cli-plugins

.PHONY: install uninstall dev test unit lint demo bench provision

install:  ## put the plugin (one executable file) where `docker reroll` finds it
	$(PYTHON) scripts/build_plugin.py $(PLUGIN_DIR)/docker-reroll

uninstall:
	rm -f $(PLUGIN_DIR)/docker-reroll

provision:  ## Docker engine, compose v2 and v1, local base image (idempotent)
	bash scripts/provision.sh

dev:  ## the test and lint tools, as pyproject.toml's `dev` extra declares them
	$(PYTHON) -m pip install --quiet --editable '.[dev]'

test: dev  ## everything, against a real engine (provisioned first when none answers)
	bash scripts/test.sh

unit: dev  ## the tests that need no engine
	$(PYTHON) -m pytest -q tests/unit

lint: dev
	$(PYTHON) -m ruff check src tests scripts bench
	$(PYTHON) -m mypy

demo:  ## zero-downtime deploy under load behind HAProxy, with a report
	bash scripts/demo.sh

bench:  ## deploy timings, start-up times and memory
	bash scripts/bench.sh
