#!/usr/bin/env python3
"""The demo: roll the example app from v1 to v2 while 8 clients hammer the proxy, and count failures.

Two ways, one after the other (--mode picks): proxy mode, where docker-reroll drives HAProxy itself
(examples/proxy-haproxy: `docker reroll app`, nothing else), and the health-check drain behind a proxy that follows
Docker's DNS (examples/haproxy, with the drain recipe). Each: build and start the example at v1 (2 replicas), run
the load generator against the proxy on 127.0.0.1, deploy v2, print a report, stop the stack (--keep leaves it
running). Exits non-zero if a deploy failed or any request failed.
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from build_plugin import build  # noqa: E402
from loadgen import LoadGenerator  # noqa: E402

DRAIN = ["--pre-stop-cmd", "docker exec {id} touch /.dead", "--pre-stop-wait-until-unhealthy"]
# mode -> (example directory, project name, what the deploy adds to `docker reroll -p NAME app`)
MODES = {
    "proxy": ("proxy-haproxy", "rerolldemoproxy", []),
    "health-check-drain": ("haproxy", "rerolldemo", DRAIN),
}


def compose(example, project, *args, env):
    subprocess.run(["docker", "compose", "-p", project, *args], cwd=example, env=env, check=True)


def demo(mode, plugin, args):
    """One mode's run; True when the deploy succeeded with no failed request."""
    name, project, extra = MODES[mode]
    example = os.path.join(ROOT, "examples", name)
    env = {**os.environ, "PROXY_PORT": str(args.port), "APP_VERSION": "v1"}
    print(f"==> {mode}: starting examples/{name} at v1 with {args.replicas} replicas, proxy on "
          f"127.0.0.1:{args.port}")
    compose(example, project, "build", env=env)
    compose(example, project, "up", "-d", "--wait", "--scale", f"app={args.replicas}", env=env)
    url = f"http://127.0.0.1:{args.port}/"
    deploy_ok = False
    try:
        with LoadGenerator(url, clients=args.clients, max_duration=300) as load:
            if not load.wait_for_requests(100, timeout=30):
                raise SystemExit(f"the proxy at {url} does not answer")
            before = load.report()
            command = ["docker", "reroll", "-p", project, "app", *extra]
            print(f"==> {args.clients} clients on {url}; running: APP_VERSION=v2 {shlex.join(command)}")
            started = time.monotonic()
            result = subprocess.run([plugin, *command[2:]], cwd=example, env={**env, "APP_VERSION": "v2"})
            deploy_seconds = time.monotonic() - started
            deploy_ok = result.returncode == 0
            time.sleep(1.0)
        report = load.stop()
        after = [s for s in report.samples if s.start > report.stopped - 1.0 and s.ok]
        containers = subprocess.run(
            ["docker", "ps", "--filter", f"label=com.docker.compose.project={project}", "--filter",
             "label=com.docker.compose.service=app", "--format", "{{.Names}} ({{.Status}})"],
            capture_output=True, text=True, check=True).stdout.split("\n")
        print(f"\n==> report: {mode}")
        print(f"requests sent:      {report.total}")
        print(f"failed requests:    {report.failed}" + (f"  {report.failures}" if report.failed else ""))
        print(f"deploy time:        {deploy_seconds:.2f} s (exit {result.returncode})")
        print(f"served before:      {sorted({s.version for s in before.samples if s.ok})}")
        print(f"served after:       {sorted({s.version for s in after})}")
        print(f"served per version: {report.version_counts}")
        print(f"containers left:    {', '.join(c for c in containers if c)}\n")
    finally:
        if args.keep:
            print(f"the stack is still running: docker compose -p {project} --project-directory {example} down")
        else:
            compose(example, project, "down", "-t", "5", env=env)
    if not deploy_ok or report.failed:
        print(f"FAILED ({mode}): " + ("the deploy failed" if not deploy_ok else f"{report.failed} request(s) failed"))
        return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both",
                        help="proxy mode, the health-check drain, or both one after the other (default)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "18080")),
                        help="127.0.0.1 port for the proxy (default 18080)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards (one mode only)")
    args = parser.parse_args()
    if args.keep and args.mode == "both":
        parser.error("--keep needs one --mode (both stacks publish the same port)")
    plugin = os.path.join(tempfile.mkdtemp(prefix="reroll-demo-"), "docker-reroll")
    build(plugin, os.path.realpath(sys.executable))
    modes = list(MODES) if args.mode == "both" else [args.mode]
    results = [demo(mode, plugin, args) for mode in modes]
    if not all(results):
        sys.exit(1)
    print("OK: zero failed requests")


if __name__ == "__main__":
    main()
