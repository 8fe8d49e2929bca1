"""A container of the old config, made again from what the engine knows of an old one (`docker inspect`).

Compose can only make containers of the config its files describe now, so a rolling update in batches that must go
back (failure_action: rollback) after some old containers are gone has to make them again itself: with `docker
container create`, from an old container's Config, HostConfig and networks. The same image (by id), command,
environment, labels (compose's too: the clone counts as one of the service's containers on the old config), health
check, mounts, networks and aliases, and the settings compose sets. What this mapping does not carry over is listed
in `Clone.unsupported`; a plan that would need such a clone says so before anything changes.

A health check the image itself defines is inherited, exactly. One the compose file gives in exec form (`CMD`) can
only be made again as the same command through the container's `/bin/sh` (`--health-cmd` takes a shell command
only): without a shell (a distroless image) that clone could never turn healthy, so it is not faithful.
"""

import re
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

LABEL_NUMBER = "com.docker.compose.container-number"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_LOG_DRIVER = "json-file"

# HostConfig settings this mapping leaves out; a clone of a container that sets one is not faithful.
NOT_CARRIED = ("Links", "VolumesFrom", "DeviceRequests", "DeviceCgroupRules", "BlkioWeight", "BlkioWeightDevice",
               "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
               "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetMems", "KernelMemory",
               "MemorySwappiness", "OomKillDisable", "CgroupParent", "UsernsMode", "UTSMode", "Cgroup",
               "VolumeDriver", "StorageOpt", "Isolation")
NEUTRAL: Tuple[object, ...] = (None, "", 0, False, [], {}, "default", -1)


@dataclass(frozen=True)
class Network:
    name: str
    aliases: List[str]
    ipv4: str = ""


@dataclass(frozen=True)
class Clone:
    """`docker container create` arguments, and the networks to connect before it starts."""

    name: str
    args: List[str]
    more_networks: List[Network] = field(default_factory=list)
    unsupported: List[str] = field(default_factory=list)


def clone(item: Mapping[str, object], number: int, image_healthcheck: Optional[Mapping] = None,
          has_shell: bool = True) -> Clone:
    """How to make a container like `item` (one element of `docker inspect`), numbered `number` by compose;
    `image_healthcheck` is its image's own (`Config.Healthcheck`), `has_shell` whether it has a /bin/sh."""
    name = clone_name(str(item.get("Name", "")).lstrip("/"), number)
    config: Mapping = item.get("Config") or {}  # type: ignore[assignment]
    host: Mapping = item.get("HostConfig") or {}  # type: ignore[assignment]
    unsupported = [key for key in NOT_CARRIED if host.get(key) not in NEUTRAL]
    args: List[str] = ["--name", name]
    labels = dict(config.get("Labels") or {})
    labels[LABEL_NUMBER] = str(number)
    labels.pop("com.docker.compose.replace", None)
    for key, value in sorted(labels.items()):
        args += ["--label", f"{key}={value}"]
    for variable in config.get("Env") or []:
        args += ["--env", variable]
    args += _flag("--user", config.get("User")) + _flag("--workdir", config.get("WorkingDir"))
    args += _flag("--domainname", config.get("Domainname"))
    if config.get("Hostname") and not str(item.get("Id", "")).startswith(str(config["Hostname"])):
        args += ["--hostname", str(config["Hostname"])]  # set on purpose; the default is the container's id
    args += _flag("--stop-signal", config.get("StopSignal"))
    if config.get("StopTimeout") is not None:
        args += ["--stop-timeout", str(config["StopTimeout"])]
    args += ["--tty"] if config.get("Tty") else []
    args += ["--interactive"] if config.get("OpenStdin") else []
    for port in sorted(config.get("ExposedPorts") or {}):
        args += ["--expose", port]
    check = config.get("Healthcheck")
    if check and check != image_healthcheck:  # else the image's own is inherited as it is
        if (check.get("Test") or [""])[0] == "CMD" and not has_shell:
            unsupported.append("an exec-form (CMD) health check without /bin/sh")
        args += _healthcheck(check)
    args += _host_settings(host)
    first, more = _networks(item, host, name)
    args += first
    entrypoint = list(config.get("Entrypoint") or [])
    args += ["--entrypoint", entrypoint[0] if entrypoint else ""]
    args += [str(item.get("Image"))] + entrypoint[1:] + list(config.get("Cmd") or [])
    return Clone(name, args, more, unsupported)


