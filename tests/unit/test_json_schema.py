"""The JSON stream is what the README's table says, read from the README itself: every event type and its fields,
and every word of the vocabulary (phases, roles, container states, outcomes, results, levels), so the two cannot
drift apart."""

import dataclasses
import os
import re

import pytest

from docker_reroll import progress
from docker_reroll.vocabulary import Level, Outcome, Phase, Result, Role, Shown

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def table():
    """The README's JSON table: type -> the text of its fields cell."""
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    section = text.split("#### The JSON stream", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        found = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if found:
            rows[found.group(1)] = found.group(2)
    return rows


def events():
    return {cls.kind: cls for cls in vars(progress).values()
            if isinstance(cls, type) and issubclass(cls, progress.Event) and cls.kind}


def test_every_event_type_is_documented_and_every_documented_type_exists():
    assert set(table()) == set(events())


@pytest.mark.parametrize("kind", ["log", "detail", "phase", "container", "output", "connections", "summary"])
def test_every_field_of_an_event_is_documented(kind):
    cell = table()[kind]
    documented = set(re.findall(r"`(\w+)`", cell))
    fields = {f.name for f in dataclasses.fields(events()[kind]) if f.init}
    assert fields <= documented, f"{kind}: {fields - documented} not in the README"


@pytest.mark.parametrize("kind, words", [
    ("phase", Phase),
    ("container", list(Role) + list(Shown)),
    ("log", Level),
    ("summary", list(Outcome) + list(Result)),
])
def test_every_word_the_stream_can_say_is_in_the_readme(kind, words):
    cell = table()[kind]
    documented = set(re.findall(r"`([^`]+)`", cell))
    missing = [word.value for word in words if word.value not in documented]
    assert missing == [], f"{kind}: {missing} not in the README"
