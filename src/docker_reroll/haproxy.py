"""Proxy mode with HAProxy, driven through its runtime API (no reload during a deploy)."""

from docker_reroll.proxy_driver import ProxyDriver


class HAProxyDriver(ProxyDriver):
    kind = "haproxy"
