"""The shape of the package, held: no import loop, no class over 300 lines, decisions apart from the code that runs
processes, and each option declared once. Read from the source (ast), without importing it."""

import ast
import os
import re

import pytest

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "..", "src", "docker_reroll")
# Modules that start processes or talk to the engine: the decisions must not depend on them.
RUNS_PROCESSES = {"engine", "compose", "processes", "watch", "lock", "swarm_engine", "host", "interrupts", "outage"}
PURE = ("planning", "release_planning", "swarm_planning", "proxy", "model", "options", "vocabulary", "errors")


def modules():
    return sorted(name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py") and name != "__main__.py")


def tree(module):
    with open(os.path.join(PACKAGE, f"{module}.py"), encoding="utf-8") as handle:
        return ast.parse(handle.read())


def imports(module):
    """The package's modules this one imports, at any depth of its code (deferred imports count too)."""
    found = set()
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("docker_reroll"):
            name = node.module.split(".", 1)[1] if "." in node.module else None
            if name:
                found.add(name)
            else:  # `from docker_reroll import x`
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("docker_reroll."))
    return found & set(modules())


def reachable(module):
    seen, todo = set(), [module]
    while todo:
        for imported in imports(todo.pop()):
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def test_no_module_imports_itself_through_others():
    loops = [m for m in modules() if m in reachable(m)]
    assert loops == [], f"import loops through: {loops}"


def test_the_decisions_import_no_module_that_starts_a_process():
    for module in PURE:
        assert not reachable(module) & RUNS_PROCESSES, f"{module} reaches {reachable(module) & RUNS_PROCESSES}"


def test_no_class_is_over_300_lines():
    long = [(m, node.name, node.end_lineno - node.lineno + 1) for m in modules() for node in ast.walk(tree(m))
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300]
    assert long == []


def test_each_options_default_and_help_are_written_once():
    """The option table is the one place: no other module spells an option's help or a `[default: ...]`."""
    from docker_reroll.options import FLAGS

    source = {m: open(os.path.join(PACKAGE, f"{m}.py"), encoding="utf-8").read() for m in modules()}
    for option in FLAGS:
        first_words = option.help[:40]
        where = [m for m, text in source.items() if first_words in text]
        assert where == ["options"], f"{option.long}'s help is written in {where}"
    assert [m for m, text in source.items() if re.search(r"\[default: ", text)] == ["options"]


@pytest.mark.parametrize("module", ["cli", "options"])
def test_the_fast_paths_import_nothing_heavy(module):
    """`docker-cli-plugin-metadata` and `--help` run on every `docker` invocation that lists plugins."""
    heavy = {"deploy", "release", "engine", "processes", "progress", "writers", "model"}
    top_level = {name for node in tree(module).body if isinstance(node, ast.ImportFrom) and node.module
                 and node.module.startswith("docker_reroll.") for name in [node.module.split(".", 1)[1]]}
    assert not top_level & heavy, top_level & heavy


def test_the_readme_layout_names_every_module_and_no_gone_one():
    with open(os.path.join(PACKAGE, "..", "..", "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    layout = readme.split("### Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(\w+)\.py`", layout))
    assert named == set(modules()) - {"__init__"}
