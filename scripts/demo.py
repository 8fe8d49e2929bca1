#!/usr/bin/env python3
"""The demo: roll the example app from v1 to v2 behind HAProxy while 8 clients hammer it, and count failures.

Builds and starts examples/haproxy at v1 (2 replicas), runs the load generator against the proxy on 127.0.0.1,
deploys v2 with the drain recipe, prints a report and stops the stack (--keep leaves it running).
Exits non-zero if the deploy failed or any request failed.
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EXAMPLE = os.path.join(ROOT, "examples", "haproxy")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from build_plugin import build  # noqa: E402
from loadgen import LoadGenerator  # noqa: E402

DRAIN = ["--pre-stop-cmd", "docker exec {id} touch /.dead", "--pre-stop-wait-until-unhealthy"]


def compose(project, *args, env):
    subprocess.run(["docker", "compose", "-p", project, *args], cwd=EXAMPLE, env=env, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "18080")),
                        help="127.0.0.1 port for the proxy (default 18080)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    args = parser.parse_args()

    project = "rerolldemo"
    env = {**os.environ, "PROXY_PORT": str(args.port), "APP_VERSION": "v1"}
    plugin = os.path.join(tempfile.mkdtemp(prefix="reroll-demo-"), "docker-reroll")
    build(plugin, os.path.realpath(sys.executable))

    print(f"==> starting examples/haproxy at v1 with {args.replicas} replicas, proxy on 127.0.0.1:{args.port}")
    compose(project, "up", "-d", "--build", "--wait", "--scale", f"app={args.replicas}", env=env)
    url = f"http://127.0.0.1:{args.port}/"
    deploy_ok = False
    try:
        with LoadGenerator(url, clients=args.clients, max_duration=300) as load:
            if not load.wait_for_requests(100, timeout=30):
                raise SystemExit(f"the proxy at {url} does not answer")
            before = load.report()
            command = ["docker", "reroll", "-p", project, "app", *DRAIN]
            print(f"==> {args.clients} clients on {url}; running: APP_VERSION=v2 {shlex.join(command)}")
            started = time.monotonic()
            result = subprocess.run([plugin, *command[2:]], cwd=EXAMPLE, env={**env, "APP_VERSION": "v2"})
            deploy_seconds = time.monotonic() - started
            deploy_ok = result.returncode == 0
            time.sleep(1.0)
        report = load.stop()
        after = [s for s in report.samples if s.start > report.stopped - 1.0 and s.ok]
        containers = subprocess.run(
            ["docker", "ps", "--filter", f"label=com.docker.compose.project={project}", "--filter",
             "label=com.docker.compose.service=app", "--format", "{{.Names}} ({{.Status}})"],
            capture_output=True, text=True, check=True).stdout.split("\n")
        print("\n==> report")
        print(f"requests sent:      {report.total}")
        print(f"failed requests:    {report.failed}" + (f"  {report.failures}" if report.failed else ""))
        print(f"deploy time:        {deploy_seconds:.2f} s (exit {result.returncode})")
        print(f"served before:      {sorted({s.version for s in before.samples if s.ok})}")
        print(f"served after:       {sorted({s.version for s in after})}")
        print(f"served per version: {report.version_counts}")
        print(f"containers left:    {', '.join(c for c in containers if c)}")
    finally:
        if args.keep:
            print(f"\nthe stack is still running: docker compose -p {project} --project-directory {EXAMPLE} down")
        else:
            compose(project, "down", "-t", "5", env=env)
    if not deploy_ok or report.failed:
        print("\nFAILED: " + ("the deploy failed" if not deploy_ok else f"{report.failed} request(s) failed"))
        sys.exit(1)
    print("\nOK: zero failed requests")


if __name__ == "__main__":
    main()
