"""Runs against the engine keep their exit code whatever state stdout and stderr are in: closed, full, a pipe whose
reader left before the first line or in the middle of a deploy. The real plugin file, as a script runs it.

Seen before: a run with stderr closed ended in a traceback with exit 1, with stderr full (`2>/dev/full`) or a
reader that left (`... 2>&1 | true`) in exit 120, Python's code for a failed flush at exit."""

import os
import shutil
import subprocess

import pytest

from dockerfixtures import APP_IMAGE, STREAM_STATES, new_project, run_with_streams, slow_docker

RUNS = {  # arguments and the documented exit code
    "dry run": (["--dry-run", "web"], 0),
    "refused run": (["nosuch"], 3),  # an unknown service: refused before anything changed
}


@pytest.fixture(scope="module")
def running_project(base_env):
    project = new_project(base_env)
    project.up()
    yield project
    project.cleanup()
    shutil.rmtree(project.directory, ignore_errors=True)


def plugin_file(env):
    return os.path.join(env["DOCKER_CONFIG"], "cli-plugins", "docker-reroll")


@pytest.mark.parametrize("state", STREAM_STATES)
@pytest.mark.parametrize("run", RUNS)
def test_a_run_against_the_engine_keeps_its_exit_code_in_any_state_of_the_output(running_project, run, state):
    args, code = RUNS[run]
    result = run_with_streams([plugin_file(running_project.env), *args], state, env=running_project.env,
                              cwd=running_project.directory)
    assert result.returncode == code, result.stderr
    if result.stderr is not None:
        assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    if state == "stdout closed":  # the control: progress still reaches stderr, whole
        assert "summary: " in result.stderr and f"exit {code}" in result.stderr, result.stderr


def test_a_deploy_whose_reader_leaves_mid_run_deploys_and_exits_0(project, tmp_path):
    """`docker-reroll web 2>&1 | head -1` against a slow engine: the reader leaves after the first line, long before
    the summary; the deploy goes on to its end and the exit code is still 0."""
    [old] = project.up()
    env = {**project.env, "TAG": "v2", "PATH": f"{slow_docker(str(tmp_path / 'bin'), 0.2)}:{project.env['PATH']}"}
    read_end, write_end = os.pipe()
    process = subprocess.Popen([plugin_file(project.env), "web"], stdout=write_end, stderr=write_end, env=env,
                               cwd=project.directory)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        first = reader.readline()
    code = process.wait(timeout=180)

    assert first and "summary" not in first, first
    assert code == 0
    [new] = project.containers()
    assert new.id != old.id and project.image_of(new) == f"{APP_IMAGE}:v2" and new.health == "healthy"
