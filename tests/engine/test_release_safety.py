"""What a label or the engine says holds however a release is asked for: a service marked
`docker-reroll.strategy=recreate` never runs twice, and `--all` sees an image that moved under the same tag."""

from dockerfixtures import APP_IMAGE, IDLE, docker

LOOP = f'["sh", "-c", "{IDLE}"]'
DATABASE = f"""
services:
  db:
    image: {APP_IMAGE}:${{TAG:-v1}}
    command: {LOOP}
    volumes: ["data:/data"]
    labels:
      docker-reroll.strategy: recreate
  api:
    image: {APP_IMAGE}:${{TAG:-v1}}
    command: {LOOP}
volumes:
  data: {{}}
"""


def version(project, service):
    [container] = project.containers(service, all_states=False)
    return docker("exec", container.id, "cat", "/version").stdout.strip()


def test_a_named_service_marked_recreate_is_recreated_by_compose_and_never_runs_twice(project):
    project.write(DATABASE)
    project.compose("up", "-d")
    [old_db] = project.containers("db")
    [old_api] = project.containers("api")

    dry = project.reroll("--dry-run", "db", extra_env={"TAG": "v2"})
    run = project.reroll_json("api", "db", "--wait", "1", extra_env={"TAG": "v2"})

    assert dry.returncode == 0 and "db: recreate (marked docker-reroll.strategy=recreate" in dry.stderr, dry.stderr
    assert run.returncode == 0 and run.outcome == "deployed", run
    assert [(s["service"], s["result"]) for s in run.summary["services"]] == [("api", "deployed"), ("db", "recreated")]
    assert "recreate" in run.phases("db") and "scale up" not in run.phases("db")
    [new_db] = project.containers("db")
    assert new_db.id != old_db.id and version(project, "db") == "v2"
    assert project.containers("api")[0].id != old_api.id and version(project, "api") == "v2"
    events = [(action, cid) for _, cid, action in project.recorder.stop() if cid in (old_db.id, new_db.id)]
    old_died = events.index(("die", old_db.id))
    new_started = events.index(("start", new_db.id))
    assert old_died < new_started, f"two database containers ran at once: {events}"


def test_all_rolls_a_service_whose_tag_was_moved_to_another_image(project):
    """`docker compose pull` or `build` moves app:latest; the config hash stays the same."""
    moving = f"reroll-test-moving-{project.name}:latest"
    docker("tag", f"{APP_IMAGE}:v1", moving)
    try:
        project.write(f"""
            services:
              app:
                image: {moving}
                command: {LOOP}
            """)
        project.compose("up", "-d")
        [old] = project.containers("app")
        docker("tag", f"{APP_IMAGE}:v2", moving)

        run = project.reroll_json("--all", "--wait", "1")

        assert run.returncode == 0 and run.result("app") == "deployed", run
        assert run.said(f"app  roll      its image changed: {moving} is now", "info")
        [new] = project.containers("app")
        assert new.id != old.id and version(project, "app") == "v2"
        again = project.reroll_json("--all", "--wait", "1")
        assert again.returncode == 0 and again.result("app") == "skipped (up to date)", again
        assert again.said("app  skip      its 1 container(s) run the current config and image", "info")
        assert again.phases("app") == []
    finally:
        docker("rmi", moving, check=False)
