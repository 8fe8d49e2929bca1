"""Proxy mode's decisions, without a daemon: the routes read from the labels (and every way a label can be wrong),
and the plan a routed service gets: no health-check drain, the proxy's check instead of --wait's clock, the
settings that apply to it."""

import os

import pytest

from docker_reroll.errors import UsageError
from docker_reroll.model import Container, ProjectConfig, ServiceSpec
from docker_reroll.options import Options
from docker_reroll.planning import ServiceFacts, plan_service
from docker_reroll.proxy import PROXY_LABELS, Route, plan_routes, routes_of
from docker_reroll.rendering import service_facts, service_lines


def project(app_labels, proxy_labels=None, proxy_image="haproxy:2.6", published=(8080,), **others):
    services = {
        "app": ServiceSpec(name="app", labels=app_labels),
        "proxy": ServiceSpec(name="proxy", labels=proxy_labels or {}, image=proxy_image,
                             published_targets=list(published)),
    }
    services.update({name: ServiceSpec(name=name, labels=labels) for name, labels in others.items()})
    return ProjectConfig("p", services)


def test_the_one_documented_change_gives_a_route_on_the_port_the_proxy_publishes():
    routes = plan_routes(project({"docker-reroll.proxy": "proxy"}))
    assert routes == {"app": Route(service="app", proxy="proxy", kind="haproxy", port=8080, listen=8080,
                                   protocol="http", config_path="/usr/local/etc/haproxy/haproxy.cfg")}
    assert routes["app"].name == "reroll_app"


def test_every_label_of_a_route_is_read():
    labels = {"docker-reroll.proxy": "proxy", "docker-reroll.proxy-port": "3000",
              "docker-reroll.proxy-listen": "80", "docker-reroll.proxy-host": "Example.com, www.example.com",
              "docker-reroll.proxy-health": "/up", "docker-reroll.proxy-client-keepalive": "False"}
    [route] = plan_routes(project(labels, {"docker-reroll.proxy-kind": "nginx",
                                           "docker-reroll.proxy-config": "/conf/nginx.conf"},
                                  proxy_image="registry.local/edge:1", published=(80, 443))).values()
    assert (route.kind, route.port, route.listen, route.hosts, route.health_path, route.client_keepalive,
            route.config_path) == \
        ("nginx", 3000, 80, ("example.com", "www.example.com"), "/up", False, "/conf/nginx.conf")


@pytest.mark.parametrize("value, kept", [("true", True), ("yes", True), ("1", True), ("false", False),
                                         (" no ", False), ("0", False)])
def test_client_keepalive_is_a_yes_or_no(value, kept):
    [route] = plan_routes(project({"docker-reroll.proxy": "proxy",
                                   "docker-reroll.proxy-client-keepalive": value})).values()
    assert route.client_keepalive is kept


