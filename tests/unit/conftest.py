"""What the unit tests share besides the fake engine (tests/fakeengine.py): `deploy`, one service deployed with
Deployment.run() over it."""

import io
import json
from dataclasses import dataclass
from typing import Dict, List, Optional

import pytest

from docker_reroll.deploy import Deployment
from docker_reroll.errors import RerollError
from docker_reroll.interrupts import Interrupts
from docker_reroll.lock import EngineLock
from docker_reroll.model import ServiceSpec
from docker_reroll.options import FROM_COMMAND_LINE, Options
from docker_reroll.progress import Progress
from docker_reroll.writers import JsonWriter


@dataclass
class Deployed:
    """How a deploy of `web` ended, and what it said (its JSON events)."""

    deployment: Deployment
    error: Optional[RerollError]
    events: List[Dict[str, object]]

    def said(self, level: str) -> List[str]:
        return [str(e["message"]) for e in self.events if e["type"] == "log" and e["level"] == level]

    def shown(self) -> Dict[str, str]:
        """Each container's last state on the display, by name."""
        return {str(e["name"]): str(e["state"]) for e in self.events if e["type"] == "container"}

    def phases(self) -> List[str]:
        return [str(e["phase"]) for e in self.events if e["type"] == "phase"]


@pytest.fixture
def deploy():
    """deploy(engine, **settings): `web` deployed over the fake engine as a release deploys it (its lock taken
    first), with the settings as given on the command line and a health-check timeout of 0.5 s unless set."""

    def run(engine, **settings) -> Deployed:
        options = Options()
        for name, value in {"healthcheck_timeout": 0.5, **settings}.items():
            options.set(name, value, FROM_COMMAND_LINE)
        stream = io.StringIO()
        progress = Progress(JsonWriter(stream))
        lock = EngineLock(engine, engine.project, "web", progress, "docker reroll web")
        lock.acquire(0, Interrupts())
        deployment = Deployment(options, "web", ServiceSpec("web", image=engine.image, healthcheck=True),
                                engine.project, engine, progress, Interrupts(), lock)
        error = None
        try:
            deployment.run()
        except RerollError as raised:
            error = raised
        return Deployed(deployment, error, [json.loads(line) for line in stream.getvalue().splitlines()])

    return run
