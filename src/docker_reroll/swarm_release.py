"""A release of Swarm stack services: each named service updated by Swarm's own rolling update (swarm.py), in the
order given, after every one of them was checked (the settings it can take, the service itself, Swarm not already
updating it) and its lock taken."""

from typing import Dict, List, Optional, Tuple

from docker_reroll.dryrun import DryRun
from docker_reroll.engine import Engine
from docker_reroll.errors import EXIT_OK, RefusedError
from docker_reroll.interrupts import Interrupts
from docker_reroll.model import ProjectConfig
from docker_reroll.options import Options
from docker_reroll.progress import Progress
from docker_reroll.release import ReleaseRun
from docker_reroll.swarm import SwarmDeployment
from docker_reroll.swarm_engine import SwarmEngine
from docker_reroll.swarm_planning import check_swarm_options
from docker_reroll.vocabulary import Result

NewConfig = Tuple[Optional[str], Optional[Dict[str, str]]]


class SwarmRelease(ReleaseRun):
    def __init__(self, options: Options, docker: Engine, progress: Progress, interrupts: Interrupts,
                 command_line: str, stack: str, project: Optional[ProjectConfig]) -> None:
        super().__init__(options, docker, progress, interrupts, command_line)
        self.stack = stack
        self.project = project  # the compose file that gives the new config, if any
        self.deployments: List[SwarmDeployment] = []

    def details(self, service: str) -> Dict[str, object]:
        swarm = next((d for d in self.deployments if d.service == service), None)
        if swarm is None:
            return {}
        return {"old": [{"id": t.id, "name": f"{swarm.name}.{t.slot}", "image": t.reference}
                        for t in swarm.old_tasks],
                "new": [{"id": t.id, "name": f"{swarm.name}.{t.slot}", "image": t.reference}
                        for t in swarm.new_tasks],
                "update_state": swarm.final_state}

    def run(self) -> int:
        services = self.options.services
        try:
            if self.options.all:
                raise RefusedError("--all deploys a compose project; a stack is deployed with `docker stack deploy`")
            self.service_options = {s: self.options_for(self.project, s) for s in services}
            for service, options in self.service_options.items():  # every option that cannot apply, before any change
                check_swarm_options(service, options)
        except RefusedError as error:
            self.refused_in_dry_run(error)
            raise
        engine = SwarmEngine(self.docker)
        if self.options.dry_run:
            return DryRun(self.options, self.docker, self.progress, self.command_line).run_swarm(
                self.stack, self.service_options, engine, self._new_config)
        self.planned = list(services)
        try:
            self.take_locks(self.stack, services)
            deployments = [SwarmDeployment(self.service_options[s], f"{self.stack}_{s}", s, engine, self.progress,
                                           self.interrupts, self.locks[s], self._new_config(s)) for s in services]
            for deployment in deployments:  # every service refused or locked before the first update
                self.outcomes.start(deployment.service)
                deployment.check()
            self.outcomes.in_flight = None
            for deployment in deployments:
                self.stop_if_interrupted(deployment.service)
                self.deployments.append(deployment)
                self.outcomes.start(deployment.service, lambda: self.deployments[-1].consistent)
                deployment.run(deployment.check())
                self.outcomes.done(deployment.service, Result.DEPLOYED)
        except BaseException as error:
            self.outcomes.finish(error, self.planned)
            raise
        finally:
            for lock in self.locks.values():
                lock.release()
        return EXIT_OK

    def _new_config(self, service: str) -> NewConfig:
        """--image; else the image and environment the compose file gives the service; else none (the current
        config, its tasks replaced)."""
        if self.options.image is not None:
            return self.options.image, None
        if self.project is not None and service in self.project.services:
            spec = self.project.services[service]
            return spec.image or None, dict(spec.environment)
        return None, None
