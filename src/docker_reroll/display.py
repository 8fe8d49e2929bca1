"""What the progress display shows of a deploy's containers: the role each has in it (old, new, stale), what the
deploy is doing to one until it is gone (draining, stopping), or else its state as the engine reports it."""

from typing import Dict, Optional, Sequence

from docker_reroll.model import GONE, Container, Health, Status
from docker_reroll.progress import Progress
from docker_reroll.vocabulary import Role, Shown


class ContainerDisplay:
    def __init__(self, progress: Progress, service: str) -> None:
        self._progress = progress
        self._service = service
        self._roles: Dict[str, Role] = {}  # container id -> what the display calls it
        self._marks: Dict[str, Shown] = {}  # container id -> what we are doing to it (draining, stopping)

    def show(self, containers: Sequence[Container], role: Optional[Role] = None, mark: Optional[Shown] = None,
             state: Optional[Shown] = None) -> None:
        """Tell the display about these containers: their role (given once), what we are doing to them until they
        are gone (`mark`) or just now (`state`: starting), or else their state as the engine reports it."""
        for container in containers:
            if role is not None:
                self._roles[container.id] = role
            if mark is not None:
                self._marks[container.id] = mark
            self.changed(container, state)

    def knows(self, container: Container) -> bool:
        return container.id in self._roles

    def changed(self, container: Container, state: Optional[Shown] = None) -> None:
        """A container's state as the engine now reports it (the watch calls this on every change)."""
        role = self._roles.get(container.id)
        if role is None:
            return  # not ours to show (yet)
        if state is None:
            state = shown_state(container)
            if container.status not in GONE and container.id in self._marks:
                state = self._marks[container.id]
        self._progress.container(self._service, container.id, container.name, role, state, container.image)


def shown_state(container: Container) -> Shown:
    """A container's state in the display's words."""
    if container.status == Status.REMOVED:
        return Shown.REMOVED
    if container.status in (Status.EXITED, Status.DEAD):
        return Shown.EXITED
    if container.status == Status.CREATED:
        return Shown.CREATED
    if container.status == Status.PAUSED:
        return Shown.PAUSED
    if container.health == Health.STARTING:
        return Shown.WAITING_HEALTHY
    if container.health == Health.HEALTHY:
        return Shown.HEALTHY
    if container.health == Health.UNHEALTHY:
        return Shown.UNHEALTHY
    return Shown.RUNNING
