"""Parsing of saved engine and compose JSON into the small dataclasses the deploy works with."""

import json
import os

import pytest

from docker_reroll.compose import legacy_compose, legacy_project_name
from docker_reroll.model import parse_compose_config, parse_event, parse_inspect

DATA = os.path.join(os.path.dirname(__file__), "data")


def read(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as handle:
        return handle.read()


def test_inspect_of_a_healthy_compose_container():
    [container] = parse_inspect(read("inspect_healthy.json"))
    assert len(container.id) == 64 and container.short_id == container.id[:12]
    assert container.name == "p1-web-2"
    assert container.running and container.status == "running"
    assert container.health == "healthy" and container.has_healthcheck
    assert container.number == 2 and not container.oneoff
    assert container.labels["com.docker.compose.service"] == "web"
    assert container.image_id.startswith("sha256:")


def test_inspect_without_health_and_exited():
    raw = json.loads(read("inspect_healthy.json"))
    del raw[0]["State"]["Health"]
    raw[0]["State"].update(Status="exited", Running=False, ExitCode=3)
    raw[0]["Config"]["Labels"]["com.docker.compose.oneoff"] = "True"
    [container] = parse_inspect(json.dumps(raw))
    assert container.health is None and not container.has_healthcheck
    assert container.status == "exited" and container.exit_code == 3 and container.oneoff


def test_inspect_keeps_the_last_health_probe_output():
    raw = json.loads(read("inspect_healthy.json"))
    raw[0]["State"]["Health"]["Status"] = "unhealthy"
    raw[0]["State"]["Health"]["Log"][-1]["Output"] = "curl: (7) connection refused\n"
    [container] = parse_inspect(json.dumps(raw))
    assert container.health == "unhealthy" and container.health_output == "curl: (7) connection refused"


def test_events_from_a_real_stream():
    events = [parse_event(line, received=1.0) for line in read("events.jsonl").splitlines()]
    assert [(e.action, e.health, e.exit_code) for e in events] == [
        ("start", None, None), ("health_status", "healthy", None), ("die", None, 137)]
    assert all(len(e.id) == 64 for e in events)
    assert events[1].engine_time == pytest.approx(1795674338.590444025)


def test_non_container_or_broken_event_lines_are_ignored():
    assert parse_event('{"Type": "network", "Action": "connect"}') is None
    assert parse_event("not json") is None


def test_compose_config_gives_name_services_and_deploy_relevant_facts():
    config = parse_compose_config(read("compose_config.json"))
    assert config.name == "p1" and list(config.services) == ["web"]
    assert config.spec("web").container_name is None and config.spec("nope") is None


def test_fixed_host_ports_are_found_and_ranges_or_ephemeral_ports_are_fine():
    config = {"name": "x", "services": {"web": {
        "container_name": "web1", "network_mode": "host",
        "ports": [{"target": 80, "published": "8080"}, {"target": 81, "published": "9000-9010"},
                  {"target": 82}, {"target": 83, "published": ""}],
    }}}
    spec = parse_compose_config(json.dumps(config)).spec("web")
    assert spec.fixed_host_ports == ["8080:80"]
    assert spec.container_name == "web1" and spec.network_mode == "host"


def test_what_compose_does_at_start_dependencies_replicas_and_update_config():
    """As compose 2.40.3 prints them; `pre_start` is from newer compose (2.40.3 refuses it), fed as it would be."""
    config = {"name": "x", "configs": {"inline": {"content": "a"}, "onfile": {"file": "/a"}},
              "secrets": {"token": {"environment": "TOKEN"}},
              "services": {
                  "web": {"configs": [{"source": "inline", "target": "/a"}, {"source": "onfile"}],
                          "secrets": ["token"], "pre_start": [{"command": ["true"]}],
                          "depends_on": {"db": {"condition": "service_started"}, "api": {}},
                          "labels": {"docker-reroll.strategy": "recreate"},
                          "deploy": {"replicas": 3, "update_config": {"parallelism": 2, "delay": "2s"}}},
                  "api": {"scale": 2, "post_start": [{"command": ["true"]}]},
                  "db": {},
              }}
    project = parse_compose_config(json.dumps(config))
    web, api, db = project.spec("web"), project.spec("api"), project.spec("db")
    assert web.done_at_start == ["pre_start hooks", "inline config 'inline'", "inline secret 'token'"]
    assert api.done_at_start == ["post_start hooks"] and db.done_at_start == []
    assert web.depends_on == ["api", "db"] and web.labels == {"docker-reroll.strategy": "recreate"}
    assert (web.replicas, web.replicas_key) == (3, "deploy.replicas")
    assert (api.replicas, api.replicas_key) == (2, "scale")
    assert db.replicas is None and web.update_config == {"parallelism": 2, "delay": "2s"}


def test_legacy_project_name_follows_compose_v1(tmp_path):
    project = tmp_path / "My App.v2"
    project.mkdir()
    assert legacy_project_name(None, [str(project / "docker-compose.yml")], None, {}) == "myappv2"
    assert legacy_project_name("Given", [], str(project), {}) == "given"
    assert legacy_project_name(None, [], str(project), {"COMPOSE_PROJECT_NAME": "fromenv"}) == "fromenv"
    (project / ".env").write_text("A=1\nCOMPOSE_PROJECT_NAME='dotenv'\n")
    assert legacy_project_name(None, [], str(project), {}) == "dotenv"


def test_legacy_compose_takes_docker_globals_as_its_own_flags():
    compose = legacy_compose(["--file", "c.yml"], [("--context", "prod"), ("--config", "/cfg"), ("--debug", True),
                                                   ("--tls", True), ("--tlsverify", False)], {"PATH": "/bin"})
    assert compose.argv == ["docker-compose", "--context", "prod", "--verbose", "--tls", "--file", "c.yml"]
    assert compose.env["DOCKER_CONFIG"] == "/cfg" and compose.legacy


def test_docker_is_called_through_the_cli_that_ran_the_plugin():
    from docker_reroll.engine import docker_binary

    assert docker_binary({"DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND": "/opt/docker/bin/docker"}) == \
        "/opt/docker/bin/docker"
    assert docker_binary({}) == "docker"


def user_env(flags, environ=None, tmp_path=None):
    from docker_reroll.engine import user_command_environment

    made = []

    def cert_dir(files):
        made.append(files)
        return "/private/tls"

    env = user_command_environment(environ if environ is not None else {"PATH": "/bin"}, flags, cert_dir)
    return env, made


def test_a_context_flag_wins_over_an_exported_docker_host_in_the_pre_stop_command():
    """Docker resolves DOCKER_HOST before DOCKER_CONTEXT: left in place, it would send `docker exec` elsewhere."""
    env, _ = user_env([("--context", "prod"), ("--config", "/cfg")],
                      {"PATH": "/bin", "DOCKER_HOST": "tcp://other:2375"})
    assert env["DOCKER_CONTEXT"] == "prod" and env["DOCKER_CONFIG"] == "/cfg" and env["PATH"] == "/bin"
    assert "DOCKER_HOST" not in env
    env, _ = user_env([("--host", "tcp://h:1")], {"DOCKER_CONTEXT": "prod"})
    assert env["DOCKER_HOST"] == "tcp://h:1" and "DOCKER_CONTEXT" not in env
    env, _ = user_env([], {"DOCKER_HOST": "tcp://mine:1", "DOCKER_TLS_VERIFY": "1"})
    assert env == {"DOCKER_HOST": "tcp://mine:1", "DOCKER_TLS_VERIFY": "1"}, "no flags: the user's environment"


def test_tls_flags_become_the_variables_docker_reads():
    env, made = user_env([("--tls", True)])
    assert env["DOCKER_TLS"] == "1" and "DOCKER_TLS_VERIFY" not in env and made == []
    env, _ = user_env([("--tlsverify", True)])
    assert env["DOCKER_TLS"] == "1" and env["DOCKER_TLS_VERIFY"] == "1"
    # --tlsverify=false still turns TLS on (docker's rule), without verifying, whatever the environment said
    env, _ = user_env([("--tlsverify", False)], {"DOCKER_TLS_VERIFY": "1"})
    assert env["DOCKER_TLS"] == "1" and "DOCKER_TLS_VERIFY" not in env
    env, _ = user_env([("--tls", False)], {"DOCKER_TLS": "1"})
    assert "DOCKER_TLS" not in env


def test_tls_files_named_by_flag_are_found_under_the_names_docker_expects():
    """--tlscacert /x/my-ca.crt: DOCKER_CERT_PATH=/x would make docker look for /x/ca.pem."""
    env, made = user_env([("--tlsverify", True), ("--tlscacert", "/x/my-ca.crt"), ("--tlscert", "/y/me.crt")],
                         {"DOCKER_CERT_PATH": "/certs"})
    assert env["DOCKER_CERT_PATH"] == "/private/tls"
    assert made == [{"ca.pem": "/x/my-ca.crt", "cert.pem": "/y/me.crt", "key.pem": "/certs/key.pem"}]


def test_the_private_cert_directory_links_the_files_and_goes_away(tmp_path):
    from docker_reroll.engine import Docker

    ca = tmp_path / "my-ca.crt"
    ca.write_text("CA")
    docker = Docker("docker", [("--tlsverify", True), ("--tlscacert", str(ca))], [],
                    {"DOCKER_CERT_PATH": str(tmp_path / "none")})
    env = docker.environment_for_user_commands()
    directory = env["DOCKER_CERT_PATH"]
    import os

    assert open(os.path.join(directory, "ca.pem")).read() == "CA"
    assert not os.path.exists(os.path.join(directory, "cert.pem")), "a default that does not exist is not linked"
    docker.close()
    assert not os.path.exists(directory)
