"""For people at a terminal and for scripts: the progress modes (a live view in a real terminal, JSON, quiet), a
dry run that changes nothing, settings from the compose file's labels, and completion through docker's own."""

import json
import os
import shlex
import signal
import subprocess
import time
from datetime import datetime

import pytest

from dockerfixtures import (
    APP_IMAGE,
    HEALTHCHECK,
    SERVICE_TEMPLATE,
    child_pid,
    docker,
    finish,
    lock_and_journal,
    read_until,
    start_reroll,
)

DRAIN_EXEC = ["--pre-stop-exec", "touch /.dead", "--pre-stop-wait-until-unhealthy"]
ROLL_PHASES = ["start", "prepare", "scale up", "wait until ready", "pre-stop", "drain", "retire"]


def ids(containers):
    return sorted(c.id for c in containers)


def events_of(run):
    """Every line of a JSON-mode run's stderr as an object: a line that is not JSON fails the test here."""
    return [json.loads(line) for line in run.stderr.splitlines()]


def moment(event):
    return datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def states_of(events, container_id):
    return [e["state"] for e in events if e["type"] == "container" and e["id"] == container_id]


def in_order(seen, expected):
    """`expected` occurs in `seen` in this order (other items may come between)."""
    position = 0
    for item in seen:
        if position < len(expected) and item == expected[position]:
            position += 1
    return position == len(expected)


def test_json_progress_of_a_real_deploy_parses_is_in_order_and_its_phases_add_up(project):
    old = project.up(replicas=2)

    run = project.reroll("--progress", "json", *DRAIN_EXEC, "web", extra_env={"TAG": "v2"})

    assert run.returncode == 0, run.stderr
    events = events_of(run)
    assert events[0]["type"] == "phase" and events[-1]["type"] == "summary"
    assert [e for e in events if e["type"] == "summary"] == [events[-1]]
    times = [moment(e) for e in events]
    assert times == sorted(times), "events out of order"
    phases = [e["phase"] for e in events if e["type"] == "phase"]
    assert phases == ROLL_PHASES, phases
    new = project.containers()
    for container in old:
        assert in_order(states_of(events, container.id), ["healthy", "draining", "stopping", "removed"]), \
            states_of(events, container.id)
    for container in new:
        assert in_order(states_of(events, container.id), ["created", "starting", "healthy"]), \
            states_of(events, container.id)
    summary = events[-1]
    assert summary["outcome"] == "deployed" and summary["exit_code"] == 0
    assert summary["message"].startswith("summary: web deployed; exit 0 after ")
    [service] = summary["services"]
    assert sorted(c["id"] for c in service["old"]) == ids(old)
    assert sorted(c["id"] for c in service["new"]) == ids(new)
    assert {c["image"] for c in service["old"]} == {f"{APP_IMAGE}:v1"}
    assert {c["image"] for c in service["new"]} == {f"{APP_IMAGE}:v2"}
    assert [p["phase"] for p in summary["phases"]] == ROLL_PHASES
    phase_total = sum(p["seconds"] for p in summary["phases"])
    assert abs(phase_total - summary["seconds"]) < 0.05
    assert abs(phase_total - (moment(summary) - moment(events[0]))) < 0.05, (phase_total, events[0], summary)
    pre_stops = [e["message"] for e in events if e["type"] == "log" and "running pre-stop" in e["message"]]
    assert sorted(pre_stops) == sorted(f"running pre-stop command for {c.name}: docker exec {c.id[:12]} touch /.dead"
                                       for c in old)


def test_json_progress_of_a_failed_deploy_ends_rolled_back_with_its_errors(project):
    old = project.up(replicas=1)

    run = project.reroll("--healthcheck-timeout", "3", "web", extra_env={"DOCKER_REROLL_PROGRESS": "json",
                                                                           "BROKEN": "1", "TAG": "v2"})

    assert run.returncode == 1
    events = events_of(run)
    errors = [e["message"] for e in events if e["type"] == "log" and e["level"] == "error"]
    assert any("unhealthy" in message for message in errors), errors
    assert any(e["type"] == "detail" and e["title"].startswith("last 20 log lines of") for e in events)
    assert "roll back" in [e["phase"] for e in events if e["type"] == "phase"]
    summary = events[-1]
    assert summary["type"] == "summary" and summary["outcome"] == "rolled back" and summary["exit_code"] == 1
    assert summary["message"].startswith("summary: web failed (rolled back); exit 1 after ")
    assert ids(project.containers()) == ids(old)


