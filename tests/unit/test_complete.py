"""Completion candidates without a daemon (the services come from compose: that part is tested on the engine)."""

import pytest

from docker_reroll import complete as complete_module
from docker_reroll.complete import NO_FILE, NO_SPACE, candidates_for, complete, option_help, project_args


@pytest.fixture
def services(monkeypatch):
    asked = []

    def fake(typed, environ, *command):
        asked.append((project_args(typed), command))
        return ["api", "web"]

    monkeypatch.setattr(complete_module, "_compose", fake)
    return asked


def test_every_option_has_its_help_text():
    texts = option_help()
    assert texts["--file"] == texts["-f"] == "Compose configuration file"
    assert texts["--healthcheck-timeout"] == "Health check timeout (in seconds)"
    assert all(texts.values()), [name for name, text in texts.items() if not text]


def test_options_values_and_services(services):
    assert complete(["--dry"], {}) == "--dry-run\tShow what the deploy would do (containers, batches, waits, " \
                                      "pre-stop commands, lock) and change nothing\n:4\n"
    assert candidates_for(["--progress"], "q", {}) == (["quiet\terrors and the summary"], NO_FILE)
    assert candidates_for([], "--progress=j", {}) == (["--progress=json\tone JSON object per event"], NO_FILE)
    assert candidates_for(["--scale"], "w", {}) == (["web="], NO_SPACE | NO_FILE)
    assert candidates_for(["--file"], "", {}) == ([], 0)  # the shell completes file names
    assert candidates_for(["--wait"], "", {}) == ([], NO_FILE)  # a number: nothing to suggest
    assert candidates_for(["-f", "x.yaml", "-p", "demo", "--profile=tools", "api"], "", {}) == (["web"], NO_FILE)
    assert services[-1] == (["--file", "x.yaml", "--project-name", "demo", "--profile", "tools"],
                            ("config", "--services"))


def test_an_option_name_is_never_taken_as_the_value_of_the_option_before_it(services):
    # as the parser reads `--pre-stop-cmd --wait`: --pre-stop-cmd lacks its value, and --wait's comes next
    assert candidates_for(["--pre-stop-cmd", "--wait"], "", {}) == ([], NO_FILE)
    assert candidates_for(["--pre-stop-cmd", "true"], "", {}) == (["api", "web"], NO_FILE)


@pytest.mark.parametrize("typed", [["-fx.yaml", "-pdemo"], ["-f=x.yaml", "-p=demo"], ["--file=x.yaml", "-p", "demo"]])
def test_the_project_is_selected_by_every_form_the_parser_accepts(typed):
    assert project_args(typed) == ["--file", "x.yaml", "--project-name", "demo"]
