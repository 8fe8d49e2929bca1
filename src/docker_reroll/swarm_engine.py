"""The Swarm calls of the engine layer, through the same `docker` (and flags) as every other call."""

import json
from typing import List, Mapping, Optional, Sequence

from docker_reroll.compose import compose_message
from docker_reroll.engine import Engine
from docker_reroll.errors import DockerCommandError
from docker_reroll.model import STACK_LABEL, SwarmService, Task, parse_tasks


class SwarmEngine:
    """The Swarm calls, through the same `docker` (and flags) as every other call."""

    def __init__(self, docker: Engine) -> None:
        self.docker = docker

    def is_manager(self) -> bool:
        result = self.docker.run("info", "--format", "{{json .Swarm.ControlAvailable}}", check=False)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def stack_services(self, service: str) -> List[str]:
        """The names of every stack's service called `service` (`STACK_service`)."""
        result = self.docker.run("service", "ls", "--filter", f"label={STACK_LABEL}", "--format",
                                 "{{.Name}}", check=False)
        candidates = [name for name in result.stdout.split() if name.endswith(f"_{service}")]
        if not candidates:
            return []
        # by the stack's own label: `shop_admin_web` is stack shop's `admin_web`, not stack shop_admin's `web`
        result = self.docker.run("service", "inspect", "--format",
                                 f'{{{{.Spec.Name}}}} {{{{index .Spec.Labels "{STACK_LABEL}"}}}}', *candidates,
                                 check=False)
        named = (line.split() for line in result.stdout.splitlines())
        return sorted(fields[0] for fields in named if len(fields) == 2 and fields[0] == f"{fields[1]}_{service}")

    def inspect(self, name: str) -> Optional[SwarmService]:
        result = self.docker.run("service", "inspect", name, check=False)
        if result.returncode != 0:
            return None
        return SwarmService.from_inspect(json.loads(result.stdout)[0])

    def tasks(self, name: str) -> List[Task]:
        ids = self.docker.run("service", "ps", "--quiet", "--no-trunc", name, check=False).stdout.split()
        if not ids:
            return []
        result = self.docker.run("inspect", "--type", "task", *ids, check=False)
        return parse_tasks(result.stdout) if result.stdout.strip().startswith("[") else []

    def update(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> List[str]:
        """`docker service update`; `env`: the values of `--env-add KEY`, which the docker CLI takes from its own
        environment (so no value shows in a process list). Returns the CLI's warnings, one per paragraph."""
        result = self.docker.run("service", "update", "--detach", *args, name, check=False,
                                 env={**self.docker.environ, **env})
        if result.returncode != 0:  # said without its arguments: they may hold a value of the environment
            raise DockerCommandError(self.docker.docker("service", "update", name), result.returncode,
                                     compose_message(result.stderr))
        return [" ".join(part.split()) for part in result.stderr.split("\n\n") if part.strip()]

    def rollback(self, name: str) -> None:
        self.docker.run("service", "rollback", "--detach", name)
