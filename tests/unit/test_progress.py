"""The progress modes without a daemon: the events each writer shows, the phase clock, the live block's lines,
and how a mode is chosen."""

import io
import json

import pytest

from docker_reroll import writers as progress_module
from docker_reroll.progress import PhaseClock, Progress
from docker_reroll.vocabulary import Phase
from docker_reroll.writers import JsonWriter, PlainWriter, QuietWriter, TtyWriter, choose_writer


def run_a_deploy(progress):
    progress.phase("start")
    progress.info("old containers: web-1")
    progress.phase("scale up", "web")
    progress.compose_output(" Container web-2  Created")
    progress.container("web", "a" * 64, "web-1", "old", "healthy", "app:v1")
    progress.container("web", "a" * 64, "web-1", "old", "healthy", "app:v1")  # no change: no event
    progress.container("web", "b" * 64, "web-2", "new", "waiting for healthy", "app:v2")
    progress.warn("slow")
    progress.error("web-3 is unhealthy")
    progress.detail("last 20 log lines of web-3", "line one\nline two")
    progress.output("pre-stop", "drained", "web-1")
    progress.summary("summary: web deployed; exit 0 after 1.0s", 0, "deployed", [])
    progress.close()


def test_json_is_one_object_per_event_in_order_ending_with_the_summary():
    out = io.StringIO()
    run_a_deploy(Progress(JsonWriter(out)))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["type"] for e in events] == ["phase", "log", "phase", "output", "container", "container", "log", "log",
                                           "detail", "output", "summary"]
    assert events[4]["state"] == "healthy" and events[5]["role"] == "new"
    summary = events[-1]
    assert [p["phase"] for p in summary["phases"]] == ["start", "scale up"]
    assert abs(sum(p["seconds"] for p in summary["phases"]) - summary["seconds"]) < 1e-3
    assert all(e["time"].endswith("Z") for e in events)


def test_plain_keeps_the_timestamped_lines_and_quiet_only_errors_and_the_summary():
    plain, quiet = io.StringIO(), io.StringIO()
    run_a_deploy(Progress(PlainWriter(plain)))
    run_a_deploy(Progress(QuietWriter(quiet)))
    lines = plain.getvalue().splitlines()
    assert lines[0].endswith("Z INFO old containers: web-1")
    assert any(line.endswith(" INFO compose: Container web-2  Created") for line in lines)
    assert any(line.endswith(" INFO pre-stop output for web-1: drained") for line in lines)
    assert "    line two" in lines and lines[-1].endswith(" INFO summary: web deployed; exit 0 after 1.0s")
    quiet_lines = [line.split(" ", 1)[1] for line in quiet.getvalue().splitlines() if line.startswith("20")]
    assert quiet_lines == ["ERROR web-3 is unhealthy", "ERROR last 20 log lines of web-3:",
                           "INFO summary: web deployed; exit 0 after 1.0s"]


def test_the_phase_clock_is_contiguous_so_phases_sum_to_the_total():
    clock = PhaseClock(10.0)
    clock.enter(None, Phase.START, 10.0)
    clock.enter("web", Phase.SCALE_UP, 10.5)
    clock.enter("web", Phase.DRAIN, 12.0)
    clock.enter("api", Phase.DRAIN, 13.0)
    clock.close(14.25)
    assert [(s.service, s.phase, s.seconds) for s in clock.spans] == [
        (None, "start", 0.5), ("web", "scale up", 1.5), ("web", "drain", 1.0), ("api", "drain", 1.25)]
    assert clock.seconds("web") == {"scale up": 1.5, "drain": 1.0}


class FakeTerminal(io.StringIO):
    encoding = "utf-8"  # a StringIO has none

    def isatty(self):
        return True


def test_the_live_block_redraws_in_place_and_prints_errors_below_it(monkeypatch):
    monkeypatch.setattr(progress_module, "_columns", lambda stream: 100)
    monkeypatch.setattr(progress_module, "_rows", lambda stream: 40)
    screen = FakeTerminal()
    writer = TtyWriter(screen, "docker reroll web")
    run_a_deploy(Progress(writer))
    text = screen.getvalue()
    assert text.count("\x1b[J") >= 2 and "\x1b[" in text.split("\x1b[J")[-2]  # each redraw moves back up first
    final = text.split("\x1b[J")[-1]
    assert final.startswith("[+] docker reroll web")
    assert " ✔ scale up web" in final and "Container web-2" in final and "waiting for healthy" in final
    below = final.split("waiting for healthy", 1)[1]
    assert "ERROR web-3 is unhealthy" in below and "    line two" in below and "WARN slow" in below
    assert below.rstrip("\x1b[?25h").rstrip().endswith("summary: web deployed; exit 0 after 1.0s")
    assert all(len(line) <= 100 for line in final.splitlines())