def test_quiet_prints_only_the_summary_and_errors(project):
    project.up(replicas=1)

    deployed = project.reroll("--progress", "quiet", "web", extra_env={"TAG": "v2"})
    failed = project.reroll("--progress", "quiet", "--healthcheck-timeout", "3", "web",
                            extra_env={"BROKEN": "1", "TAG": "v3"})

    assert deployed.returncode == 0
    [line] = deployed.stderr.splitlines()  # not even compose's own output
    assert " INFO summary: web deployed; exit 0 after " in line
    assert failed.returncode == 1
    info = [line for line in failed.stderr.splitlines() if " INFO " in line]
    assert info == failed.stderr.splitlines()[-1:] and "Container" not in failed.stderr, failed.stderr
    assert " ERROR " in failed.stderr and "unhealthy" in failed.stderr
    assert failed.stderr.splitlines()[-1].split(" ", 1)[1].startswith("INFO summary: web failed (rolled back)")


def test_plain_is_the_default_off_a_terminal_and_says_where_each_setting_came_from(project):
    project.up(replicas=1)

    run = project.reroll("--drain-time", "0.5", "--pre-stop-cmd", "true", "web", extra_env={"TAG": "v2"})

    assert run.returncode == 0
    assert "--drain-time 0.5s (command line)" in run.stderr
    assert "--healthcheck-timeout 60s (default)" in run.stderr
    assert " INFO summary: web deployed; exit 0 after " in run.stderr.splitlines()[-1]
    assert "[+]" not in run.stderr and "\x1b[" not in run.stderr
    bad = project.reroll("--progress", "fancy", "web")
    assert bad.returncode == 2 and "invalid value 'fancy' for '--progress <PROGRESS>'" in bad.stderr
    bad_env = project.reroll("web", extra_env={"DOCKER_REROLL_PROGRESS": "fancy"})
    assert bad_env.returncode == 2 and "DOCKER_REROLL_PROGRESS" in bad_env.stderr


# ------------------------------------------------------------------------------------------- the live display


def tmux(*args, check=True):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check)


def run_in_terminal(project, session, reroll_args, columns=110, rows=30, extra_env=None):
    """`docker reroll ...` in a real terminal (a detached tmux pane); the pane stays after it exits."""
    env = {**project.env, **(extra_env or {})}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()
                       if k.startswith(("DOCKER_", "COMPOSE_")) or k in (extra_env or {}))
    command = (f"cd {shlex.quote(project.directory)} && env {exports} docker reroll {reroll_args}; "
               f"echo EXIT=$?; sleep 600")
    tmux("new-session", "-d", "-s", session, "-x", str(columns), "-y", str(rows), command)


def capture(session):
    return tmux("capture-pane", "-p", "-J", "-t", session).stdout  # -J: wrapped lines joined


