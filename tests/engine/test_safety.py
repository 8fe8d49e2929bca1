"""Safety: refusals that change nothing, the deploy lock and its stale takeover, crash recovery bookkeeping."""

import os
import signal
import socket
import subprocess
import time

from docker_reroll.host import System, identity
from dockerfixtures import (
    APP_IMAGE,
    DRAIN,
    child_pid,
    docker,
    docker_without_compose,
    journal_replicas,
    load_on,
    lock_and_journal,
    read_until,
    start_reroll,
    start_stack,
)


def snapshot(stack):
    """Everything about the stack's containers that a refused deploy must leave exactly as it was."""
    return [(c.id, c.status, c.health, c.name) for service in ("app", "proxy", "other")
            for c in stack.containers(service)]


LOCK_IMAGE = "docker-reroll/lock:1"
OTHER_SERVICE = "services:\n  other:\n    image: reroll-example-app:latest\n"


BAD_INPUTS = [  # (case, what the override adds to service `other`, or None for no override file; service; message)
    ("unknown service", "", "nope", "no such service: 'nope' (defined services: app, other, proxy)"),
    ("container_name", "    container_name: fixed-name\n", "other", "sets container_name 'fixed-name'"),
    ("fixed port", "    ports: ['127.0.0.1:18999:80']\n", "other", "publishes fixed host port(s) 18999:80"),
    ("host network", "    network_mode: host\n", "other", "network_mode: host"),
    ("profile", "    profiles: ['later']\n", "other", "disabled by its profiles: enable it with --profile"),
    ("missing file", None, "app", "compose cannot load the project"),
    ("invalid file", "    image: [unclosed\n", "other", "compose cannot load the project"),
    ("engine unreachable", "", "app", "reroll-nothing-here.sock"),
    ("compose not installed", "", "app", "neither `docker compose` (v2) nor `docker-compose` (v1) is installed"),
]


def refusal_problems(stack, tmp_path, case, other_extra, service, message):
    """What is wrong with the refusal of one bad input (nothing: exit 3, one ERROR line saying why, no
    traceback, every container as it was)."""
    override = tmp_path / f"{case.replace(' ', '-')}.yml"
    override.write_text(OTHER_SERVICE + (other_extra or ""))
    files = ["-f", "compose.yaml", "-f", str(override) if other_extra is not None else "does-not-exist.yml"]
    options = {}
    if case == "engine unreachable":
        options["docker_globals"] = ("-H", "unix:///tmp/reroll-nothing-here.sock")
    if case == "compose not installed":  # no compose v2 plugin, and no docker-compose on PATH either
        options.update(standalone=True, extra_env={"PATH": docker_without_compose(str(tmp_path / "bin"))})
    before = snapshot(stack)
    run = stack.reroll(*files, service, **options)
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    problems = []
    if run.returncode != 3:
        problems.append(f"exit {run.returncode}")
    if len(errors) != 1 or message not in errors[0]:
        problems.append(f"errors {errors}")
    if "Traceback" in run.stderr:
        problems.append("a traceback")
    if case == "invalid file" and not (errors and "yaml" in errors[0].lower()):
        problems.append("compose's own explanation is not shown")
    if snapshot(stack) != before:
        problems.append("the containers changed")
    return [f"{case}: {problem}\n{run.stderr}" for problem in problems]


def test_bad_input_is_refused_with_one_line_and_nothing_changes_under_load(stack, tmp_path):
    """Each bad input in turn, against one stack under one load (a stack and a load each cost a test its time, not
    its proof): refused before anything is touched, and the clients on the proxy never notice."""
    start_stack(stack, 2)
    with load_on(stack) as load:
        problems = [p for bad in BAD_INPUTS for p in refusal_problems(stack, tmp_path, *bad)]
    assert not problems, "\n".join(problems)
    assert load.report().failed == 0


