"""Every way a run can end other than success, each with its exit code (documented in the README)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Optional

EXIT_OK = 0
EXIT_DEPLOY_FAILED = 1  # the new containers failed; they were removed and the old ones keep serving
EXIT_USAGE = 2  # bad command line (clap-style message)
EXIT_REFUSED = 3  # refused before changing anything: bad project, service or environment
EXIT_LOCKED = 4  # another deploy of the same service holds the lock
EXIT_INCOMPLETE = 5  # stopped half-way, old and new containers both left: run again to finish; lock and journal kept
EXIT_SIGNAL_BASE = 128  # interrupted: 128 + signal number (129 SIGHUP, 130 SIGINT, 143 SIGTERM)


class RerollError(Exception):
    """Base of all expected failures: a one-line message and an exit code."""

    exit_code = EXIT_DEPLOY_FAILED
    rolled_back = True  # if the service is consistent after it: what ran before serves (not a mix, not a pause)
    service_state = ""  # else, what Swarm left the service in, when it says: paused, rollback paused, ...


class UsageError(RerollError):
    """The command line cannot be parsed; printed clap-style with the usage line."""

    exit_code = EXIT_USAGE


class RefusedError(RerollError):
    """The deploy was refused before anything was changed."""

    exit_code = EXIT_REFUSED


class LockedError(RerollError):
    """Another deploy of the service is running."""

    exit_code = EXIT_LOCKED

    def __init__(self, message: str, service: str) -> None:
        super().__init__(message)
        self.service = service  # the locked one: locks are taken before any service is in flight


class LockLost(RerollError):
    """The lock was taken over while this run held it: it must stop touching the service."""

    exit_code = EXIT_LOCKED


class DeployFailed(RerollError):
    """The new containers did not become ready; they were rolled back."""

    exit_code = EXIT_DEPLOY_FAILED
    failed = 0  # how many new containers failed, where that was counted (0: not counted)


class Incomplete(RerollError):
    """Stopped half-way: old and new containers both exist, and the next run must finish the deploy."""

    exit_code = EXIT_INCOMPLETE


class Interrupted(RerollError):
    """A signal (or the docker CLI cancelling the plugin) ended the deploy."""

    def __init__(self, message: str, signum: int, rolled_back: bool = True) -> None:
        super().__init__(message)
        self.exit_code = EXIT_SIGNAL_BASE + signum
        self.rolled_back = rolled_back  # the old containers keep serving (else the message says what serves)


class StoppedBetweenBatches(RerollError):
    """A later batch failed (failure_action: pause, or a tolerated failure) or was interrupted: the service holds
    its replica count, partly old, partly new; the journal stays so the next run replaces them all."""

    rolled_back = False


class DockerCommandError(RerollError):
    """A docker or compose command failed. The one error of the engine layer: every call that fails raises it
    (a call on many objects, once, with every object's failure), and the caller decides what that means."""

    def __init__(self, argv: "list[str]", returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"`{short_command(argv)}` failed: {first_line(stderr) or f'exit {returncode}'}")

    def failures(self) -> str:
        """What failed, on one line: each of the command's error lines."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return "; ".join(lines) or f"exit {self.returncode}"


def first_line(text: Optional[str]) -> str:
    """The first non-blank line of a tool's output: the part worth showing on one line."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def short_command(argv: "list[str]") -> str:
    """A command as the user would recognise it: `docker compose up ...` without long paths or flag noise."""
    words = list(argv)
    if words:
        words[0] = words[0].rsplit("/", 1)[-1]
    text = " ".join(words)
    return text if len(text) <= 120 else text[:117] + "..."


class EngineUnreachable(DockerCommandError):
    """The docker CLI cannot reach the engine, and it did not come back within the wait for it. Before the first
    change that is a refusal; after it the service is in whatever state the engine kept (a half-way exit)."""

    exit_code = EXIT_REFUSED


# What the docker CLI and compose say when no engine answers (a stopped or restarting dockerd, a lost ssh tunnel).
UNREACHABLE_MARKERS = ("Cannot connect to the Docker daemon", "Is the docker daemon running", "error during connect")


def engine_unreachable(stderr: str) -> bool:
    return any(marker in stderr for marker in UNREACHABLE_MARKERS)