def wait_for_screen(session, condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = capture(session)
        if condition(screen):
            return screen
        time.sleep(0.1)
    raise AssertionError(f"the screen never showed what was expected:\n{capture(session)}")


@pytest.fixture
def terminal():
    session = f"reroll{os.getpid()}{time.monotonic_ns() % 100000}"
    yield session
    tmux("kill-session", "-t", session, check=False)


def test_tty_redraws_one_block_in_place_in_a_real_terminal(project, terminal):
    old = project.up(replicas=2)
    project.write(SERVICE_TEMPLATE.format(image=APP_IMAGE, healthcheck=HEALTHCHECK.replace(
        "retries: 1", "retries: 1\n      start_period: 5s")))  # slow enough to catch it waiting

    run_in_terminal(project, terminal, "--pre-stop-exec 'touch /.dead' --pre-stop-wait-until-unhealthy "
                    "--wait-after-healthy 2 web", extra_env={"TAG": "v2", "MARK": "slow"})
    during = wait_for_screen(terminal, lambda s: "waiting for healthy" in s or "wait until ready" in s)
    end = wait_for_screen(terminal, lambda s: "EXIT=" in s)
    print(f"during:\n{during}\nat the end:\n{end}")

    assert "[+] docker reroll web" in during
    assert " new " in during and " old " in during
    assert any(mark in during for mark in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), "no spinner while it runs"
    assert "EXIT=0" in end
    assert end.count("[+] docker reroll web") == 1, "the block was printed again instead of redrawn"
    for phase in ROLL_PHASES[1:]:
        assert f"✔ {phase} web" in end, phase
    for container in old:
        assert f"Container {container.name}" in end and "removed" in end
    for container in project.containers():
        line = next(li for li in end.splitlines() if f"Container {container.name}" in li)
        assert " new " in line and "healthy" in line and "✔" in line
    summary = [li for li in end.splitlines() if li.startswith("summary: ")]
    assert len(summary) == 1 and summary[0].startswith("summary: web deployed; exit 0 after ")
    assert "\x1b" not in end  # tmux shows the screen, not escape codes


def test_tty_shows_errors_in_full_below_the_block_and_a_narrow_terminal_gets_plain_lines(project, terminal):
    project.up(replicas=1)

    run_in_terminal(project, terminal, "--healthcheck-timeout 3 web", extra_env={"TAG": "v2", "BROKEN": "1"})
    end = wait_for_screen(terminal, lambda s: "EXIT=" in s)
    narrow = terminal + "n"
    run_in_terminal(project, narrow, "--healthcheck-timeout 3 web", columns=30, rows=60,
                    extra_env={"TAG": "v2"})
    try:
        narrow_end = wait_for_screen(narrow, lambda s: "EXIT=" in s)
    finally:
        tmux("kill-session", "-t", narrow, check=False)
    print(f"failed:\n{end}\nnarrow:\n{narrow_end}")

    lines = end.splitlines()
    block_end = max(i for i, li in enumerate(lines) if "Container " in li)
    below = "\n".join(lines[block_end + 1:])
    assert "ERROR" in below and "is unhealthy" in below and "last 20 log lines of" in below
    assert "EXIT=1" in end and "summary: web failed (rolled back)" in below
    assert "[+]" not in narrow_end and "\u280b" not in narrow_end
    stamped = [li for li in narrow_end.splitlines() if li.startswith("20") and "Z INFO " in li]
    assert any("scaling web from 1 to 2" in li for li in stamped), narrow_end
    assert stamped[-1].endswith("exit 0 after " + stamped[-1].rsplit(" ", 1)[1]) and "EXIT=0" in narrow_end


# ------------------------------------------------------------------------------------------------ dry run


def snapshot(project):
    """What a dry run must leave as it was: the project's containers with their state, and the lock objects."""
    found = docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Status}}", "--filter",
                   f"label=com.docker.compose.project={project.name}").stdout
    return sorted(" ".join(line.split()[:2]) for line in found.splitlines()), lock_and_journal(project)


def health_probe_or_read(event):
    """Docker's own health checks run as execs all along: exec_create (with the check's command), then
    exec_start and exec_die; a copy out of a container (archive-path: whether an old container has a /bin/sh, for
    a roll-back across batches) only reads. Anything else (create, start, kill, an exec of another command) is a
    change."""
    action = event[2]
    return action.startswith("exec_create: sh -c test \"$BROKEN\"") or action.split(":")[0] in (
        "exec_start", "exec_die", "archive-path")


def test_dry_run_prints_the_plan_and_changes_nothing(project):
    project.up(replicas=3)
    docker("stop", "--time", "0", f"{project.name}-web-2")  # stale: removed first, not counted
    containers = project.containers()
    before = snapshot(project)
    started = time.time()

    run = project.reroll("--dry-run", "--pre-stop-cmd", "echo drain {id}", "--max-surge", "1", "web",
                         extra_env={"TAG": "v2"})

    events = [e for e in project.recorder.between(started, time.time()) if not health_probe_or_read(e)]
    assert run.returncode == 0, run.stderr
    assert events == [], events
    assert snapshot(project) == before
    out = run.stderr
    running = [c for c in containers if c.status == "running"]
    for container in running:
        assert f"pre-stop for {container.name}: echo drain {container.id}" in out
    stale = [c for c in containers if c.status != "running"]
    assert stale and all(c.name in out.split("stale, removed first:")[1] for c in stale)
    assert f"lock: docker-reroll-lock.{project.name}.web (free" in out
    assert f"--scale web={len(running) + 1} web" in out, out
    assert "in 2 batches of up to 1" in out
    assert "wait up to 60s for every new container to be healthy" in out
    assert "--pre-stop-cmd echo drain {id} (command line)" in out and "--max-surge 1 (command line)" in out
    assert "the deploy can proceed" in out and "summary: dry run; exit 0" in out


