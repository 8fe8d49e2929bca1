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
    "-3", "1e9", "{id}", "--pre", "=", "--=", "-h", "-V", "--max-surge", "--scale", "web=" + "9" * 4301, "9" * 4301,
    "",
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
        assert (options.services or options.all) and options.healthcheck_timeout >= 0 and options.wait >= 0


# ---------------------------------------------------------------- every accepted spelling reads the same
# A command line is drawn as its meaning (global flags, our options, the service), then spelled in any form docker
# (pflag, for its global flags) or clap (for ours) accepts; parsing the spelling must give back the meaning.

VALUES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:/._", min_size=1, max_size=12)
SHORTHANDS = {"--context": "c", "--host": "H", "--log-level": "l"}
GLOBAL_NAMES = ["--context", "--host", "--log-level", "--config", "--tlscacert", "--tls", "--tlsverify", "--debug"]
BOOLEANS = {"--tls", "--tlsverify", "--debug"}


@st.composite
def global_flag(draw):
    """(name, value) and one of its spellings, as a list of words."""
    name = draw(st.sampled_from(GLOBAL_NAMES))
    if name in BOOLEANS:
        value = draw(st.booleans())
        words = draw(st.sampled_from(
            ([[name]] if value else []) + [[f"{name}={word}"] for word in (["true", "1", "t", "True"] if value
                                                                          else ["false", "0", "f", "FALSE"])]
            + ([["-D"]] if name == "--debug" and value else [])
            + ([[f"-D={'true' if value else 'false'}"]] if name == "--debug" else [])))
        return [(name, value)], words
    value = draw(VALUES)
    forms = [[name, value], [f"{name}={value}"]]
    short = SHORTHANDS.get(name)
    if short:
        forms += [[f"-{short}", value], [f"-{short}{value}"], [f"-{short}={value}"], [f"-D{short}", value]]
    words = draw(st.sampled_from(forms))
    flags = [("--debug", True), (name, value)] if words[0].startswith("-D") else [(name, value)]
    return flags, words


OUR_VALUES = {"--file": "f", "--project-name": "p", "--env-file": None, "--profile": None}


@st.composite
def our_option(draw):
    name = draw(st.sampled_from(sorted(OUR_VALUES)))
    value = draw(VALUES.filter(lambda text: not text.startswith("=")))
    forms = [[name, value], [f"{name}={value}"]]
    short = OUR_VALUES[name]
    if short:
        forms += [[f"-{short}", value], [f"-{short}{value}"], [f"-{short}={value}"]]
    return (name, value), draw(st.sampled_from(forms))


SECONDS = st.sampled_from([("3", 3.0), ("2.5", 2.5), (".5", 0.5), ("5.", 5.0), ("0", 0.0)])


@settings(max_examples=300, deadline=None)
@given(st.lists(global_flag(), max_size=4), st.lists(our_option(), max_size=4), SECONDS,
       st.sampled_from(["web", "reroll", "my-api"]), st.integers(min_value=0, max_value=5), st.booleans(),
       st.booleans())
def test_every_spelling_of_a_command_line_parses_to_its_meaning(globals_, ours, seconds, service, at, joined, plugin):
    ours = [option for index, option in enumerate(ours)  # -p may be given once only
            if option[0][0] != "--project-name" or all(o[0][0] != "--project-name" for o in ours[:index])]
    expected_globals = [flag for flags, _ in globals_ for flag in flags]
    wait_text, wait = seconds
    groups = [spelled for _, spelled in ours] + [[f"--wait={wait_text}"] if joined else ["--wait", wait_text]]
    groups.insert(min(at, len(groups)), [service])  # the service may come anywhere between options
    argv = [word for _, spelled in globals_ for word in spelled] + (["reroll"] if plugin else []) + \
        [word for group in groups for word in group]

    parsed = cli.parse_command_line(argv, plugin_mode=plugin)

    assert parsed.docker_globals == expected_globals
    assert parsed.services == [service] and parsed.wait == wait
    given_values = {name: [value for (option, value), _ in ours if option == name] for name in OUR_VALUES}
    assert parsed.files == given_values["--file"] and parsed.env_files == given_values["--env-file"]
    assert parsed.profiles == given_values["--profile"]
    assert parsed.project_name == (given_values["--project-name"] or [None])[0]
