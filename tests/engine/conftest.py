import os
import shutil
import tempfile

import pytest

from dockerfixtures import build_test_images, install_plugin, new_project, require_engine


@pytest.fixture(scope="session")
def base_env():
    """The environment every `docker` call of the tests runs with: a private DOCKER_CONFIG holding the plugin
    built from this checkout (compose v2 is found in the system plugin directory)."""
    require_engine()
    build_test_images()
    config = tempfile.mkdtemp(prefix="reroll-docker-config-")
    install_plugin(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["DOCKER_CONFIG"] = config
    yield env
    shutil.rmtree(config, ignore_errors=True)


@pytest.fixture
def project(base_env):
    project = new_project(base_env).record_events()
    yield project
    project.cleanup()
    shutil.rmtree(project.directory, ignore_errors=True)


@pytest.fixture
def project_without_healthcheck(base_env):
    project = new_project(base_env, healthcheck=False)
    yield project
    project.cleanup()
    shutil.rmtree(project.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_images(base_env):
    """Build the example's app and proxy images once (from the local debian:bookworm-slim base)."""
    from dockerfixtures import EXAMPLE, docker, machine_lock

    with machine_lock("example-images"):
        docker("compose", "-p", "rerollbuild", "build", "-q", env=base_env, cwd=EXAMPLE, timeout=900)


@pytest.fixture
def made():
    """The projects a test makes (it appends them), removed afterwards."""
    projects = []
    yield projects
    for project in projects:
        project.cleanup()


@pytest.fixture
def make_stack(base_env, stack_images, made):
    """Stacks from examples/haproxy, with overrides from tests/stacks (`make_stack("tight")`), removed afterwards."""
    from dockerfixtures import new_stack

    def make(*overrides):
        made.append(new_stack(base_env, *overrides).record_events())
        return made[-1]

    return make


@pytest.fixture(scope="session")
def proxy_images(base_env):
    """examples/proxy-haproxy's proxy and app images, built once (`docker compose build`, as the example says)."""
    from dockerfixtures import ROOT, docker, machine_lock

    with machine_lock("proxy-example-images"):
        docker("compose", "-p", "rerollproxybuild", "build", "-q", env=base_env, timeout=900,
               cwd=os.path.join(ROOT, "examples", "proxy-haproxy"))


@pytest.fixture
def proxy_stack(base_env, proxy_images, made):
    """examples/proxy-haproxy as a project of its own, an override laid over it, removed afterwards."""
    from dockerfixtures import new_proxy_stack

    def make(override: str = ""):
        made.append(new_proxy_stack(base_env, "proxy-haproxy", override))
        return made[-1]

    return make


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.fixture
def release_stack(base_env, stack_images):
    from dockerfixtures import new_release_stack

    stack = new_release_stack(base_env).record_events()
    yield stack
    stack.cleanup()
