"""The exit code survives any state of stdout and stderr: closed, full, or a pipe whose reader left. The real
plugin file, run through a shell as a script would run it; no daemon needed (the runs that reach the engine are in
tests/engine/test_output_streams.py).

Seen before: `docker-reroll --help >&-` was a traceback with exit 1 (no sys.stdout), `--help >/dev/full` and
`--help | true` exited 120 (Python's exit code when its last flush fails), and a usage error with stderr closed was
exit 1 instead of 2."""

import pytest

from docker_reroll.cli import render_help
from dockerfixtures import STREAM_STATES, install_plugin, run_with_streams

COMMANDS = {  # what each prints, on which stream, with the documented exit code
    "help": (["--help"], 0, "stdout", render_help()),
    "version": (["--version"], 0, "stdout", "docker-reroll "),
    "metadata": (["docker-cli-plugin-metadata"], 0, "stdout", '{"SchemaVersion": "0.1.0"'),
    "completion": (["__complete", "reroll", "--pro"], 0, "stdout", "--project-name\t"),
    "usage error": (["--bogus", "web"], 2, "stderr", "error: unexpected argument '--bogus' found"),
}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    return install_plugin(str(tmp_path_factory.mktemp("docker-config")))


@pytest.mark.parametrize("state", STREAM_STATES)
@pytest.mark.parametrize("command", COMMANDS)
def test_the_exit_code_survives_any_state_of_the_output(plugin, command, state):
    args, code, stream, text = COMMANDS[command]
    result = run_with_streams([plugin, *args], state)
    assert result.returncode == code, (result.stdout, result.stderr)
    shown = {"stdout": result.stdout, "stderr": result.stderr}
    assert "Traceback" not in (shown["stderr"] or "") and "Exception ignored" not in (shown["stderr"] or "")
    if shown[stream] is not None and stream not in state and "both" not in state:  # its own stream works: it says it
        assert shown[stream].startswith(text), shown[stream]

