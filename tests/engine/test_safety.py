"""Safety without a proxy: refusals that change nothing, the deploy lock, crash recovery bookkeeping."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from dockerfixtures import APP_IMAGE, child_pid, docker, read_until, start_reroll


def snapshot(project):
    """Everything about the project's containers that a refused deploy must leave exactly as it was."""
    return [(c.id, c.status, c.name) for c in project.containers()] + [
        (c.id, c.status, c.name) for c in project.containers("other")]


@pytest.mark.parametrize("case, compose_extra, args, message", [
    ("unknown service", "", ["nope"], "no such service: 'nope' (defined services: other, web)"),
    ("container_name", "    container_name: fixed-{name}\n", ["other"], "sets container_name"),
    ("fixed port", "    ports: ['127.0.0.1:18999:80']\n", ["other"], "publishes fixed host port(s) 18999:80"),
    ("host network", "    network_mode: host\n", ["other"], "network_mode: host"),
    ("profile", "    profiles: ['later']\n", ["other"], "disabled by its profiles"),
    ("missing file", "", ["-f", "does-not-exist.yml", "web"], "compose cannot load the project"),
    ("engine unreachable", "", ["-H", "unix:///tmp/reroll-nothing-here.sock", "web"], "reroll-nothing-here.sock"),
])
def test_bad_input_is_refused_with_one_line_and_nothing_changes(project, case, compose_extra, args, message):
    compose = open(os.path.join(project.directory, "compose.yaml")).read()
    project.write(compose + "  other:\n    image: reroll-test-app:v1\n    command: ['sleep', '3600']\n"
                  + compose_extra.replace("{name}", project.name))
    project.up(replicas=2)
    before = snapshot(project)

    if args[0] == "-H":
        run = project.reroll(*args[2:], docker_globals=tuple(args[:2]))
    else:
        run = project.reroll(*args)

    assert run.returncode == 3, run.stderr
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and message in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    assert snapshot(project) == before


def test_an_invalid_compose_file_shows_compose_own_message(project):
    project.up()
    before = snapshot(project)
    project.write("services:\n  web:\n    image: [unclosed\n")
    run = project.reroll("web")
    assert run.returncode == 3 and "compose cannot load the project" in run.stderr
    assert "yaml" in run.stderr.lower() or "unclosed" in run.stderr or "mapping" in run.stderr
    assert snapshot(project) == before


def test_compose_not_installed_is_a_clear_error(project, tmp_path):
    project.up()
    before = snapshot(project)
    real_docker = subprocess.run(["sh", "-c", "command -v docker"], capture_output=True, text=True).stdout.strip()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "docker").write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do [ "$arg" = compose ] && { echo "docker: \'compose\' is not a docker command." >&2;'
        " exit 1; }; done\n"
        f'exec {real_docker} "$@"\n')
    (fake_bin / "docker").chmod(0o755)
    plugin = os.path.join(project.env["DOCKER_CONFIG"], "cli-plugins", "docker-reroll")
    result = subprocess.run([plugin, "web"], cwd=project.directory, capture_output=True, text=True,
                            env={**project.env, "PATH": str(fake_bin)})  # no docker-compose on this PATH
    assert result.returncode == 3 and "neither `docker compose` (v2) nor `docker-compose` (v1)" in result.stderr
    assert snapshot(project) == before


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
    run = project.reroll("web", "--wait", "0.5", "--pre-stop-wait-until-unhealthy", extra_env={"TAG": "v2"})
    assert run.returncode == 0, run.stderr
    assert "WARN --pre-stop-wait-until-unhealthy: the containers have no health check" in run.stderr


def test_a_second_deploy_exits_at_once_naming_the_first_and_can_wait_for_it(project):
    project.up()
    first = start_reroll(project, "web", "--wait-after-healthy", "4", extra_env={"TAG": "v2"})
    try:
        read_until(first, "waiting 4s after healthy")
        plugin_pid = child_pid(first.pid)
        started = time.monotonic()
        second = project.reroll("web", extra_env={"TAG": "v3"})
        assert second.returncode == 4 and time.monotonic() - started < 5
        assert f"(pid {plugin_pid})" in second.stderr, "the message names the process holding the lock"
        assert "another deploy of this service is running" in second.stderr
        assert f"@{socket.gethostname()}" in second.stderr and "since 20" in second.stderr

        waited = project.reroll("web", "--lock-timeout", "60", extra_env={"TAG": "v3"})
        assert waited.returncode == 0, waited.stderr
        assert "waiting for the deploy by" in waited.stderr
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


def test_a_stale_lock_from_a_dead_process_is_taken_over(project):
    project.up()
    dead = subprocess.Popen(["true"])
    dead.wait()
    boot_id = open("/proc/sys/kernel/random/boot_id").read().strip()
    docker("create", "--name", f"docker-reroll-lock.{project.name}.web",
           *lock_labels(user="ci", host=socket.gethostname(), pid=dead.pid, **{"pid-start": "1", "boot-id": boot_id,
                        "since": f"{time.time() - 30:.0f}", "command": "docker reroll web"}),
           "docker-reroll/lock:1", "lock")

    run = project.reroll("web", extra_env={"TAG": "v2"})

    assert run.returncode == 0, run.stderr
    assert f"taking over the deploy lock of ci@{socket.gethostname()} (pid {dead.pid})" in run.stderr
    assert project.image_of(project.containers()[0]) == f"{APP_IMAGE}:v2"


def test_a_fresh_lock_held_from_another_machine_is_respected(project):
    project.up()
    docker("create", "--name", f"docker-reroll-lock.{project.name}.web",
           *lock_labels(user="ops", host="build-server-7", pid=4242, **{"pid-start": "9", "boot-id": "x",
                        "since": f"{time.time() - 60:.0f}", "command": "docker reroll web"}),
           "docker-reroll/lock:1", "lock")
    before = snapshot(project)

    run = project.reroll("web", extra_env={"TAG": "v2"})

    assert run.returncode == 4
    assert "ops@build-server-7 (pid 4242)" in run.stderr and f"docker rm docker-reroll-lock.{project.name}.web" \
        in run.stderr
    assert snapshot(project) == before


def test_killed_mid_deploy_then_rerun_converges_to_the_replica_count(project):
    """SIGKILL after the new containers are up: lock and journal stay; the next run restores 2 replicas, all new."""
    old = project.up(replicas=2)
    victim = start_reroll(project, "web", "--wait-after-healthy", "30", extra_env={"TAG": "v2"})
    read_until(victim, "waiting 30s after healthy")
    os.kill(child_pid(victim.pid), signal.SIGKILL)
    victim.wait(timeout=30)
    assert len(project.containers()) == 4
    lock = json.loads(docker("inspect", f"docker-reroll-lock.{project.name}.web.journal").stdout)[0]
    assert lock["Config"]["Labels"]["io.docker-reroll.replicas"] == "2"

    run = project.reroll("web", extra_env={"TAG": "v3"})

    assert run.returncode == 0, run.stderr
    assert "an earlier deploy of web was interrupted" in run.stderr and "taking over the deploy lock" in run.stderr
    final = project.containers()
    assert len(final) == 2 and all(project.image_of(c) == f"{APP_IMAGE}:v3" for c in final)
    assert not {c.id for c in final} & {c.id for c in old}
    assert docker("ps", "-a", "-q", "--filter", f"name=docker-reroll-lock.{project.name}").stdout == ""
