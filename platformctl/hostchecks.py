"""Host checks: what playbooks/preflight.yml found on each host (one fact, preflight_probe),
judged against the role manifests and the inventory. Each problem says what to do."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from platformctl import manifests
from platformctl.inventory import LoadedInventory

SUPPORTED_OS = ("Debian 12", "Debian 13")
# The roles carry these releases' settings, but no test here runs them (the CI machine reaches
# no Ubuntu archive): a warning, not a stop.
UNTESTED_OS = ("Ubuntu 22", "Ubuntu 24")
MINIMUM_TARGET_PYTHON = (3, 8)
NVIDIA_PCI_VENDOR = "0x10de"
CONTAINER_TYPES = ("docker", "container", "podman", "lxc", "openvz", "systemd-nspawn")
DATA_PATH = "/var/lib"
# An HTTP answer that means the source is not there: the URL is wrong or the server is broken.
# 401 and 403 are not in it: preflight's HEAD carries no credentials, and a mirror behind a
# login (apt's auth.conf.d, which apt itself sends) answers it so while the install works.
MISSING_STATUSES = (404, 410)


@dataclass
class Problem:
    host: str
    check: str
    found: str
    fix: str
    fatal: bool = True


@dataclass
class Context:
    """What the judgement of one host needs beside its probe."""

    host_vars: Mapping[str, Any]
    manifests: list[manifests.Manifest]
    groups: Mapping[str, list[str]]


Finding = tuple[str, str, str, bool]  # check, what was found, what to do, fatal


def _free_gb(mounts: dict[str, Any], path: str) -> float | None:
    best = max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")), key=len, default=None)
    return None if best is None else int(mounts[best]) / 1024**3


def listeners(lines: list[str]) -> dict[int, list[tuple[str, str]]]:
    """Port -> (systemd unit, process name) of each listener, from the probe's
    "PORT UNIT PROCESS" lines (unit and process "-" when unknown)."""
    found: dict[int, list[tuple[str, str]]] = {}
    for line in lines:
        fields = line.split()
        if len(fields) == 3 and fields[0].isdigit():
            found.setdefault(int(fields[0]), []).append((fields[1], fields[2]))
    return found


def _system(probe: dict[str, Any], context: Context) -> Iterator[Finding]:
    if probe.get("os") in UNTESTED_OS:
        yield ("operating system", f"{probe.get('os')} ({probe.get('os_version')})",
               f"untested: the roles carry its settings, but the tests run {' and '.join(SUPPORTED_OS)} only", False)
    elif probe.get("os") not in SUPPORTED_OS:
        yield ("operating system", f"{probe.get('os')} ({probe.get('os_version')})",
               f"use one of {', '.join(SUPPORTED_OS)}", True)
    bundled = [f"Debian {release}" for release in context.host_vars.get("platform_bundle_releases") or []]
    if context.host_vars.get("platform_bundle_dir") and probe.get("os") not in bundled:
        yield ("offline bundle", f"{probe.get('os')}; the bundle carries packages for {', '.join(bundled)}",
               f"build the bundle for this host's release too (installer.py bundle --release "
               f"{str(probe.get('os')).rpartition(' ')[2]})", True)
    python = tuple(int(p) for p in str(probe.get("python", "0")).split(".")[:2] if p.isdigit())
    if python < MINIMUM_TARGET_PYTHON:
        yield ("python3", str(probe.get("python")), "install python3 3.8 or newer", True)
    if str(probe.get("uid")) != "0":
        yield ("privilege escalation", f"uid {probe.get('uid')}",
               "give ansible_user passwordless sudo and set ansible_become: true", True)


def _size(probe: dict[str, Any], context: Context) -> Iterator[Finding]:
    groups = list(probe.get("groups") or [])
    needed = manifests.minimums_of(context.manifests, groups, context.host_vars.get("preflight_minimums"))
    purpose = f"for groups {', '.join(groups) or 'all'}"
    cpus, memory = int(probe.get("cpus") or 0), int(probe.get("memory_mb") or 0)
    if cpus < needed.get("cpus", 0):
        yield ("CPU", f"{cpus} cores", f"at least {needed['cpus']} cores {purpose}", True)
    if memory < needed.get("memory_mb", 0):
        yield ("memory", f"{memory} MB", f"at least {needed['memory_mb']} MB {purpose}", True)
    free = _free_gb(probe.get("mounts") or {}, DATA_PATH)
    if free is not None and free < needed.get("disk_free_gb", 0):
        yield ("free disk", f"{free:.1f} GB free for {DATA_PATH}",
               f"at least {needed['disk_free_gb']} GB free {purpose}", True)


def _ports(probe: dict[str, Any], context: Context) -> Iterator[Finding]:
    """A port a role of this host will listen on must be free or held by that role's own unit
    (known by the process's cgroup, not by its name: wrappers and stand-ins run as python3)."""
    held = listeners(probe.get("listening") or [])
    for role, port in manifests.ports_of(context.manifests, probe.get("groups") or [], context.groups):
        number = port.number(context.host_vars)
        holders = held.get(number, [])
        if port.units and holders and not any(port.held_by_own_unit(unit) for unit, _ in holders):
            shown = ", ".join(sorted({name if unit == "-" else f"{name} ({unit})" for unit, name in holders}))
            yield ("port", f"{number}/{port.proto} held by {shown}",
                   f"free it for {port.comment} (role {role}): stop or move that service", True)


def _clock_and_gpu(probe: dict[str, Any], context: Context) -> Iterator[Finding]:
    in_container = str(probe.get("virtualization", "")).split("/")[0] in CONTAINER_TYPES
    if probe.get("clock_synchronised") != "yes" and not in_container:
        yield ("time", "clock not synchronised",
               "the common role installs chrony; if it stays unsynchronised, allow NTP (UDP 123) out", False)
    if "gpu" in (probe.get("groups") or []) and NVIDIA_PCI_VENDOR not in (probe.get("pci_vendors") or []):
        required = bool(context.host_vars.get("preflight_gpu_required", False))
        yield ("GPU", "no NVIDIA GPU on the PCI bus",
               "add the GPU or take the host out of group gpu" if required
               else "the GPU roles will skip this host; set preflight_gpu_required: true to stop instead",
               required)


def _platform_network(probe: dict[str, Any], context: Context) -> Iterator[Finding]:
    """The platform network's subnet must be no host's own: the docker role's bridge would take
    the host's traffic to that range (the installer's SSH session among it, which then hangs),
    and the firewall rules that let the app containers in would let those machines in too."""
    settings = {key: context.host_vars.get(key) or manifests.role_default("platform", key)
                for key in ("platform_network_subnet", "platform_network_gateway")}
    try:
        subnet = ipaddress.ip_network(str(settings["platform_network_subnet"]), strict=False)
    except ValueError:
        return
    for found in probe.get("addresses") or []:
        try:
            interface = ipaddress.ip_interface(f"{found.get('address')}/{found.get('prefix')}")
        except ValueError:
            continue
        if interface.network.overlaps(subnet) and str(interface.ip) != str(settings["platform_network_gateway"]):
            yield ("platform network", f"{interface} on this host overlaps platform_network_subnet {subnet}",
                   "set platform_network_subnet and platform_network_gateway (group_vars/all) to a range that no "
                   "host and no network they reach uses", True)


def _ssh_lockout(probe: dict[str, Any], context: Context) -> Iterator[Finding]:
    """The firewall role turns SSH password login off: a user who logs in with a password and
    has no authorized key would be locked out at the next login."""
    login = probe.get("ssh_login") or {}
    if not login or context.host_vars.get("firewall_sshd_password_authentication", False) is True:
        return
    if login.get("password") != "no" and int(login.get("keys") or 0) == 0:
        user = login.get("user")
        yield ("SSH login",
               f"{user} has no key in ~{user}/.ssh/authorized_keys, and the install turns password login off",
               f"add {user}'s public key first (ssh-copy-id {user}@<host>), or keep password login "
               "(firewall_sshd_password_authentication: true)", True)


def download_problem(status: int) -> str | None:
    """Why a source's HEAD answer means it cannot be downloaded from, or None."""
    if status < 0:
        return "does not answer"
    if status in MISSING_STATUSES or status >= 500:
        return f"answers HTTP {status}"
    return None


def _downloads(probe: dict[str, Any], context: Context) -> Iterator[Finding]:
    for source in sorted(probe.get("downloads") or [], key=lambda s: str(s.get("url"))):
        problem = download_problem(int(source.get("status", -1)))
        if problem is None:
            continue
        if source.get("local_source"):
            fix = (f"open the way to it, or set {source['local_source']} (role {source.get('role')}) to a local "
                   "source (docs/design.md, \"Downloads\")")
        else:
            fix = "open the way to it, or point the host's apt sources at a mirror it reaches"
        yield ("download source", f"{source.get('what')}: {source.get('url')} {problem}", fix, True)


HOST_CHECKS = (_system, _size, _ports, _clock_and_gpu, _platform_network, _ssh_lockout, _downloads)


def judge_host(host: str, probe: dict[str, Any], context: Context) -> list[Problem]:
    """Every problem of one host, each with what to do about it."""
    return [Problem(host, *finding) for check in HOST_CHECKS for finding in check(probe, context)]


def judge(state_facts: dict[str, dict[str, Any]], loaded: LoadedInventory) -> list[Problem]:
    loaded_manifests, groups = manifests.load_all(), loaded.groups()
    problems: list[Problem] = []
    for host, facts in sorted(state_facts.items()):
        probe = facts.get("preflight_probe")
        if isinstance(probe, dict):
            problems += judge_host(host, probe, Context(loaded.host_vars(host), loaded_manifests, groups))
    return problems
