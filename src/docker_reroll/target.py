"""What a run deploys: the compose project (its services rolled by docker-reroll), or a Swarm stack's services
(updated by Swarm): --stack (or DOCKER_REROLL_STACK), else a stack that has the services when the compose project
(if there is one) does not; `--stack ''` is the compose project, whatever stacks there are."""

from typing import List, Optional, Tuple

from docker_reroll.engine import Engine
from docker_reroll.errors import RefusedError
from docker_reroll.model import ProjectConfig
from docker_reroll.options import Options
from docker_reroll.swarm_engine import SwarmEngine


def choose_target(options: Options, docker: Engine) -> Tuple[Optional[ProjectConfig], Optional[str]]:
    """The compose project (None with a stack and no compose file), and the stack (None: the compose project)."""
    if options.stack:
        return _stack_file(options, docker), options.stack
    try:
        project: Optional[ProjectConfig] = docker.load_project()
    except RefusedError as error:
        project, load_error = None, error
    missing = [s for s in options.services if project is None or s not in project.services]
    if missing and not options.all and options.stack is None:
        stack = _stack_with(docker, missing)
        if stack is not None:
            return project, stack
    if project is None:
        raise load_error
    if options.image:
        raise RefusedError("--image applies to a Swarm stack service (--stack); a compose service takes its "
                           "image from the compose file")
    if options.stack is None:
        _refuse_if_a_stack_is_meant(options, docker, project)
    return project, None


def _refuse_if_a_stack_is_meant(options: Options, docker: Engine, project: ProjectConfig) -> None:
    """A compose file here that names the service, none of whose containers run, and a Swarm stack that has it
    (`docker stack deploy -c compose.yaml shop` from this directory): deploying the compose service would start it
    beside the stack, so the user says which (--all always means the compose project)."""
    idle = [s for s in options.services if not docker.service_container_ids(project.name, s)]
    engine = SwarmEngine(docker)
    if not idle or not engine.is_manager():
        return
    for service in idle:
        stacks = sorted(name[:-len(service) - 1] for name in engine.stack_services(service))
        if stacks:
            raise RefusedError(
                f"'{service}' is both a service of the compose project {project.name}, which runs no container "
                f"of it, and of the Swarm stack{'s' if len(stacks) > 1 else ''} {', '.join(stacks)}: say which, "
                f"`--stack {stacks[0]}` for the Swarm service, `--stack ''` for the compose project")


def _stack_file(options: Options, docker: Engine) -> Optional[ProjectConfig]:
    """With a stack: the compose file that gives the new config, -f's, else the one compose finds here, if any
    (none: the service's current config, its tasks replaced)."""
    try:
        return docker.load_project()
    except RefusedError:
        if options.files:
            raise
        return None


def _stack_with(docker: Engine, services: List[str]) -> Optional[str]:
    engine = SwarmEngine(docker)
    if not engine.is_manager():
        return None
    stacks = {name[:-len(s) - 1] for s in services for name in engine.stack_services(s)}
    if len(stacks) > 1:
        raise RefusedError(f"the stacks {', '.join(sorted(stacks))} all have {', '.join(services)}: choose one "
                           "with --stack")
    if stacks and all(engine.stack_services(s) for s in services):
        return stacks.pop()
    return None
