"""Wire a release together and turn every way it can end into one summary line and an exit code."""

import json
import sys
import time
import traceback
from typing import Mapping, Optional, Sequence

from docker_reroll.deploy import Deployment
from docker_reroll.dryrun import refused_plan
from docker_reroll.engine import Docker, Engine, docker_binary
from docker_reroll.errors import (
    EXIT_DEPLOY_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_SIGNAL_BASE,
    Interrupted,
    LockLost,
    RefusedError,
    RerollError,
)
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.options import Options, docker_flag_args
from docker_reroll.outage import EngineWait
from docker_reroll.processes import CallStats, CommandRunner
from docker_reroll.progress import Progress
from docker_reroll.release import Release, ReleaseRun
from docker_reroll.summary import summarize
from docker_reroll.swarm_release import SwarmRelease
from docker_reroll.target import choose_target
from docker_reroll.vocabulary import Phase
from docker_reroll.writers import choose_writer

STATS_ENV = "DOCKER_REROLL_STATS"  # a file to write timing figures to (used by the benchmark)
DEBUG_ENV = "DOCKER_REROLL_DEBUG"


def run(options: Options, environ: Mapping[str, str], progress: Optional[Progress] = None) -> int:
    title = "docker reroll " + (" ".join(options.services) if options.services else "--all") + \
        (" (dry run)" if options.dry_run else "")
    progress = progress or Progress(choose_writer(options.progress, sys.stderr, title))
    progress.phase(Phase.START)  # the project loaded, the plan made, the locks taken
    started = time.monotonic()
    stats = CallStats()
    docker = Docker(docker_binary(environ), options.docker_globals, options.compose_project_args(), environ,
                    CommandRunner(stats))
    interrupts = Interrupts()
    interrupts.install(environ)
    docker.await_engine = EngineWait(docker.engine_answers, progress, interrupts)
    command_line = quote_command(["docker", *docker_flag_args(options.docker_globals), "reroll", *options.args])
    release: Optional[ReleaseRun] = None
    handed_over = False  # the lock was taken over: what the service holds is the other run's to report
    try:
        release = _release(options, docker, progress, interrupts, command_line)
        code = release.run()
        if code == EXIT_OK:
            code = _finished_code(interrupts, progress)
    except Interrupted as error:
        progress.error(f"{error}; the old containers keep serving" if error.rolled_back else str(error))
        code = error.exit_code
    except LockLost as error:
        progress.error(str(error))
        code, handed_over = error.exit_code, True
    except RerollError as error:
        progress.error(str(error))
        code = error.exit_code
    except Exception as error:  # noqa: BLE001 - a bug must still end in one clear line, not a traceback
        if environ.get(DEBUG_ENV):
            _print_traceback()
        progress.error(f"internal error: {type(error).__name__}: {error} (set {DEBUG_ENV}=1 for the traceback)")
        code = EXIT_DEPLOY_FAILED
    finally:
        interrupts.uninstall()
        docker.close()
    if release is not None and not release.consistent and not handed_over:
        code = EXIT_INCOMPLETE  # whatever stopped it: old and new containers both exist until the next run
    line, outcome, services = summarize(code, time.monotonic() - progress.started,
                                        release.outcomes.items if release else [], options.dry_run,
                                        release.details if release else lambda service: {})
    progress.summary(line, code, outcome, services)
    progress.close()
    if isinstance(release, Release) and release.deployments:
        _write_stats(environ.get(STATS_ENV), release.deployments[-1], stats, time.monotonic() - started)
    return code


def _release(options: Options, docker: Engine, progress: Progress, interrupts: Interrupts,
             command_line: str) -> ReleaseRun:
    """The compose project's release, or a Swarm stack's."""
    try:
        project, stack = choose_target(options, docker)
    except RefusedError as error:
        if options.dry_run:
            refused_plan(progress, error)
        raise
    if stack is not None:
        return SwarmRelease(options, docker, progress, interrupts, command_line, stack, project)
    assert project is not None
    return Release(options, docker, progress, interrupts, command_line, project)


def quote_command(argv: Sequence[str]) -> str:
    import shlex

    return " ".join(shlex.quote(word) for word in argv)


def _finished_code(interrupts: Interrupts, progress: Progress) -> int:
    """The deploy completed; if an interrupt came after the point of no return, say so and exit as interrupted."""
    signum = interrupts.first_signal
    if signum is None:
        return EXIT_OK
    progress.warn(f"interrupted by {signal_name(signum)} after the point of no return (the old containers were "
                  "being retired): finished the deploy instead of going back")
    return EXIT_SIGNAL_BASE + signum


def _print_traceback() -> None:
    try:
        traceback.print_exc()
    except (OSError, ValueError):
        pass  # stderr is gone: the error line below still sets the exit code


def _write_stats(path: Optional[str], deployment: Deployment, stats: CallStats, total: float) -> None:
    if not path:
        return
    waits = deployment.wait_stats
    figures = {
        "total_seconds": total,
        "command_seconds": stats.command_seconds,
        "commands": stats.commands,
        "wait_seconds": waits.wait_seconds if waits else 0.0,
        "reaction_seconds": waits.reaction_seconds if waits else [],
        "engine_reaction_seconds": waits.engine_reaction_seconds if waits else [],
        "events_received": waits.events_received if waits else 0,
        "used_polling": waits.used_polling if waits else False,
        "replicas": deployment.report.replicas,
        "phase_seconds": deployment.report.phase_seconds,
        "batch_seconds": deployment.report.batch_seconds,
        "max_rss_kb": _max_rss_kb(),
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(figures, handle)


def _max_rss_kb() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

