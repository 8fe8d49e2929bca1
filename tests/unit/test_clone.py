"""Old containers made again from `docker inspect` (for a roll-back across batches), from recorded engine JSON."""

import copy
import json
import os

from docker_reroll.clone import clone, clone_name, connect_args

DATA = os.path.join(os.path.dirname(__file__), "data")


def inspected():
    with open(os.path.join(DATA, "inspect_healthy.json"), encoding="utf-8") as handle:
        return json.load(handle)[0]


def pairs(args, flag):
    return [args[i + 1] for i, word in enumerate(args) if word == flag]


def test_a_compose_container_is_made_again_with_its_image_command_labels_health_check_and_network():
    item = inspected()
    made = clone(item, 7)
    args = made.args
    assert made.name == "p1-web-7" and args[:2] == ["--name", "p1-web-7"]
    assert made.unsupported == [], "engine defaults (masked paths, console size...) are not settings to carry"
    image = args.index(item["Image"])
    assert args[image - 2:image] == ["--entrypoint", ""]
    assert args[image + 1:] == item["Config"]["Cmd"]
    labels = pairs(args, "--label")
    assert "com.docker.compose.container-number=7" in labels
    assert "com.docker.compose.service=web" in labels and any(label.startswith("com.docker.compose.config-hash=")
                                                               for label in labels)
    assert pairs(args, "--env") == item["Config"]["Env"]
    assert pairs(args, "--health-cmd") == ["sh -c '! test -e /.dead'"]
    assert pairs(args, "--health-interval") == ["1s"] and pairs(args, "--health-retries") == ["1"]
    assert pairs(args, "--network") == ["p1_default"]
    assert pairs(args, "--network-alias") == ["p1-web-7", "web"], "its own name, not the old one's; no old id"
    assert "--hostname" not in args, "the old one's id as host name is the engine's default, not a setting"
    assert pairs(args, "--log-driver") == ["json-file"] and "--shm-size" not in args


def test_settings_compose_sets_are_carried_and_the_rest_is_named():
    item = copy.deepcopy(inspected())
    item["Config"].update(Entrypoint=["/entry", "--flag"], StopSignal="SIGQUIT", StopTimeout=20, User="app",
                          ExposedPorts={"8080/tcp": {}})
    item["HostConfig"].update(
        RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 3},
        Mounts=[{"Type": "volume", "Source": "data", "Target": "/data", "ReadOnly": True},
                {"Type": "bind", "Source": "/srv/a,b", "Target": "/a"}],
        PortBindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "30000-30010"}]},
        CapAdd=["NET_ADMIN"], Init=True, NanoCpus=500000000, Memory=268435456, Links=["x:y"])
    item["NetworkSettings"]["Networks"]["p1_back"] = {"Aliases": ["web", item["Id"][:12]],
                                                       "IPAMConfig": {"IPv4Address": "10.0.0.5"}}
    made = clone(item, 3)
    args = made.args
    image = args.index(item["Image"])
    assert args[image - 2:image] == ["--entrypoint", "/entry"] and args[image + 1] == "--flag"
    assert pairs(args, "--restart") == ["on-failure:3"] and pairs(args, "--stop-signal") == ["SIGQUIT"]
    assert pairs(args, "--mount") == ["type=volume,source=data,target=/data,readonly",
                                      'type=bind,"source=/srv/a,b",target=/a']
    assert pairs(args, "--publish") == ["127.0.0.1:30000-30010:80/tcp"]
    assert pairs(args, "--cpus") == ["0.5"] and pairs(args, "--memory") == ["268435456"] and "--init" in args
    assert made.unsupported == ["Links"]
    [back] = made.more_networks
    assert (back.name, back.aliases, back.ipv4) == ("p1_back", ["web"], "10.0.0.5")
    assert list(connect_args(back, "abc")) == ["network", "connect", "--alias", "web", "--ip", "10.0.0.5",
                                                "p1_back", "abc"]


def test_compose_names_v2_and_v1():
    assert clone_name("p1-web-3", 7) == "p1-web-7" and clone_name("p1_web_3", 7) == "p1_web_7"


def test_the_images_own_health_check_is_inherited_and_an_exec_form_one_needs_a_shell():
    item = inspected()
    own = item["Config"]["Healthcheck"]
    inherited = clone(item, 7, image_healthcheck=dict(own), has_shell=False)
    assert "--health-cmd" not in inherited.args and inherited.unsupported == [], "the image's, exactly"
    distroless = clone(item, 7, image_healthcheck=None, has_shell=False)
    assert distroless.unsupported == ["an exec-form (CMD) health check without /bin/sh"]
    shell_form = copy.deepcopy(item)
    shell_form["Config"]["Healthcheck"]["Test"] = ["CMD-SHELL", "test -e /ok"]
    assert clone(shell_form, 7, None, has_shell=False).unsupported == [], "CMD-SHELL is what --health-cmd makes"
