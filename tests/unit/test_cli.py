"""Argument parsing, the plugin protocol's argv split, help and usage errors: no daemon needed."""

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from docker_reroll import __version__
from docker_reroll.cli import (
    METADATA_COMMAND,
    PLUGIN_ENV,
    USAGE,
    main,
    parse_args,
    parse_command_line,
    render_help,
    split_argv,
)
from docker_reroll.errors import UsageError

PLUGIN_MODE = {PLUGIN_ENV: "/usr/bin/docker"}  # what the docker CLI sets when it runs a plugin


def run_main(argv, environ=PLUGIN_MODE):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv, environ)
    return code, out.getvalue(), err.getvalue()


def test_metadata_is_only_a_json_object_with_the_protocol_fields():
    code, out, err = run_main([METADATA_COMMAND])
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["SchemaVersion"] == "0.1.0"
    assert data["Vendor"] and data["Version"] == __version__
    assert data["ShortDescription"]
    assert "URL" not in data, "optional, and the project has no address of its own to give"


def test_help_keeps_the_original_option_lines_and_documents_the_compose_flags():
    code, out, _ = run_main(["reroll", "--help"])
    assert code == 0 and out == render_help()
    for line in [
        "Usage: docker reroll [OPTIONS] <SERVICE>...",
        "       docker reroll [OPTIONS] --all",
        "  <SERVICE>...  Services to deploy, one after another in this order",
        "      --max-surge <MAX_SURGE>",
        "      --all",
        "  -f, --file <FILE>",
        "          Compose configuration file",
        "      --env-file <ENV_FILE>",
        "      --pre-stop-cmd <PRE_STOP_CMD>",
        "          Command to run before stopping old container. {id} will be replaced with container id",
        "      --pre-stop-wait-until-unhealthy",
        "          Assuming there is a health check, after running the pre-stop command, wait until the old "
        "container is unhealthy before stopping it",
        "          Health check timeout (in seconds) [default: 60]",
        "          Wait X seconds before stopping old container when there is no health check [default: 10]",
        "          When there is a health check and it succeeds, wait additional X seconds before stopping old "
        "container [default: 0]",
        "  -p, --project-name <PROJECT_NAME>",
        "      --profile <PROFILE>",
        "      --project-directory <PROJECT_DIRECTORY>",
        "  -h, --help",
        "  -V, --version",
    ]:
        assert line in out.splitlines(), line


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag):
    assert run_main(["reroll", flag]) == (0, f"docker-reroll {__version__}\n", "")


def test_defaults():
    options = parse_args(["web"])
    assert options.services == ["web"]
    assert (options.healthcheck_timeout, options.wait, options.wait_after_healthy, options.lock_timeout) == (
        60, 10, 0, 0)
    assert options.pre_stop_cmd is None and not options.pre_stop_wait_until_unhealthy
    assert options.compose_project_args() == []


def test_every_option_in_every_spelling():
    options = parse_args([
        "-f", "a.yml", "--file=b.yml", "-fc.yml", "--env-file", "x.env", "--env-file=y.env",
        "-p", "proj", "--project-directory", "/srv/app", "--profile", "one", "--profile=two",
        "--pre-stop-cmd", "docker exec {id} touch /.dead", "--pre-stop-wait-until-unhealthy",
        "--healthcheck-timeout", "90", "--wait=3", "--wait-after-healthy", "1.5", "--wait-after-unhealthy", "2",
        "--lock-timeout", "30", "web",
    ])
    assert options.wait_after_unhealthy == 2
    assert options.files == ["a.yml", "b.yml", "c.yml"]
    assert options.env_files == ["x.env", "y.env"]
    assert options.pre_stop_cmd == "docker exec {id} touch /.dead"
    assert options.pre_stop_wait_until_unhealthy
    assert (options.healthcheck_timeout, options.wait, options.wait_after_healthy, options.lock_timeout) == (
        90, 3, 1.5, 30)
    assert options.compose_project_args() == [
        "--file", "a.yml", "--file", "b.yml", "--file", "c.yml", "--env-file", "x.env", "--env-file", "y.env",
        "--project-name", "proj", "--project-directory", "/srv/app", "--profile", "one", "--profile", "two",
    ]


def test_service_may_come_first_and_after_double_dash():
    assert parse_args(["web", "--wait", "1"]).services == ["web"]
    assert parse_args(["--", "-odd-name"]).services == ["-odd-name"]


