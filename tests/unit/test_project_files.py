"""What a newcomer runs first: the README's first screen, `make help`, and the Makefile's use of a virtual
environment instead of the system's Python. No daemon needed; `make -n` prints the commands without running them."""

import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIRST_SCREEN = 30  # lines


def test_the_readmes_first_screen_gives_the_two_commands_their_time_and_that_they_need_root():
    """Seen before: `make demo` first appeared at line 372 of 782, `make test` at line 746."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        screen = "".join(handle.readlines()[:FIRST_SCREEN])
    for command in ("make demo", "make test"):
        [row] = [line for line in screen.splitlines() if line.startswith(f"| `{command}` |")]
        assert re.search(r"\d+ (s|min)", row), row
        assert f"\n{command}   # " in screen, "the command itself, ready to copy"
    assert "as root" in screen and "Zero-downtime deploys" in screen


def test_make_help_lists_every_target_with_its_description():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as handle:
        phony = re.search(r"^\.PHONY: (.*)$", handle.read(), re.M).group(1).split()
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    described = dict(line.split(None, 1) for line in listed.splitlines())
    assert sorted(described) == sorted(phony)
    assert all(len(text.split()) >= 2 for text in described.values()), described


def test_the_test_and_lint_tools_go_into_a_virtual_environment_not_the_systems_python(tmp_path):
    """Seen before: `pip install --editable '.[dev]'` into the system's Python, which Debian 12's refuses
    ("externally-managed-environment") and a fresh machine may lack pip for."""
    venv = tmp_path / "venv"
    for target in ("unit", "lint", "test"):
        # As CI runs it, inside `make test`: an outer make's MAKELEVEL would add "Entering directory" lines.
        commands = subprocess.run(["make", "--no-print-directory", "-n", target, f"VENV={venv}"], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout
        assert "pip install" not in commands, commands
        assert f"scripts/venv.sh {venv}" in commands, "the environment is made (or brought up to date) first"
        runs = [line for line in commands.splitlines() if "scripts/venv.sh" not in line and "touch" not in line]
        assert runs and all(line.startswith(f'PATH="{venv}/bin:') for line in runs), runs
    with open(os.path.join(ROOT, "scripts", "venv.sh"), encoding="utf-8") as handle:
        script = handle.read()
    assert '"$python" -m venv "$venv"' in script and '"$venv/bin/python" -m pip install' in script


def test_the_parallel_phase_keeps_a_group_of_tests_on_one_worker(tmp_path):
    """The Swarm tests share one swarm, made and left by the worker that runs them (scripts/test.sh runs the
    parallel phase with --dist loadgroup). Seen before: pytest 9 with pytest-xdist 3.8 ran such a group on
    several workers at once without a word, one worker leaving the swarm under the others' stacks."""
    ran = tmp_path / "ran"
    ran.mkdir()
    (tmp_path / "test_grouped.py").write_text(
        "import os\nimport pytest\n\npytestmark = pytest.mark.xdist_group('one')\n\n"
        + "".join(f"def test_{n}():\n    open(os.path.join({str(ran)!r}, '{n}'), 'w')"
                  ".write(os.environ['PYTEST_XDIST_WORKER'])\n\n" for n in range(6))
    )
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup", "-q",
                          "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    workers = {path.read_text() for path in ran.iterdir()}
    assert len(list(ran.iterdir())) == 6 and len(workers) == 1, f"the group ran on {sorted(workers)}"


def test_the_plugin_file_starts_from_its_own_bytecode_and_still_shows_its_source(tmp_path):
    """Python caches no bytecode for modules imported from a zip: without the compiled modules in it, every run of the
    plugin compiled the whole package again (about 0.1 s of CPU)."""
    plugin = tmp_path / "docker-reroll"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_plugin.py"), str(plugin)], check=True,
                   capture_output=True)
    probe = ("import sys, linecache; sys.path.insert(0, sys.argv[1])\n"
             "import docker_reroll.cli as cli, docker_reroll.deploy as deploy\n"
             "code = cli.console_main.__code__\n"
             "print(cli.__file__, deploy.__file__)\n"
             "print(linecache.getline(code.co_filename, code.co_firstlineno, vars(cli)).strip())\n")
    shown = subprocess.run([sys.executable, "-IS", "-c", probe, str(plugin)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert shown[0].split() == [f"{plugin}/docker_reroll/cli.pyc", f"{plugin}/docker_reroll/deploy.pyc"], shown
    assert shown[1].startswith("def console_main("), "a traceback still shows the source's lines"
    metadata = subprocess.run([str(plugin), "docker-cli-plugin-metadata"], capture_output=True, text=True, check=True)
    assert '"SchemaVersion"' in metadata.stdout
