"""How a release ended, service by service, and in one line: the summary every progress mode ends with."""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from docker_reroll.errors import (
    EXIT_DEPLOY_FAILED,
    EXIT_INCOMPLETE,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SIGNAL_BASE,
    EXIT_USAGE,
    Interrupted,
    LockedError,
    RefusedError,
    RerollError,
)
from docker_reroll.swarm_planning import SWARM_ENDINGS
from docker_reroll.vocabulary import Outcome, Result


@dataclass
class ServiceOutcome:
    service: str
    result: str  # a Result, with what Swarm left the service in when it said: `failed (paused)`


class Outcomes:
    """What happened to each service of a release, in order; the one in flight when the release stopped."""

    def __init__(self) -> None:
        self.items: List[ServiceOutcome] = []
        self.in_flight: Optional[str] = None  # the service being changed now
        self.rolled_back: Callable[[], bool] = lambda: False  # whether that service went back to what ran before

    def start(self, service: str, rolled_back: Callable[[], bool] = lambda: False) -> None:
        self.in_flight, self.rolled_back = service, rolled_back

    def done(self, service: str, result: Result) -> None:
        self.items.append(ServiceOutcome(service, result.value))
        self.in_flight = None

    def finish(self, error: BaseException, planned: Sequence[str]) -> None:
        """The service in flight failed, was refused or was interrupted; the rest were not started."""
        service = self.in_flight or (error.service if isinstance(error, LockedError) else None)
        if service and isinstance(error, (RefusedError, LockedError)):  # refused before it changed anything
            self.items.append(ServiceOutcome(service, Result.REFUSED if isinstance(error, RefusedError)
                                             else Result.LOCKED))
        elif service:
            # rolled back: the deployment left the service consistent, on what ran before (not a mix, not paused)
            rolled_back = isinstance(error, RerollError) and error.rolled_back and self.rolled_back()
            word = Result.INTERRUPTED if isinstance(error, Interrupted) else Result.FAILED
            state = error.service_state if isinstance(error, RerollError) else ""  # what Swarm says, if it did
            note = state or ("rolled back" if rolled_back else "")
            self.items.append(ServiceOutcome(service, f"{word.value}{f' ({note})' if note else ''}"))
        done = {o.service for o in self.items}
        self.items += [ServiceOutcome(s, Result.NOT_STARTED) for s in planned if s not in done]
        self.in_flight = None


def summarize(code: int, seconds: float, outcomes: Sequence[ServiceOutcome], dry_run: bool,
              details: Callable[[str], Dict[str, object]]) -> Tuple[str, Outcome, List[Dict[str, object]]]:
    """The one line every mode ends with, the outcome in a word, and what each service became (`details`: its
    old and new containers or tasks)."""
    outcome = outcome_word(code, outcomes, dry_run)
    services = [{"service": o.service, "result": o.result, **details(o.service)} for o in outcomes]
    said = "; ".join(f"{o.service} {o.result}" for o in outcomes)
    if dry_run:
        said = outcome.value
    elif not said:
        said = outcome.value + ("; nothing was changed" if code in (EXIT_USAGE, EXIT_REFUSED, EXIT_LOCKED) else "")
    return f"summary: {said}; exit {code} after {seconds:.1f}s", outcome, services


def outcome_word(code: int, outcomes: Sequence[ServiceOutcome], dry_run: bool) -> Outcome:
    if dry_run:
        return {EXIT_OK: Outcome.DRY_RUN, EXIT_REFUSED: Outcome.DRY_RUN_REFUSED,
                EXIT_LOCKED: Outcome.DRY_RUN_LOCKED}.get(code, Outcome.DRY_RUN_FAILED)
    if code >= EXIT_SIGNAL_BASE:
        return Outcome.INTERRUPTED
    if code == EXIT_DEPLOY_FAILED and any("rolled back" in o.result for o in outcomes):
        return Outcome.ROLLED_BACK
    swarm_ending = next((e for o in outcomes for e in SWARM_ENDINGS if o.result == f"failed ({e})"), None)
    if code == EXIT_DEPLOY_FAILED and swarm_ending:
        return Outcome(swarm_ending)  # what Swarm left the service in: paused, rollback paused, ...
    return {EXIT_OK: Outcome.DEPLOYED, EXIT_DEPLOY_FAILED: Outcome.FAILED, EXIT_USAGE: Outcome.USAGE_ERROR,
            EXIT_REFUSED: Outcome.REFUSED, EXIT_LOCKED: Outcome.LOCKED,
            EXIT_INCOMPLETE: Outcome.INCOMPLETE}.get(code, Outcome.FAILED)