@pytest.mark.parametrize("argv, message", [
    ([], "the following required arguments were not provided:\n  <SERVICE>..."),
    (["--pre", "x", "web"], "unexpected argument '--pre' found"),
    (["--wait", "web"], "invalid value 'web' for '--wait <WAIT>'"),
    (["--bogus", "web"], "unexpected argument '--bogus' found"),
    (["web", "api", "web"], "invalid value 'web' for '<SERVICE>...': the service is named twice"),
    (["--all", "web"], "the argument '--all' cannot be used with '<SERVICE>...' (found 'web')"),
    (["--max-surge", "0", "web"], "invalid value '0' for '--max-surge <MAX_SURGE>': expected a whole number"),
    (["--wait", "abc", "web"], "invalid value 'abc' for '--wait <WAIT>'"),
    (["--wait", "-1", "web"], "invalid value '-1' for '--wait <WAIT>'"),
    (["--healthcheck-timeout", "1e3", "web"], "invalid value '1e3' for '--healthcheck-timeout"),
    (["--wait", "nan", "web"], "invalid value 'nan'"),
    (["--wait", "99999999999", "web"], "at most"),
    (["web", "--wait"], "a value is required for '--wait <WAIT>' but none was supplied"),
    (["--wait", "1", "--wait", "2", "web"], "the argument '--wait <WAIT>' cannot be used multiple times"),
    (["--pre-stop-wait-until-unhealthy=yes", "web"], "unexpected value 'yes'"),
    ([""], "a service name cannot be empty"),
    # a missing value (`--pre-stop-cmd $UNSET --dry-run web`) must not swallow the next option: a real deploy
    (["--pre-stop-cmd", "--dry-run", "web"], "a value is required for '--pre-stop-cmd <PRE_STOP_CMD>'"),
    (["-p", "--all"], "a value is required for '--project-name <PROJECT_NAME>'"),
    (["--pre-stop-exec", "touch '/x", "web"], "it does not split into words (no closing quotation)"),
    (["--pre-stop-exec", "  ", "web"], "expected a command"),
    (["--max-surge", "²", "web"], "invalid value '²' for '--max-surge <MAX_SURGE>'"),
    (["--scale", "web=²", "web"], "invalid value 'web=²' for '--scale <SERVICE=NUM>'"),
    # an empty or blank pre-stop command (`--pre-stop-cmd "$UNSET"`) would turn the drain off, a label's too
    (["--pre-stop-cmd", "", "web"], "invalid value '' for '--pre-stop-cmd <PRE_STOP_CMD>': expected a command"),
    (["--pre-stop-cmd=", "web"], "invalid value '' for '--pre-stop-cmd <PRE_STOP_CMD>': expected a command"),
    (["--pre-stop-cmd", " \t", "web"], "for '--pre-stop-cmd <PRE_STOP_CMD>': expected a command"),
    # numbers past Python's 4,300 digits were a traceback (exit 1); counts stop at 10000, as seconds at a week
    (["--max-surge", "9" * 5000, "web"], f"invalid value '{'9' * 40}... (5000 characters)' for '--max-surge "
                                         "<MAX_SURGE>': expected a whole number from 1 to 10000"),
    (["--max-surge", "10001", "web"], "expected a whole number from 1 to 10000"),
    (["--scale", "web=" + "9" * 5000, "web"], "for '--scale <SERVICE=NUM>': expected SERVICE=NUM, NUM from 1 to 10000"),
    (["--scale", "web=10001", "web"], "expected SERVICE=NUM, NUM from 1 to 10000"),
    (["--wait", "9" * 5000, "web"], "at most 604800 seconds"),
])
def test_usage_errors_are_clap_style_with_exit_2(argv, message):
    code, out, err = run_main(["reroll"] + argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err
    assert f"\n\n{USAGE}\n\nFor more information, try '--help'.\n" in err


def test_counts_up_to_the_bound_in_any_spelling():
    assert parse_args(["--max-surge", "10000", "--scale", "web=10000", "web"]).max_surge == 10000
    assert parse_args(["--max-surge", "007", "--scale", "web=0010", "web"]).scale == {"web": 10}
    assert parse_args(["--max-surge", "0" * 5000 + "3", "web"]).max_surge == 3, "leading zeros are no digits"


@pytest.mark.parametrize("argv, flag, moved", [
    (["web", "--context", "prod"], "--context", "docker --context prod reroll web"),
    (["web", "-c", "prod", "--wait", "2"], "-c", "docker -c prod reroll web --wait 2"),
    (["-H", "unix:///var/run/docker.sock", "web"], "-H", "docker -H unix:///var/run/docker.sock reroll web"),
    (["web", "--host=tcp://h:2376"], "--host", "docker --host=tcp://h:2376 reroll web"),
    (["web", "-Hunix:///s"], "-H", "docker -Hunix:///s reroll web"),
    (["web", "--tls", "--tlsverify"], "--tls", "docker --tls --tlsverify reroll web"),
    (["web", "-Dc", "my prod"], "-D", "docker -Dc 'my prod' reroll web"),
])
def test_dockers_global_options_after_reroll_are_shown_where_they_go(argv, flag, moved):
    code, _, err = run_main(["reroll", *argv])
    assert code == 2, err
    assert err.startswith(f"error: unexpected argument '{flag}' found; docker's global options go before `reroll`: "
                          f"{moved}\n"), err


def test_a_global_option_after_reroll_without_its_value_still_gets_the_hint():
    _, _, err = run_main(["reroll", "web", "--context"])
    assert err.startswith("error: unexpected argument '--context' found; docker's global options go before "
                          "`reroll`\n"), err
    _, _, err = run_main(["reroll", "web", "--bogus"])
    assert err.startswith("error: unexpected argument '--bogus' found\n"), "only docker's own options get it"


def test_split_plugin_invocation_with_global_options():
    argv = ["--context", "prod", "-H", "tcp://h:2376", "--tls", "--tlscacert=/ca.pem", "-D", "-l", "info",
            "--config", "/cfg", "reroll", "-f", "x.yml", "web"]
    globals_, rest = split_argv(argv)
    assert globals_ == [("--context", "prod"), ("--host", "tcp://h:2376"), ("--tls", True),
                        ("--tlscacert", "/ca.pem"), ("--debug", True), ("--log-level", "info"), ("--config", "/cfg")]
    assert rest == ["-f", "x.yml", "web"]


def test_a_global_value_named_reroll_does_not_confuse_the_split():
    globals_, rest = split_argv(["--context", "reroll", "reroll", "web"])
    assert globals_ == [("--context", "reroll")] and rest == ["web"]
    globals_, rest = split_argv(["-c", "reroll", "reroll", "reroll"])  # a service called reroll, too
    assert globals_ == [("--context", "reroll")] and rest == ["reroll"]


@pytest.mark.parametrize("argv, flags", [
    (["-Hunix:///var/run/docker.sock"], [("--host", "unix:///var/run/docker.sock")]),
    (["-H=tcp://h:1"], [("--host", "tcp://h:1")]),  # pflag drops the `=` (seen before: kept in the value)
    (["-c=prod"], [("--context", "prod")]),
    (["--host=tcp://h:1"], [("--host", "tcp://h:1")]),
    (["-Dc", "prod"], [("--debug", True), ("--context", "prod")]),  # combined shorthands
    (["-Dcprod"], [("--debug", True), ("--context", "prod")]),
    (["-D=false"], [("--debug", False)]),
    (["--tlsverify=false"], [("--tlsverify", False)]),
    (["--debug=true", "--tls=1"], [("--debug", True), ("--tls", True)]),
    (["-lerror"], [("--log-level", "error")]),
])
def test_global_flags_in_every_form_docker_accepts(argv, flags):
    assert split_argv([*argv, "reroll", "web"]) == (flags, ["web"])


@pytest.mark.parametrize("argv, message", [
    (["--tlsverify=maybe"], "invalid value 'maybe' for '--tlsverify'"),
    (["-Dx"], "unknown shorthand flag: 'x' in -Dx"),
    (["--context"], "a value is required for '--context'"),
    (["-c"], "a value is required for '-c'"),
])
def test_bad_global_flags_are_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        split_argv(argv)


def test_standalone_the_first_word_is_a_service_even_if_it_is_called_reroll():
    """Seen before: `docker-reroll reroll` (standalone) dropped the service's name as if it were the plugin's."""
    assert split_argv(["web", "--wait", "1"], plugin_mode=False) == ([], ["web", "--wait", "1"])
    assert split_argv(["reroll"], plugin_mode=False) == ([], ["reroll"])
    assert split_argv(["reroll"], plugin_mode=True) == ([], [])
    options = parse_command_line(["--context", "prod", "reroll"], plugin_mode=False)
    assert options.docker_globals == [("--context", "prod")] and options.services == ["reroll"]


@pytest.mark.parametrize("word, value", [("-f=compose.yml", "compose.yml"), ("-fcompose.yml", "compose.yml"),
                                         ("--file=compose.yml", "compose.yml")])
def test_our_short_options_take_their_value_as_clap_does(word, value):
    assert parse_args([word, "-p=proj", "web"]).files == [value]
    assert parse_args(["-p=proj", "web"]).project_name == "proj"


@pytest.mark.parametrize("text, seconds", [("2", 2), ("2.5", 2.5), (".5", 0.5), ("5.", 5.0), ("0", 0)])
def test_seconds_in_every_form_a_float_parser_reads(text, seconds):
    assert parse_args(["--wait", text, "web"]).wait == seconds


def test_several_services_in_order_or_all_and_max_surge():
    assert parse_args(["web", "worker", "api"]).services == ["web", "worker", "api"]
    options = parse_args(["--all", "--max-surge", "2", "--scale", "api=3"])
    assert options.all and options.services == [] and options.max_surge == 2 and options.scale == {"api": 3}
    assert options.source("max_surge") == "command line"


def test_scale_takes_composes_syntax_for_the_service_deployed():
    assert parse_args(["--scale", "web=3", "web"]).scale == {"web": 3}
    assert parse_args(["--scale=web=1", "web"]).scale == {"web": 1}
    for bad, message in [("web", "expected SERVICE=NUM"), ("web=0", "NUM from 1"), ("web=x", "SERVICE=NUM"),
                         ("=2", "SERVICE=NUM"), ("api=2", "'api' is not among the services deployed")]:
        with pytest.raises(UsageError, match=message):
            parse_args(["--scale", bad, "web"])


def test_the_readmes_usage_is_the_help_text_word_for_word():
    import os

    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8").read()
    body = render_help().split("\n\n", 1)[1].strip()
    assert f"```\n{body}\n```" in readme


def test_progress_mode_from_the_command_line_or_the_environment_and_dry_run():
    from docker_reroll.cli import parse_command_line

    assert parse_command_line(["--progress", "json", "web"], environ={}).progress == "json"
    from_env = parse_command_line(["web"], environ={"DOCKER_REROLL_PROGRESS": "quiet"})
    assert from_env.progress == "quiet" and from_env.source("progress") == "DOCKER_REROLL_PROGRESS"
    assert parse_command_line(["--progress=tty", "web"], environ={"DOCKER_REROLL_PROGRESS": "quiet"}).progress == "tty"
    assert parse_command_line(["web"], environ={}).progress == "auto"
    assert parse_command_line(["--dry-run", "web"], environ={}).dry_run is True
    with pytest.raises(UsageError, match="invalid value 'fancy' for '--progress <PROGRESS>'"):
        parse_command_line(["--progress", "fancy", "web"], environ={})
    with pytest.raises(UsageError, match="invalid value 'x' for DOCKER_REROLL_PROGRESS"):
        parse_command_line(["web"], environ={"DOCKER_REROLL_PROGRESS": "x"})


def test_version_and_metadata_agree_with_the_package():
    from importlib.metadata import version

    out = io.StringIO()
    with redirect_stdout(out):
        main(["docker-cli-plugin-metadata"], environ={})
    assert json.loads(out.getvalue())["Version"] == __version__ == version("docker-reroll")


def test_help_and_version_are_not_hidden_by_a_bad_environment():
    for flag in ("--help", "-V"):
        options = parse_command_line(["docker-reroll", "reroll", flag], environ={"DOCKER_REROLL_PROGRESS": "fancy"})
        assert options.help or options.version


def test_label_commands_are_allowed_by_the_flag_or_the_environment_and_say_which():
    assert parse_command_line(["web"], environ={}).allow_label_cmd is False
    flag = parse_command_line(["--allow-label-cmd", "web"], environ={"DOCKER_REROLL_ALLOW_LABEL_CMD": "0"})
    assert flag.allow_label_cmd is True and flag.source("allow_label_cmd") == "command line"
    env = parse_command_line(["web"], environ={"DOCKER_REROLL_ALLOW_LABEL_CMD": "true"})
    assert env.allow_label_cmd is True and env.source("allow_label_cmd") == "DOCKER_REROLL_ALLOW_LABEL_CMD"
    assert parse_command_line(["web"], environ={"DOCKER_REROLL_ALLOW_LABEL_CMD": "no"}).allow_label_cmd is False
    with pytest.raises(UsageError, match="invalid value 'maybe' for DOCKER_REROLL_ALLOW_LABEL_CMD"):
        parse_command_line(["web"], environ={"DOCKER_REROLL_ALLOW_LABEL_CMD": "maybe"})
