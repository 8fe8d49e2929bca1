#!/usr/bin/env python3
"""Benchmark: proxy mode against the health-check drain, deploy times and failed requests under load.

Four series of the same app behind HAProxy, deployed in interleaved rounds (each round deploys every series once,
so a busy moment of the machine falls on all of them alike), each deploy under a load of its own (8 clients, 100
requests/s in all, that count every error):
  proxy mode, no Docker health check     examples/proxy-haproxy as it is
  proxy mode, Docker health check        the same with the app image's check (every 1 s)
  health-check drain                     examples/haproxy with the drain recipe (--pre-stop-cmd ... until unhealthy)
  another tool (with --other-tool PATH)  the same drain stack and recipe, deployed by another program that takes
                                         the same options (e.g. the original docker-reroll), for comparison
`--long`: an app that exits at once on SIGTERM, with 1.5 s requests (16 clients at 10 requests/s).
A benchmark, not a test: it prints each deploy and the medians, and exits 0.

    python3 bench/proxy_bench.py --replicas 1 --deploys 10 [--other-tool /path/to/docker-reroll-rs]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "src"))

from dockerfixtures import (  # noqa: E402
    DRAIN,
    ComposeProject,
    docker,
    install_plugin,
    new_proxy_stack,
    new_stack,
    stack_url,
    start_proxy_stack,
    start_stack,
)
from loadgen import LoadGenerator  # noqa: E402

HEALTHCHECK = """
    healthcheck:
      test: ["CMD", "/usr/local/bin/healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 2
"""
LONG_REQUESTS = """
    environment:
      APP_EXIT_AT_ONCE: "1"
      APP_RESPONSE_DELAY: "1.5"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="proxy mode against the health-check drain, under load")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--deploys", type=int, default=10, help="deploys per series (default 10)")
    parser.add_argument("--long", action="store_true", help="an app that exits at once, 1.5 s requests")
    parser.add_argument("--other-tool", metavar="PATH", help="a program run as PATH <drain options> app")
    args = parser.parse_args()

    config = tempfile.mkdtemp(prefix="reroll-bench-")
    install_plugin(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["DOCKER_CONFIG"] = config
    for example in ("haproxy", "proxy-haproxy"):
        docker("compose", "-p", f"rerollbench{example.replace('-', '')}", "build", "-q", env=env, timeout=900,
               cwd=os.path.join(ROOT, "examples", example))
    app = LONG_REQUESTS if args.long else ""
    series: Dict[str, "tuple[ComposeProject, List[str]]"] = {
        "proxy mode, no Docker health check": (proxy_stack(env, app), ["docker", "reroll"]),
        "proxy mode, Docker health check": (proxy_stack(env, app + HEALTHCHECK), ["docker", "reroll"]),
        "health-check drain": (drain_stack(env, app, args.replicas), ["docker", "reroll", *DRAIN]),
    }
    if args.other_tool:
        series[f"health-check drain, {os.path.basename(args.other_tool)}"] = (
            drain_stack(env, app, args.replicas), [args.other_tool, *DRAIN])
    rows: Dict[str, List["tuple[float, int]"]] = {name: [] for name in series}
    try:
        for stack, _ in series.values():
            up(stack, args.replicas)
        for round_ in range(args.deploys):
            for name, (stack, command) in series.items():
                seconds, failed = deploy(stack, command, f"v{round_ + 2}", args.long)
                rows[name].append((seconds, failed))
                print(f"round {round_ + 1} {name}: {seconds:.2f}s, {failed} failed", flush=True)
    finally:
        for stack, _ in series.values():
            stack.cleanup()
        shutil.rmtree(config, ignore_errors=True)
    print(f"\n{args.replicas} replica(s), {args.deploys} deploys each"
          + (", an app that exits at once, 1.5 s requests" if args.long else ""))
    for name, results in rows.items():
        times = [seconds for seconds, _ in results]
        print(f"{name:45s} median {statistics.median(times):6.2f}s (min {min(times):.2f}, max {max(times):.2f}); "
              f"failed requests per deploy {[failed for _, failed in results]}")


def proxy_stack(env: Dict[str, str], app: str) -> ComposeProject:
    return new_proxy_stack(env, "proxy-haproxy", "services:\n  app:" + app if app else "")


def drain_stack(env: Dict[str, str], app: str, replicas: int) -> ComposeProject:
    """examples/haproxy, its HAProxy with slots for the old and the new containers side by side (it has 10)."""
    stack = new_stack(env)
    files = tempfile.mkdtemp(prefix="reroll-bench-stack-")
    with open(os.path.join(ROOT, "examples", "haproxy", "proxy", "haproxy.cfg")) as handle:
        text = handle.read().replace("server-template app 1-10 ", f"server-template app 1-{max(10, 2 * replicas + 4)} ")
    with open(os.path.join(files, "haproxy.cfg"), "w") as handle:
        handle.write(text)
    with open(os.path.join(files, "override.yaml"), "w") as handle:
        handle.write("services:\n  app:" + (app or " {}\n")
                     + f"  proxy:\n    volumes:\n      - {files}/haproxy.cfg:/etc/haproxy/haproxy.cfg:ro\n")
    stack.env["COMPOSE_FILE"] = f"compose.yaml:{files}/override.yaml"
    return stack


def up(stack: ComposeProject, replicas: int) -> None:
    """Every container up and answering through the proxy (in proxy mode: through a slot HAProxy has checked)."""
    if "proxy-haproxy" in stack.directory:
        start_proxy_stack(stack, replicas)
    else:
        start_stack(stack, replicas)


def deploy(stack: ComposeProject, command: List[str], version: str, long: bool) -> "tuple[float, int]":
    clients, rate = (16, 10.0) if long else (8, 100.0)
    load = LoadGenerator(stack_url(stack), clients=clients, rate=rate, max_duration=600).start()
    load.wait_for_requests(clients * 2, timeout=30)
    started = time.monotonic()
    result = subprocess.run([*command, "app"], cwd=stack.directory, env={**stack.env, "APP_VERSION": version},
                            capture_output=True, text=True)
    seconds = time.monotonic() - started
    time.sleep(2.0 if long else 1.0)  # the requests in flight at the end are counted too
    report = load.stop()
    if result.returncode != 0:
        print(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-2000:]}", flush=True)
    return seconds, report.failed


if __name__ == "__main__":
    main()
