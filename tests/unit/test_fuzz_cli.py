"""Random argument vectors: the command line never raises a traceback, only exits 0 or 2 with a clean message."""

import io
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from docker_reroll import cli

WORDS = st.sampled_from([
    "reroll", "web", "-f", "--file", "--env-file", "-p", "--profile", "--project-directory", "--pre-stop-cmd",
    "--pre-stop-wait-until-unhealthy", "--healthcheck-timeout", "--wait", "--wait-after-healthy", "--lock-timeout",
    "--context", "-c", "-H", "--host", "--tls", "-D", "--config", "-l", "--", "-", "--wait=", "-fx", "1", "0.5",
    "-3", "1e9", "{id}", "--pre", "=", "--=", "-h", "-V",
])
ARGV = st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=10)


@settings(max_examples=400, deadline=None)
@given(ARGV)
def test_random_argv_never_tracebacks(argv):
    out, err = io.StringIO(), io.StringIO()
    # A valid command line would start a deploy: stand it in, the parsing is what is under test here.
    with mock.patch("docker_reroll.runner.run", return_value=0) as deploy, redirect_stdout(out), \
            redirect_stderr(err):
        code = cli.main(argv)
    assert code in (0, 2)
    if code == 2:
        assert err.getvalue().startswith("error: ") and "Traceback" not in err.getvalue()
        assert "Usage: docker reroll [OPTIONS] <SERVICE>" in err.getvalue()
        deploy.assert_not_called()
    elif deploy.called:
        options = deploy.call_args[0][0]
        assert options.service and options.healthcheck_timeout >= 0 and options.wait >= 0