@pytest.mark.parametrize("app_labels, proxy_labels, image, published, words", [
    ({"docker-reroll.proxy": "edge"}, {}, "haproxy", (8080,), "label docker-reroll.proxy of service 'app'"),
    ({"docker-reroll.proxy": "app"}, {}, "haproxy", (8080,), "another service of the project"),
    ({"docker-reroll.proxy": "proxy"}, {}, "haproxy", (80, 443), "say which port its containers listen on"),
    ({"docker-reroll.proxy": "proxy"}, {}, "haproxy", (), "which publishes no port"),
    ({"docker-reroll.proxy": "proxy", "docker-reroll.proxy-port": "80000"}, {}, "haproxy", (80,), "1 to 65535"),
    ({"docker-reroll.proxy": "proxy", "docker-reroll.proxy-protocol": "udp"}, {}, "haproxy", (80,),
     "expected http or tcp"),
    ({"docker-reroll.proxy": "proxy", "docker-reroll.proxy-protocol": "tcp", "docker-reroll.proxy-health": "/h"},
     {}, "haproxy", (80,), "are for protocol http"),
    ({"docker-reroll.proxy": "proxy", "docker-reroll.proxy-health": "health"}, {}, "haproxy", (80,),
     "expected a path such as /health"),
    ({"docker-reroll.proxy": "proxy", "docker-reroll.proxy-client-keepalive": "off"}, {}, "haproxy", (80,),
     "label docker-reroll.proxy-client-keepalive of service 'app': expected true or false"),
    ({"docker-reroll.proxy": "proxy", "docker-reroll.proxy-protocol": "tcp",
      "docker-reroll.proxy-client-keepalive": "false"}, {}, "haproxy", (80,), "client keep-alive is for protocol http"),
    ({"docker-reroll.proxy": "proxy"}, {}, "my-edge:1", (80,), "set the label docker-reroll.proxy-kind"),
    ({"docker-reroll.proxy": "proxy"}, {"docker-reroll.proxy-kind": "traefik"}, "x", (80,),
     "expected haproxy or nginx"),
])
def test_a_wrong_label_is_a_usage_error_that_names_it_and_the_service(app_labels, proxy_labels, image, published,
                                                                      words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        plan_routes(project(app_labels, proxy_labels, proxy_image=image, published=published))


def test_a_proxy_routed_by_a_proxy_is_refused():
    config = project({"docker-reroll.proxy": "proxy"}, {"docker-reroll.proxy": "edge"}, edge={})
    with pytest.raises(UsageError, match="'proxy' is itself routed by a proxy"):
        plan_routes(config)


def test_services_sharing_a_port_need_host_names_and_tcp_needs_a_port_of_its_own():
    both = {"docker-reroll.proxy": "proxy"}
    with pytest.raises(UsageError, match="share port 8080 of proxy 'proxy': give each its own host names"):
        plan_routes(project(both, api=both))
    routes = plan_routes(project(both, api={**both, "docker-reroll.proxy-host": "api.example.com"}))
    assert [r.service for r in routes_of(routes, "proxy")] == ["api", "app"]
    tcp = {**both, "docker-reroll.proxy-protocol": "tcp", "docker-reroll.proxy-host": ""}
    with pytest.raises(UsageError, match="a TCP route needs a port of its own"):
        plan_routes(project(both, db=tcp))
    with pytest.raises(UsageError, match="give each its own host names"):
        plan_routes(project({**both, "docker-reroll.proxy-host": "a.example"},
                            api={**both, "docker-reroll.proxy-host": "A.example"}))


def running(number):
    return Container(id=f"{number:064x}", name=f"p-app-{number}", status="running", health=None,
                     labels={"com.docker.compose.container-number": str(number)})


def proxy_plan(options, health_path=None, healthcheck=False, client_keepalive=True):
    route = Route(service="app", proxy="proxy", kind="nginx", port=8080, listen=8080, protocol="http",
                  health_path=health_path, client_keepalive=client_keepalive)
    facts = ServiceFacts([running(1), running(2)], new_healthcheck=healthcheck)
    return plan_service("app", ServiceSpec(name="app"), options, facts, route)


def test_the_readme_documents_every_proxy_label():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert [label for label in PROXY_LABELS if f"\n| `{label}` | " not in readme] == []


def test_a_routed_service_has_no_health_check_drain_and_its_plan_says_the_proxys_check():
    plan = proxy_plan(Options(), health_path="/up")
    assert not plan.drain.draining and not plan.drain.pre_stop
    facts = service_facts(plan)
    assert [s["setting"] for s in facts["settings"]][:3] == ["--healthcheck-timeout", "--wait-after-healthy",
                                                         "--drain-timeout"]
    lines = "\n".join(service_lines(plan))
    assert "wait up to 60s for the proxy's check (GET /up answered 2xx) to pass on each" in lines
    assert "--wait 10s" not in lines and "--drain-time" not in lines.replace("--drain-timeout", "")
    assert "stopped once the proxy holds no connection to them, after 30s at most (default)" in lines
    assert "routes app (http on port 8080) to port 8080" in lines
    closing = "\n".join(service_lines(proxy_plan(Options(), client_keepalive=False)))
    assert "routes app (http on port 8080, client keep-alive off) to port 8080" in closing
    with_check = "\n".join(service_lines(proxy_plan(Options(), healthcheck=True)))
    assert "to be healthy, then 0s more, then the proxy's check (a connect to port 8080) on each" in with_check


def test_health_check_drain_settings_given_to_a_routed_service_are_said_not_to_apply():
    options = Options()
    options.set("pre_stop_exec", "touch /.dead", "label docker-reroll.pre-stop-exec")
    options.set("drain_time", 2.0, "command line")
    warnings = [m for level, m in proxy_plan(options).messages if level == "warn"]
    assert warnings == ["proxy mode: --pre-stop-exec, --drain-time do not apply: the proxy is switched directly "
                        "instead of draining through the containers' health checks"]