def _flag(name: str, value: object) -> List[str]:
    return [name, str(value)] if value not in NEUTRAL else []


def _duration(nanoseconds: object) -> str:
    return f"{int(nanoseconds) / 1e9:g}s"  # type: ignore[call-overload]


def _healthcheck(check: Optional[Mapping]) -> List[str]:
    if not check or not check.get("Test"):
        return []
    test = list(check["Test"])
    if test[0] == "NONE":
        return ["--no-healthcheck"]
    command = test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])
    args = ["--health-cmd", command]
    for key, flag in (("Interval", "--health-interval"), ("Timeout", "--health-timeout"),
                      ("StartPeriod", "--health-start-period"), ("StartInterval", "--health-start-interval")):
        if check.get(key):
            args += [flag, _duration(check[key])]
    if check.get("Retries"):
        args += ["--health-retries", str(check["Retries"])]
    return args


def _host_settings(host: Mapping) -> List[str]:
    args: List[str] = []
    for bind in host.get("Binds") or []:
        args += ["--volume", bind]
    for mount in host.get("Mounts") or []:
        args += ["--mount", _mount(mount)]
    for port, bindings in sorted((host.get("PortBindings") or {}).items()):
        for binding in bindings or []:
            address = f"{binding['HostIp']}:" if binding.get("HostIp") else ""
            args += ["--publish", f"{address}{binding.get('HostPort') or ''}:{port}"]
    policy = host.get("RestartPolicy") or {}
    if policy.get("Name") not in (None, "", "no"):
        retries = policy.get("MaximumRetryCount") or 0
        args += ["--restart", policy["Name"] + (f":{retries}" if retries else "")]
    for key, flag in (("CapAdd", "--cap-add"), ("CapDrop", "--cap-drop"), ("Dns", "--dns"),
                      ("DnsOptions", "--dns-option"), ("DnsSearch", "--dns-search"), ("ExtraHosts", "--add-host"),
                      ("GroupAdd", "--group-add"), ("SecurityOpt", "--security-opt")):
        for value in host.get(key) or []:
            args += [flag, value]
    for path, options in sorted((host.get("Tmpfs") or {}).items()):
        args += ["--tmpfs", f"{path}:{options}" if options else path]
    for key, value in sorted((host.get("Sysctls") or {}).items()):
        args += ["--sysctl", f"{key}={value}"]
    for limit in host.get("Ulimits") or []:
        args += ["--ulimit", f"{limit['Name']}={limit['Soft']}:{limit['Hard']}"]
    for device in host.get("Devices") or []:
        args += ["--device", f"{device['PathOnHost']}:{device['PathInContainer']}:{device['CgroupPermissions']}"]
    for key, flag in (("Privileged", "--privileged"), ("ReadonlyRootfs", "--read-only"), ("Init", "--init"),
                      ("PublishAllPorts", "--publish-all")):
        args += [flag] if host.get(key) else []
    if host.get("IpcMode") not in (None, "", "private", "shareable"):
        args += ["--ipc", host["IpcMode"]]
    args += _flag("--pid", host.get("PidMode")) + _flag("--cgroupns", _non_default(host.get("CgroupnsMode"),
                                                                                   "private"))
    if host.get("ShmSize") not in (None, 0, DEFAULT_SHM_SIZE):
        args += ["--shm-size", str(host["ShmSize"])]
    for key, flag in (("Memory", "--memory"), ("MemoryReservation", "--memory-reservation"),
                      ("MemorySwap", "--memory-swap"), ("CpuShares", "--cpu-shares"),
                      ("CpusetCpus", "--cpuset-cpus"), ("OomScoreAdj", "--oom-score-adj")):
        args += _flag(flag, host.get(key))
    if host.get("NanoCpus"):
        args += ["--cpus", f"{host['NanoCpus'] / 1e9:g}"]
    if host.get("PidsLimit") not in NEUTRAL:
        args += ["--pids-limit", str(host["PidsLimit"])]
    if host.get("Runtime") not in (None, "", "runc"):
        args += ["--runtime", host["Runtime"]]
    log = host.get("LogConfig") or {}
    if log.get("Type"):
        args += ["--log-driver", log["Type"]]
        for key, value in sorted((log.get("Config") or {}).items()):
            args += ["--log-opt", f"{key}={value}"]
    return args