@pytest.mark.parametrize("mode, stream, expected", [
    ("auto", io.StringIO(), PlainWriter),  # not a terminal
    ("tty", io.StringIO(), PlainWriter),  # asked for, but not a terminal: plain
    ("json", FakeTerminal(), JsonWriter),
    ("quiet", io.StringIO(), QuietWriter),
    ("plain", FakeTerminal(), PlainWriter),
])
def test_the_mode_chosen(mode, stream, expected):
    assert type(choose_writer(mode, stream)) is expected


def test_auto_on_a_terminal_is_the_live_block_unless_it_is_too_narrow(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    monkeypatch.setattr(progress_module, "_columns", lambda stream: 120)
    writer = choose_writer("auto", FakeTerminal())
    assert isinstance(writer, TtyWriter)
    writer.close()
    monkeypatch.setattr(progress_module, "_columns", lambda stream: 30)
    assert type(choose_writer("auto", FakeTerminal())) is PlainWriter


def test_the_live_block_needs_a_utf8_terminal(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    monkeypatch.setattr(progress_module, "_columns", lambda stream: 120)
    latin = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    latin.isatty = lambda: True
    assert type(choose_writer("auto", latin)) is PlainWriter


def test_a_terminal_narrowed_mid_run_keeps_the_block_and_the_summary(monkeypatch):
    monkeypatch.setattr(progress_module, "_rows", lambda stream: 40)
    monkeypatch.setattr(progress_module, "_columns", lambda stream: 100)
    screen = FakeTerminal()
    progress = Progress(TtyWriter(screen, "docker reroll web"))
    monkeypatch.setattr(progress_module, "_columns", lambda stream: 6)
    run_a_deploy(progress)
    text = screen.getvalue()
    assert text.rstrip("\x1b[?25h").rstrip().endswith("summary: web deployed; exit 0 after 1.0s")
    assert "ERROR web-3 is unhealthy" in text


def test_a_failing_live_block_falls_back_to_plain_lines(monkeypatch):
    monkeypatch.setattr(progress_module, "_columns", lambda stream: 100)
    screen = FakeTerminal()
    writer = TtyWriter(screen, "docker reroll web")

    def broken(final=False):
        raise ValueError("a drawing bug")

    monkeypatch.setattr(writer, "_draw", broken)
    progress = Progress(writer)
    progress.error("web-3 is unhealthy")
    progress.summary("summary: web failed; exit 1 after 1.0s", 1, "failed", [])
    text = screen.getvalue()
    assert "\x1b[?25h" in text and " ERROR web-3 is unhealthy\n" in text
    assert text.rstrip().endswith("INFO summary: web failed; exit 1 after 1.0s")


def test_a_broken_stream_never_stops_the_deploy():
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    progress = Progress(PlainWriter(Closed()))
    progress.info("one")
    progress.summary("summary: web deployed; exit 0 after 1.0s", 0, "deployed", [])
    assert progress.finished


def test_the_outcome_in_a_word_follows_the_exit_code_and_what_each_service_became():
    from docker_reroll.summary import ServiceOutcome as Outcome
    from docker_reroll.summary import outcome_word

    assert outcome_word(0, [Outcome("web", "deployed")], dry_run=False) == "deployed"
    assert outcome_word(1, [Outcome("web", "failed (rolled back)")], dry_run=False) == "rolled back"
    assert outcome_word(1, [Outcome("a", "deployed"), Outcome("b", "failed")], dry_run=False) == "failed"
    assert outcome_word(130, [Outcome("web", "interrupted (rolled back)")], dry_run=False) == "interrupted"
    assert [outcome_word(code, [], dry_run=False) for code in (2, 3, 4, 5)] == ["usage error", "refused", "locked",
                                                                              "incomplete"]
    assert [outcome_word(code, [], dry_run=True) for code in (0, 3, 4)] == ["dry run", "dry run: refused",
                                                                          "dry run: locked"]