def test_paths_with_spaces_and_shell_characters_are_never_run_through_a_shell(project, tmp_path):
    odd = tmp_path / "my project $(touch pwned) ; `touch pwned2`"
    odd.mkdir()
    compose_file = odd / "stack file.yml"
    compose_file.write_text(open(os.path.join(project.directory, "compose.yaml")).read())
    docker("compose", "-f", str(compose_file), "up", "-d", "--wait", env=project.env, cwd=str(tmp_path))
    [old] = project.containers()

    run = project.reroll("-f", str(compose_file), "web", cwd=str(tmp_path), extra_env={"TAG": "v2"})

    assert run.returncode == 0, run.stderr
    [new] = project.containers()
    assert new.id != old.id and project.image_of(new) == f"{APP_IMAGE}:v2"
    assert not list(tmp_path.rglob("pwned*")) and not os.path.exists("pwned")


def test_pre_stop_wait_without_a_health_check_warns_and_goes_on(project_without_healthcheck):
    project = project_without_healthcheck
    project.up()
    run = project.reroll_json("web", "--wait", "0.5", "--pre-stop-wait-until-unhealthy", extra_env={"TAG": "v2"})
    assert run.returncode == 0 and run.outcome == "deployed", run
    assert run.said("--pre-stop-wait-until-unhealthy: the containers have no health check", "warn")


def test_a_second_deploy_exits_at_once_naming_the_first_and_can_wait_for_it(project):
    project.up()
    # the first deploy holds its lock for 15 s more; "at once" is: the second has ended long before that, while
    # the first still runs (a bound of a few seconds failed CI when a busy machine slowed every docker call)
    first = start_reroll(project, "web", "--wait-after-healthy", "15", extra_env={"TAG": "v2"})
    try:
        read_until(first, "waiting 15s after healthy")
        plugin_pid = child_pid(first.pid)
        started = time.monotonic()
        second = project.reroll_json("web", extra_env={"TAG": "v3"})
        took = time.monotonic() - started
        assert second.returncode == 4 and first.poll() is None and took < 10, (second.returncode, took)
        assert second.outcome == "locked" and second.result("web") == "locked", second
        [error] = second.logs("error")
        assert f"(pid {plugin_pid})" in error, "the message names the process holding the lock"
        assert "another deploy of this service is running" in error
        assert f"@{socket.gethostname()}" in error and "since 20" in error

        waited = project.reroll_json("web", "--lock-timeout", "60", extra_env={"TAG": "v3"})
        assert waited.returncode == 0 and waited.outcome == "deployed", waited
        assert waited.said("waiting for the deploy by", "info")
    finally:
        first.wait(timeout=60)
    assert first.returncode == 0
    [final] = project.containers()
    assert project.image_of(final) == f"{APP_IMAGE}:v3"


def lock_labels(**values):
    args = []
    for key, value in values.items():
        args += ["--label", f"io.docker-reroll.{key}={value}"]
    return args


def plant_lock(stack, **labels):
    """A lock as another deploy would have left it, on the stack's app service."""
    if docker("image", "inspect", LOCK_IMAGE, check=False).returncode != 0:
        docker("import", "-", LOCK_IMAGE, input_text="\0" * 1024)
    docker("create", "--name", f"docker-reroll-lock.{stack.name}.app", *lock_labels(**labels), LOCK_IMAGE, "lock")


def test_a_stale_lock_from_a_dead_process_is_taken_over_under_load(stack):
    old = start_stack(stack, 2)
    dead = subprocess.Popen(["true"])
    dead.wait()
    here = identity(System())
    plant_lock(stack, user="ci", host=here.host, pid=dead.pid, **{
        "machine-id": here.machine_id, "pid-ns": here.pid_ns, "pid-start": "1", "boot-id": here.boot_id,
        "since": f"{time.time() - 30:.0f}", "command": "docker reroll app"})

    with load_on(stack) as load:
        run = stack.reroll_json("app", *DRAIN, extra_env={"APP_VERSION": "v2"})

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert run.said(f"taking over the deploy lock of ci@{socket.gethostname()} (pid {dead.pid})", "warn")
    new = stack.containers()
    assert len(new) == 2 and not {c.id for c in new} & {c.id for c in old}
    assert {stack.env_of(c)["APP_VERSION"] for c in new} == {"v2"}
    assert load.report().failed == 0