def _non_default(value: object, default: str) -> object:
    return None if value in (None, "", default) else value


def _mount(mount: Mapping) -> str:
    fields = [f"type={mount.get('Type', 'volume')}"]
    if mount.get("Source"):
        fields.append(f"source={mount['Source']}")
    fields.append(f"target={mount['Target']}")
    if mount.get("ReadOnly"):
        fields.append("readonly")
    volume = mount.get("VolumeOptions") or {}
    if volume.get("NoCopy"):
        fields.append("volume-nocopy")
    propagation = (mount.get("BindOptions") or {}).get("Propagation")
    if propagation:
        fields.append(f"bind-propagation={propagation}")
    tmpfs = mount.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        fields.append(f"tmpfs-size={tmpfs['SizeBytes']}")
    if tmpfs.get("Mode"):
        fields.append(f"tmpfs-mode={tmpfs['Mode']:o}")
    return ",".join(_csv(field) for field in fields)


def _csv(field: str) -> str:
    """--mount is read as CSV: a field with a comma or a quote is quoted."""
    return '"' + field.replace('"', '""') + '"' if ("," in field or '"' in field) else field


def _networks(item: Mapping, host: Mapping, name: str) -> Tuple[List[str], List[Network]]:
    """The network the container is created on (--network, its aliases and address) and the others, which are
    connected before it starts. The old container's own name and id among the aliases become the clone's (the
    engine adds the id itself)."""
    old_id = str(item.get("Id", ""))[:12]
    old_name = str(item.get("Name", "")).lstrip("/")
    settings: Mapping[str, Mapping] = (item.get("NetworkSettings") or {}).get("Networks") or {}
    mode = str(host.get("NetworkMode") or "")
    if mode in ("host", "none") or mode.startswith(("container:", "service:")) or not settings:
        return (["--network", mode] if mode and mode != "default" else []), []
    networks: Dict[str, Network] = {}
    for network, endpoint in settings.items():
        aliases = [name if a == old_name else a for a in endpoint.get("Aliases") or [] if a != old_id]
        address = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or ""
        networks[network] = Network(network, aliases, address)
    first = networks.pop(mode) if mode in networks else networks.pop(sorted(networks)[0])
    args = ["--network", first.name]
    for alias in first.aliases:
        args += ["--network-alias", alias]
    args += ["--ip", first.ipv4] if first.ipv4 else []
    return args, [networks[name] for name in sorted(networks)]


COMPOSE_NAME = re.compile(r"^(?P<base>.+[-_])\d+$")


def clone_name(old_name: str, number: int) -> str:
    """Compose's name for container `number` of the service: `<project>-<service>-<n>` (v1: underscores)."""
    found = COMPOSE_NAME.match(old_name)
    return f"{found.group('base') if found else old_name + '-'}{number}"


def connect_args(network: Network, container: str) -> Sequence[str]:
    args = ["network", "connect"]
    for alias in network.aliases:
        args += ["--alias", alias]
    args += ["--ip", network.ipv4] if network.ipv4 else []
    return [*args, network.name, container]
