"""What the engine says about a service, gathered for its plan (planning.py decides from it): the same facts for a
deploy and for a dry run, so the two plan alike."""

from typing import List, Optional, Sequence

from docker_reroll.engine import Engine
from docker_reroll.model import Container, Journal, ServiceSpec
from docker_reroll.planning import ServiceFacts


def service_facts(docker: Engine, spec: Optional[ServiceSpec], containers: Sequence[Container],
                  journal: Optional[Journal]) -> ServiceFacts:
    """`containers`: the service's, as the caller inspected them (a deploy through its watch)."""

    def unrestorable(container: Container) -> List[str]:
        return docker.plan_clone(docker.inspect_raw([container.id])[0], 0).unsupported

    return ServiceFacts([c for c in containers if not c.oneoff], journal, new_healthcheck(docker, spec),
                        unrestorable)


def new_healthcheck(docker: Engine, spec: Optional[ServiceSpec]) -> Optional[bool]:
    """Whether the service's new containers will have a health check: the compose file says, else its image
    (None: the image is not on the engine yet, or compose v1 does not tell)."""
    if spec is None or not spec.known:
        return None
    if spec.healthcheck is not None:
        return spec.healthcheck
    return docker.image_has_healthcheck(spec.image) if spec.image else None
