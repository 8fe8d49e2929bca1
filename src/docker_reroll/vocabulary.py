"""The words a deploy is told in, one name per concept: its phases, what a container is to it, what a release does
with a service, how a service and a whole run end, and the states the progress display shows. Each is a str enum:
its value is the word in the JSON stream and the logs (the README's schema), and it compares equal to that word.
"""

from enum import Enum


class Word(str, Enum):
    def __str__(self) -> str:
        return self.value


class Phase(Word):
    """What a run is doing; a phase lasts until the next one begins (the JSON stream's `phase` events)."""

    START = "start"  # release-wide: the project loaded, the plan made, the locks taken
    PREPARE = "prepare"
    SCALE_UP = "scale up"
    WAIT_READY = "wait until ready"
    PRE_STOP = "pre-stop"
    DRAIN = "drain"
    RETIRE = "retire"
    PROXY = "proxy"  # proxy mode, in place of pre-stop and drain: the proxy switched, its connections to the old
    # containers ending
    ROLL_BACK = "roll back"
    RECREATE = "recreate"  # a service left to compose
    UPDATE = "update"  # a Swarm service's rolling update, run by Swarm


ROLLBACK_PHASES = (Phase.PREPARE, Phase.SCALE_UP, Phase.WAIT_READY)


def rolls_back(phase: Phase) -> bool:
    """Can a failure or interrupt in this phase still go back to the old containers untouched? Not once the first
    pre-stop command ran: the old containers may be leaving the proxy's pool."""
    return phase in ROLLBACK_PHASES


class Role(Word):
    """What a container is to a deploy."""

    OLD = "old"  # served when the deploy began
    NEW = "new"  # made by the deploy, on the current config
    STALE = "stale"  # stopped before the deploy: removed first


class Action(Word):
    """What a release does with a service."""

    ROLL = "roll"
    RECREATE = "recreate"  # compose's own stop-then-start
    SKIP = "skip"


class Result(Word):
    """How one service of a release ended (the summary's `services[].result`)."""

    DEPLOYED = "deployed"
    RECREATED = "recreated"
    SKIPPED = "skipped (up to date)"
    FAILED = "failed"
    ROLLED_BACK = "failed (rolled back)"
    INTERRUPTED = "interrupted"
    INTERRUPTED_ROLLED_BACK = "interrupted (rolled back)"
    REFUSED = "refused"
    LOCKED = "locked"
    NOT_STARTED = "not started"


class Outcome(Word):
    """How a whole run ended, in a word (the summary's `outcome`)."""

    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"
    REFUSED = "refused"
    LOCKED = "locked"
    INCOMPLETE = "incomplete"
    INTERRUPTED = "interrupted"
    # How a Swarm update can end other than completed or rolled back: what Swarm left the service in
    PAUSED = "paused"
    ROLLBACK_PAUSED = "rollback paused"
    ROLLING_BACK = "rollback in progress"  # when we stopped following
    UPDATING = "update in progress"
    USAGE_ERROR = "usage error"
    DRY_RUN = "dry run"
    DRY_RUN_REFUSED = "dry run: refused"
    DRY_RUN_LOCKED = "dry run: locked"
    DRY_RUN_FAILED = "dry run: failed"


class Shown(Word):
    """A container's state in the words of the progress display (the JSON stream's `container.state`)."""

    CREATED = "created"
    STARTING = "starting"
    WAITING_HEALTHY = "waiting for healthy"
    HEALTHY = "healthy"
    RUNNING = "running"  # no health check
    UNHEALTHY = "unhealthy"
    PAUSED = "paused"
    DRAINING = "draining"
    STOPPING = "stopping"
    EXITED = "exited"
    REMOVED = "removed"


BUSY = (Shown.STARTING, Shown.WAITING_HEALTHY, Shown.DRAINING, Shown.STOPPING)  # the display times these
BAD = (Shown.UNHEALTHY, Shown.EXITED)


class Ended(Word):
    """How a wait or a command ended."""

    DONE = "done"  # the condition held
    FAILED = "failed"  # it can no longer hold
    TIMEOUT = "timeout"  # time ran out
    INTERRUPTED = "interrupted"  # an interrupt came first
    CANCELLED = "cancelled"  # a command ended by the caller


class Level(Word):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