def test_a_fresh_lock_held_from_another_machine_is_respected_under_load(stack):
    start_stack(stack, 2)
    plant_lock(stack, user="ops", host="build-server-7", pid=4242, **{
        "pid-start": "9", "boot-id": "x", "since": f"{time.time() - 60:.0f}", "command": "docker reroll app"})
    before = snapshot(stack)

    with load_on(stack) as load:
        run = stack.reroll_json("app", *DRAIN, extra_env={"APP_VERSION": "v2"})

    assert run.returncode == 4 and run.outcome == "locked" and run.phases("app") == [], run
    [error] = run.logs("error")
    assert "ops@build-server-7 (pid 4242)" in error and f"docker rm docker-reroll-lock.{stack.name}.app" in error
    assert snapshot(stack) == before
    assert load.report().failed == 0


def test_killed_mid_deploy_then_rerun_converges_to_the_replica_count(project):
    """SIGKILL after the new containers are up: lock and journal stay; the next run restores 2 replicas, all new."""
    old = project.up(replicas=2)
    victim = start_reroll(project, "web", "--wait-after-healthy", "30", extra_env={"TAG": "v2"})
    read_until(victim, "waiting 30s after healthy")
    os.kill(child_pid(victim.pid), signal.SIGKILL)
    victim.wait(timeout=30)
    assert len(project.containers()) == 4
    assert journal_replicas(project) == "2"

    run = project.reroll_json("web", extra_env={"TAG": "v3"})

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert run.plan("web")["journal"]["replicas"] == 2 and run.said("an earlier deploy of web was interrupted", "warn")
    assert run.said("taking over the deploy lock", "warn")
    final = project.containers()
    assert len(final) == 2 and all(project.image_of(c) == f"{APP_IMAGE}:v3" for c in final)
    assert not {c.id for c in final} & {c.id for c in old}
    assert lock_and_journal(project) == []


def test_a_failed_recovery_run_keeps_the_journal_so_the_next_run_still_restores_the_count(project):
    """Killed mid-deploy, then a re-run whose new version is broken: it rolls back to what was there (old and
    half-made containers alike) and must keep the journal, or a later run would take 4 for the replica count."""
    project.up(replicas=2)
    victim = start_reroll(project, "web", "--wait-after-healthy", "30", extra_env={"TAG": "v2"})
    read_until(victim, "waiting 30s after healthy")
    os.kill(child_pid(victim.pid), signal.SIGKILL)
    victim.wait(timeout=30)
    assert len(project.containers()) == 4

    broken = project.reroll_json("web", "--healthcheck-timeout", "3", extra_env={"TAG": "v3", "BROKEN": "1"})
    assert broken.returncode == 1 and broken.outcome == "rolled back", broken
    assert len(project.containers()) == 4
    assert journal_replicas(project) == "2"

    fixed = project.reroll("web", extra_env={"TAG": "v3"})
    assert fixed.returncode == 0, fixed.stderr
    final = project.containers()
    assert len(final) == 2 and all(project.image_of(c) == f"{APP_IMAGE}:v3" for c in final)
    assert lock_and_journal(project) == []


def test_no_compose_file_is_one_line_naming_the_directory_the_files_compose_looks_for_and_dash_f(base_env, tmp_path):
    empty = tmp_path / "not-a-project"
    empty.mkdir()
    result = subprocess.run(["docker", "reroll", "app"], cwd=str(empty), env=base_env, capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 3, result.stderr
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert f"no compose file in {empty} or its parent directories" in error
    for name in ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"):
        assert name in error
    assert "-f" in error.split("looks for")[-1]
    assert "no configuration file provided" not in result.stderr, "compose's own words name neither"
