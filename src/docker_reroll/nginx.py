"""Proxy mode with nginx, driven by graceful reloads of pinned upstreams."""

from docker_reroll.proxy_driver import ProxyDriver


class NginxDriver(ProxyDriver):
    kind = "nginx"