PLAN_FIELDS = ("settings", "containers", "stale", "replicas", "journal", "batches", "failure_action", "healthcheck",
               "pre_stop", "messages")


def test_the_dry_runs_plan_is_the_plan_the_deploy_then_carries_out(project):
    """One plan for both: the deploy's own plan event equals the dry run's, field by field and line by line, and
    what the engine shows afterwards is that plan carried out (stale removed, batches, pre-stop commands, count)."""
    project.up(replicas=3)
    docker("stop", "--time", "0", f"{project.name}-web-2")
    args = ["--progress", "json", "--pre-stop-cmd", "echo drain {id}", "--max-surge", "1", "web"]

    dry = project.reroll("--dry-run", *args, extra_env={"TAG": "v2"})
    run = project.reroll(*args, extra_env={"TAG": "v2"})

    assert dry.returncode == 0 and run.returncode == 0, (dry.stderr, run.stderr)
    [dry_plan] = [e for e in events_of(dry) if e["type"] == "plan"]
    events = events_of(run)
    [done_plan] = [e for e in events if e["type"] == "plan"]
    assert done_plan["dry_run"] is False and dry_plan["dry_run"] is True
    [dry_service], [done_service] = dry_plan["services"], done_plan["services"]
    assert {f: done_service[f] for f in PLAN_FIELDS} == {f: dry_service[f] for f in PLAN_FIELDS}
    said = [line.strip() for line in done_plan["lines"][1:]]
    printed = [line.strip() for line in dry_plan["lines"]]
    assert said and any(printed[i:i + len(said)] == said for i in range(len(printed))), (said, printed)

    # ...and carried out: the stale container went first, one scale-up per batch, each old container drained by
    # the planned command, and the service ends at the planned count.
    assert [c["name"] for c in done_service["stale"]] == [f"{project.name}-web-2"]
    batches = done_service["batches"]
    assert len(batches) == 2 and sum(b["retire"] for b in batches) == 2
    phases = [e["phase"] for e in events if e["type"] == "phase"]
    assert phases.count("scale up") == len(batches) and phases.count("retire") == len(batches), phases
    commands = [e["line"] for e in events if e["type"] == "output" and e["source"] == "pre-stop"]
    assert sorted(commands) == sorted(p["command"].replace("echo ", "", 1) for p in done_service["pre_stop"])
    assert len(project.containers()) == done_service["replicas"] == 2
    [summary] = [e for e in events if e["type"] == "summary"]
    assert sorted(c["id"] for c in summary["services"][0]["old"]) == sorted(c["id"] for c in
                                                                            done_service["containers"])


def test_dry_run_exits_3_when_refused_and_4_when_locked(project):
    project.up(replicas=1)
    project.compose("up", "-d", "--no-recreate", "--scale", "web=2", "web", extra_env={"TAG": "v2"})
    before = snapshot(project)

    refused = project.reroll("--dry-run", "--progress", "json", "web", extra_env={"TAG": "v3"})

    assert refused.returncode == 3
    plan = next(e for e in events_of(refused) if e["type"] == "plan")
    assert plan["exit_code"] == 3 and "runs containers of 2 configs" in plan["services"][0]["refused"]
    assert events_of(refused)[-1]["outcome"] == "dry run: refused"
    assert snapshot(project) == before
    missing = project.reroll("--dry-run", "nosuch")
    assert missing.returncode == 3 and "no such service: 'nosuch'" in missing.stderr

    project.reroll("--scale", "web=1", "web")  # one config again
    deploy = start_reroll(project, "--healthcheck-timeout", "30", "web", extra_env={"TAG": "v2", "BROKEN": "1"})
    try:
        read_until(deploy, "to be healthy")
        holder = child_pid(deploy.pid)
        locked = project.reroll("--dry-run", "web")
    finally:
        os.killpg(deploy.pid, signal.SIGINT)
        finish(deploy)
    assert locked.returncode == 4
    assert f"docker-reroll-lock.{project.name}.web is held by " in locked.stderr
    assert f"(pid {holder})" in locked.stderr, locked.stderr
    assert "summary: dry run: locked; exit 4" in locked.stderr


