"""What the parts of one service's deploy share (deploy.py tells the story; rollout.py, readiness.py, retire.py and
batches.py each do one part of it): the service, its settings, the engine, the watch, the display, the report,
and the phase the deploy is in, which decides what an interrupt means."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from docker_reroll.display import ContainerDisplay
from docker_reroll.engine import Engine
from docker_reroll.errors import Interrupted
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.lock import EngineLock
from docker_reroll.model import Container, ServiceSpec, Status
from docker_reroll.options import Options
from docker_reroll.progress import Progress
from docker_reroll.vocabulary import Phase, rolls_back
from docker_reroll.watch import ContainerWatch


class ProxyHold:
    """Proxy mode's part in the readiness of new containers (proxy_drain.ProxyControl)."""

    def wait_ready(self, new: List[Container], timeout: float) -> None:
        raise NotImplementedError


@dataclass
class DeployReport:
    """The outcome, for the summary and the benchmark."""

    old: List[str] = field(default_factory=list)
    new: List[str] = field(default_factory=list)
    replicas: int = 0
    first_start: bool = False
    completed: bool = False  # only new containers serve
    batches: int = 1
    batch_seconds: List[float] = field(default_factory=list)  # each batch, from its scale-up to its last stop
    kept_old: List[str] = field(default_factory=list)  # old containers left in place of failed new ones
    phase_seconds: Dict[str, float] = field(default_factory=dict)
    old_containers: List[Container] = field(default_factory=list)  # as found, for the summary
    new_containers: List[Container] = field(default_factory=list)  # on the new config, serving at the end
    cut_connections: Dict[str, int] = field(default_factory=dict)  # proxy mode: open at the drain timeout


class DeployContext:
    def __init__(self, service: str, project: str, spec: Optional[ServiceSpec], options: Options, docker: Engine,
                 progress: Progress, interrupts: Interrupts, lock: EngineLock, watch: ContainerWatch,
                 display: ContainerDisplay, report: DeployReport) -> None:
        self.service = service
        self.project = project
        self.spec = spec
        self.options = options  # this service's: the command line over its labels and deploy.update_config
        self.docker = docker
        self.progress = progress
        self.interrupts = interrupts
        self.lock = lock
        self.watch = watch
        self.display = display
        self.report = report
        self.phase = Phase.PREPARE
        # False while old and new containers both exist: if we die then, the lock and journal stay behind so the
        # next run knows it must finish this deploy.
        self.consistent = True
        self.keep_journal = False  # stopped between batches: the next run must replace the rest
        self.proxy: Optional[ProxyHold] = None  # proxy mode: the proxy this deploy drives

    def enter(self, phase: Phase, rolling_back: bool = False) -> None:
        """Enter a phase: it decides what an interrupt means, and the progress display times it. A roll-back stays
        in the phase it started from: the point of no return was never passed."""
        if rolling_back:
            return
        self.phase = phase
        self.progress.phase(phase, self.service)

    def check_interrupt(self) -> None:
        """At a safe point: before the first pre-stop an interrupt becomes a roll-back, after it we carry on."""
        signum = self.interrupts.first_signal
        if signum is not None and rolls_back(self.phase):
            raise Interrupted(f"interrupted by {signal_name(signum)} during {self.phase.value}", signum)

    def further_interrupt(self) -> int:
        """For waits after the point of no return (or during a roll-back): the first interrupt only says "finish",
        a further one ends the wait."""
        return max(self.interrupts.count, 1)

    def service_containers(self) -> List[Container]:
        """Every container compose made for the service (one-off `run` containers excluded), inspected through
        the watch, whose events keep them current from then on."""
        ids = self.docker.service_container_ids(self.project, self.service)
        return [c for c in self.watch.refresh(ids) if not c.oneoff and c.status != Status.REMOVED]
