"""The Docker CLI plugin protocol end to end: discovery, metadata, help, errors, global options, compose v1."""

import json
import os
import stat
import subprocess
import sys
import uuid

import pytest

from dockerfixtures import APP_IMAGE, docker, docker_without_compose


def test_the_docker_cli_lists_the_plugin_from_its_metadata(base_env):
    listing = docker("--help", env=base_env).stdout
    assert "reroll*" in listing and "Zero-downtime rolling deploy" in listing
    plugins = json.loads(docker("info", "--format", "{{json .ClientInfo.Plugins}}", env=base_env).stdout)
    [ours] = [p for p in plugins if p["Name"] == "reroll"]
    assert ours["SchemaVersion"] == "0.1.0" and ours["Vendor"] == "docker-reroll"
    assert "Err" not in ours


def test_metadata_path_is_json_only(base_env):
    path = os.path.join(base_env["DOCKER_CONFIG"], "cli-plugins", "docker-reroll")
    assert os.stat(path).st_mode & stat.S_IXUSR
    result = subprocess.run([path, "docker-cli-plugin-metadata"], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["Version"] and result.stderr == ""


def test_help_version_and_usage_errors_through_docker(base_env):
    assert "Usage: docker reroll [OPTIONS] <SERVICE>" in docker("reroll", "--help", env=base_env).stdout
    assert docker("reroll", "-V", env=base_env).stdout.startswith("docker-reroll ")
    bad = docker("reroll", "--pre", "x", "web", env=base_env, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unexpected argument '--pre' found")
    missing = docker("reroll", env=base_env, check=False)
    assert missing.returncode == 2 and "<SERVICE>" in missing.stderr


def test_global_context_is_forwarded_to_every_call(project):
    """A context that points nowhere must make the deploy fail (so it was used), a good one must deploy."""
    [old] = project.up()
    bad, good = f"rr-bad-{uuid.uuid4().hex[:6]}", f"rr-good-{uuid.uuid4().hex[:6]}"
    docker("context", "create", bad, "--docker", "host=unix:///tmp/reroll-no-such.sock", env=project.env)
    docker("context", "create", good, "--docker", "host=unix:///var/run/docker.sock", env=project.env)

    failed = project.reroll("web", docker_globals=("--context", bad), extra_env={"TAG": "v2"})
    assert failed.returncode == 3 and "reroll-no-such.sock" in failed.stderr
    assert [c.id for c in project.containers()] == [old.id]

    # DOCKER_HOST pointing nowhere would break any call that did not get --context.
    deployed = project.reroll("web", docker_globals=("--context", good),
                              extra_env={"TAG": "v2", "DOCKER_HOST": "unix:///tmp/reroll-no-such.sock"})
    assert deployed.returncode == 0, deployed.stderr
    [new] = project.containers()
    assert new.id != old.id and project.image_of(new) == f"{APP_IMAGE}:v2"

    via_host = project.reroll("web", docker_globals=("-H", "unix:///var/run/docker.sock"),
                              extra_env={"TAG": "v3"})
    assert via_host.returncode == 0, via_host.stderr
    assert project.image_of(project.containers()[0]) == f"{APP_IMAGE}:v3"


def test_legacy_docker_compose_v1_is_used_when_compose_v2_is_missing(project, tmp_path):
    """On a host without the v2 plugin (simulated by a `docker` that does not know `compose`), the legacy
    docker-compose 1.x deploys the service, with its own container names."""
    fake_bin = docker_without_compose(str(tmp_path / "bin"))
    env = {**project.env, "PATH": f"{fake_bin}:{project.env['PATH']}"}
    subprocess.run(["docker-compose", "up", "-d"], cwd=project.directory, env=env, check=True,
                   capture_output=True)
    [old] = project.containers()
    assert old.name == f"{project.name}_web_1"

    result = project.reroll("web", standalone=True, extra_env={"PATH": env["PATH"], "TAG": "v2"})
    assert result.returncode == 0, result.stderr
    [new] = project.containers()
    assert new.id != old.id and new.name == f"{project.name}_web_2"
    assert project.image_of(new) == f"{APP_IMAGE}:v2" and new.health == "healthy"

    # Several replicas: compose v1 creates them (`up --no-start`), docker-reroll starts them.
    subprocess.run(["docker-compose", "up", "-d", "--no-recreate", "--scale", "web=2"], cwd=project.directory,
                   env={**env, "TAG": "v2"}, check=True, capture_output=True)
    two = project.reroll_json("web", standalone=True, extra_env={"PATH": env["PATH"], "TAG": "v3"})
    assert two.returncode == 0 and two.outcome == "deployed", two
    assert two.said("starting 2 new containers at once", "info")
    assert len(two.containers(role="new", state="healthy")) == 2
    final = project.containers()
    assert len(final) == 2 and all(project.image_of(c) == f"{APP_IMAGE}:v3" and c.running for c in final)


@pytest.mark.parametrize("tool", ["pipx", "uv"])
def test_pipx_and_uv_tool_installs_are_plugins_whose_version_agrees(base_env, tmp_path, tool):
    """`pipx install .` / `uv tool install .` and a symlink into cli-plugins, as the README says; docker then
    lists the plugin with the package's version and runs it."""
    from docker_reroll import __version__
    from dockerfixtures import ROOT

    bin_dir = tmp_path / "bin"
    env = {**base_env, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(bin_dir),
           "UV_TOOL_DIR": str(tmp_path / "uv"), "UV_TOOL_BIN_DIR": str(bin_dir), "UV_CACHE_DIR": str(tmp_path / "c")}
    command = [sys.executable, "-m", "pipx", "install", ROOT] if tool == "pipx" else \
        [sys.executable, "-m", "uv", "tool", "install", ROOT]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=600)
    config = tmp_path / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    os.symlink(bin_dir / "docker-reroll", config / "cli-plugins" / "docker-reroll")
    env["DOCKER_CONFIG"] = str(config)

    version = subprocess.run(["docker", "reroll", "--version"], capture_output=True, text=True, env=env)
    listed = subprocess.run(["docker", "info", "--format", "{{json .ClientInfo.Plugins}}"], capture_output=True,
                            text=True, env=env)

    assert version.stdout == f"docker-reroll {__version__}\n", version.stderr
    [plugin] = [p for p in json.loads(listed.stdout) if p["Name"] == "reroll"]
    assert plugin["Version"] == __version__ and "Err" not in plugin