# -------------------------------------------------------------------------------------- settings as labels

LABELLED = SERVICE_TEMPLATE.replace("    stop_grace_period: 5s\n", """    stop_grace_period: 5s
    labels:
      docker-reroll.pre-stop-exec: "touch /.dead"
      docker-reroll.pre-stop-wait-until-unhealthy: "true"
      docker-reroll.drain-time: "${{DRAIN_LABEL:-1.5}}"
      docker-reroll.healthcheck-timeout: "20"
""")


def test_settings_from_labels_apply_and_the_command_line_wins(project):
    project.write(LABELLED.format(image=APP_IMAGE, healthcheck=HEALTHCHECK))
    old = project.up(replicas=1)

    run = project.reroll("--drain-time", "0.5", "web", extra_env={"TAG": "v2"})

    assert run.returncode == 0, run.stderr
    [container] = old
    assert f"running pre-stop command for {container.name}: docker exec {container.id[:12]} touch /.dead" \
        in run.stderr
    assert "--pre-stop-exec touch /.dead (label docker-reroll.pre-stop-exec)" in run.stderr
    assert "--pre-stop-wait-until-unhealthy true (label docker-reroll.pre-stop-wait-until-unhealthy)" in run.stderr
    assert "--healthcheck-timeout 20s (label docker-reroll.healthcheck-timeout)" in run.stderr
    assert "--drain-time 0.5s (command line)" in run.stderr
    assert "draining" in run.stderr and "until Docker reports them unhealthy" in run.stderr

    dry = project.reroll("--dry-run", "web", extra_env={"TAG": "v3"})
    assert "--drain-time 1.5s (label docker-reroll.drain-time)" in dry.stderr

    before = snapshot(project)
    bad = project.reroll("web", extra_env={"TAG": "v3", "DRAIN_LABEL": "soon"})
    assert bad.returncode == 2
    assert "invalid value 'soon' for label docker-reroll.drain-time of service 'web'" in bad.stderr
    assert snapshot(project) == before


# ----------------------------------------------------------------------------------------------- completion


def complete(project, *words, cwd=None):
    return subprocess.run(["docker", "__complete", "reroll", *words], capture_output=True, text=True,
                          env=project.env, cwd=cwd or project.directory, timeout=30)


def test_completion_through_docker_gives_options_services_and_values(project, tmp_path):
    project.write(SERVICE_TEMPLATE.format(image=APP_IMAGE, healthcheck="") + "  api:\n    image: x\n"
                  "  tools:\n    image: x\n    profiles: [tools]\n")
    other = tmp_path / "other.yaml"
    other.write_text("services:\n  billing:\n    image: x\n")

    services = complete(project, "")
    options = complete(project, "--pr")
    modes = complete(project, "--progress", "")
    with_file = complete(project, "-f", str(other), "")
    with_profile = complete(project, "--profile", "tools", "t")
    already = complete(project, "web", "")

    assert services.stdout.splitlines() == ["api", "web", ":4"]
    lines = options.stdout.splitlines()
    assert "--progress\tSet type of progress output (auto, tty, plain, json, quiet)" in lines
    assert "--pre-stop-exec\tCommand to run inside each old container (docker exec) before stopping it, e.g. " \
           "'touch /.dead'" in lines
    assert lines[-1] == ":4" and all(line.startswith("--pr") for line in lines[:-1])
    assert [line.split("\t")[0] for line in modes.stdout.splitlines()] == ["auto", "tty", "plain", "json", "quiet",
                                                                           ":4"]
    assert with_file.stdout.splitlines() == ["billing", ":4"]
    assert with_profile.stdout.splitlines() == ["tools", ":4"]
    assert already.stdout.splitlines() == ["api", ":4"]


def test_completion_in_a_real_bash_with_dockers_own_script(project):
    script = """
source /usr/share/bash-completion/bash_completion
source <(docker completion bash)
COMP_LINE="docker reroll $1"; COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"; [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
__start_docker docker "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\\n' "${COMPREPLY[@]}"
"""

    def bash(line):
        return subprocess.run(["bash", "-c", script, "bash", line], capture_output=True, text=True,
                              env=project.env, cwd=project.directory, timeout=30).stdout.split()

    assert bash("") == ["web"]
    assert bash("--progress j") == ["json"]
    assert bash("--dry") == ["--dry-run"]
