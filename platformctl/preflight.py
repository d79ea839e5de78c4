"""Checks that need no host: collections, the playbook's roles, and every inventory value
against the argument specs of the roles that will use it. Nothing here changes anything."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from platformctl import paths
from platformctl.errors import BadInput, PreflightFailed
from platformctl.inventory import Inventory, LoadedInventory, where_defined


@dataclass
class Play:
    hosts: str
    roles: list[str]


def site_plays(playbook: Path) -> list[Play]:
    """The plays of a playbook with the roles each applies (imported playbooks followed)."""
    plays: list[Play] = []
    for entry in yaml.safe_load(playbook.read_text(encoding="utf-8")) or []:
        if "import_playbook" in entry:
            plays += site_plays((playbook.parent / entry["import_playbook"]).resolve())
            continue
        roles = [r if isinstance(r, str) else r.get("role") or r.get("name") for r in entry.get("roles", [])]
        plays.append(Play(hosts=str(entry.get("hosts", "all")), roles=[r for r in roles if r]))
    return plays


def role_dependencies(role: str) -> list[str]:
    meta = paths.ROLES / role / "meta" / "main.yml"
    if not meta.is_file():
        return []
    deps = (yaml.safe_load(meta.read_text(encoding="utf-8")) or {}).get("dependencies") or []
    return [d if isinstance(d, str) else d.get("role") or d.get("name") for d in deps]


def role_options(role: str) -> dict[str, dict]:
    spec_file = paths.ROLES / role / "meta" / "argument_specs.yml"
    if not spec_file.is_file():
        return {}
    specs = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
    return ((specs.get("argument_specs") or {}).get("main") or {}).get("options") or {}


def all_roles() -> list[str]:
    return sorted(p.name for p in paths.ROLES.iterdir() if (p / "tasks").is_dir() or (p / "defaults").is_dir())


def check_collections() -> None:
    """Every collection of collections/requirements.yml is installed."""
    from ansible import constants

    wanted = yaml.safe_load(paths.COLLECTIONS_REQUIREMENTS.read_text(encoding="utf-8"))["collections"]
    search = [Path(p).expanduser() for p in [*constants.COLLECTIONS_PATHS, *sys.path] if p]
    missing = [c["name"] for c in wanted
               if not any((base / "ansible_collections" / Path(*c["name"].split("."))).is_dir() for base in search)]
    if missing:
        raise PreflightFailed(
            f"Ansible collections missing: {', '.join(missing)}. Get them with "
            "`python3 installer.py` outside a virtual environment (it installs requirements.txt, "
            "whose `ansible` package carries them) or "
            "`ansible-galaxy collection install -r collections/requirements.yml`."
        )


def _expected(spec: dict) -> str:
    kind = spec.get("type", "str")
    if kind == "list" and spec.get("elements"):
        kind = f"a list of {spec['elements']}"
    elif kind in ("dict", "list", "int", "str", "bool", "path", "float", "raw"):
        kind = {"dict": "a dict", "list": "a list", "int": "an integer", "str": "a string",
                "bool": "a boolean", "path": "a path", "float": "a number", "raw": "any value"}[kind]
    if spec.get("choices"):
        kind += f" (one of: {', '.join(map(str, spec['choices']))})"
    return kind


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _render(loaded: LoadedInventory, host_vars: dict, value: Any) -> tuple[bool, Any]:
    """Template a value that holds Jinja; (False, None) when it depends on what only a run knows."""
    if not (isinstance(value, str) and "{{" in value):
        return True, value
    from ansible.template import Templar

    try:
        return True, Templar(loader=loaded.loader, variables=host_vars).template(value)
    except Exception:  # facts and registered values do not exist before the run
        return False, None


def check_variables(
    loaded: LoadedInventory, documents: dict[Path, dict], plays: list[Play],
    extra_var_names: set[str], limit: str | None = None,
) -> None:
    """Each value set in the inventory or with -e has the type the role's argument spec asks for,
    and each role-prefixed name is one the role knows."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    inventory: Inventory = loaded.inventory
    known_roles = all_roles()
    errors: dict[str, str] = {}

    def source(key: str) -> str:
        if key in extra_var_names:
            return "-e/--extra-vars"
        return where_defined(documents, inventory, key) or inventory.display_path(inventory.hosts_file)

    applied: dict[str, set[str]] = {}
    for play in plays:
        roles = [*play.roles, *(d for r in play.roles for d in role_dependencies(r))]
        for host in loaded.hosts(play.hosts, limit):
            applied.setdefault(host, set()).update(roles)

    for host, roles in sorted(applied.items()):
        host_vars = loaded.host_vars(host)
        for role in sorted(roles):
            for key, spec in role_options(role).items():
                if key not in host_vars or key in errors:
                    continue
                ok, value = _render(loaded, host_vars, host_vars[key])
                if not ok:
                    continue
                result = ArgumentSpecValidator({key: spec}).validate({key: value})
                if result.error_messages:
                    errors[key] = (f"{source(key)}: {key}: expected {_expected(spec)} for role {role}, "
                                   f"got {type(value).__name__} {_shown(value)}")

    user_keys = set(extra_var_names)
    for file, data in documents.items():
        user_keys |= _hosts_file_variables(data) if file == inventory.hosts_file else set(data)
    for key in sorted(user_keys):
        role = next((r for r in known_roles if key.startswith(r + "_")), None)
        if role is None or key in role_options(role) or key in errors:
            continue
        hint = difflib.get_close_matches(key, role_options(role), n=1)
        errors[key] = (f"{source(key)}: {key}: unknown variable of role {role}"
                       + (f"; did you mean {hint[0]}?" if hint else f"; see roles/{role}/README.md"))
    if errors:
        raise BadInput(*errors.values())


def _hosts_file_variables(groups: dict) -> set[str]:
    """Variable names a hosts.yml sets: under each group's `vars` and each host's entry."""
    names: set[str] = set()
    for group in groups.values():
        if not isinstance(group, dict):
            continue
        names |= set(group.get("vars") or {})
        for host_vars in (group.get("hosts") or {}).values():
            names |= set(host_vars or {})
        names |= _hosts_file_variables(group.get("children") or {})
    return names


# --- Host checks: judged from what playbooks/preflight.yml found on each host -------------

SUPPORTED_OS = ("Debian 12", "Debian 13", "Ubuntu 22", "Ubuntu 24")
MINIMUM_TARGET_PYTHON = (3, 8)
NVIDIA_PCI_VENDOR = "0x10de"
CONTAINER_TYPES = ("docker", "container", "podman", "lxc", "openvz", "systemd-nspawn")
# Per group: what a host of that group needs at least. A host in several groups needs the
# largest of each. Override with `preflight_minimums` in the inventory (same shape).
DEFAULT_MINIMUMS: dict[str, dict[str, int]] = {
    "all": {"cpus": 2, "memory_mb": 1800, "disk_free_gb": 10},
    "postgres": {"memory_mb": 3600, "disk_free_gb": 20},
    "redis": {"memory_mb": 1800},
    "app": {"memory_mb": 3600, "disk_free_gb": 20},
    "ollama": {"memory_mb": 7200, "disk_free_gb": 30},
    "gpu": {"memory_mb": 7200},
    "monitoring": {"memory_mb": 1800, "disk_free_gb": 10},
}
# Ports each group's services listen on, and the process that may already hold each.
# ss names a process by the first 15 characters of its name, as the kernel keeps them.
PROCESS_NAME_LENGTH = 15
GROUP_PORTS: dict[str, dict[int, tuple[str, ...]]] = {
    "edge": {80: ("nginx",), 443: ("nginx",)},
    "postgres": {5432: ("postgres",)},
    "redis": {6379: ("redis-server",)},
    "ollama": {11434: ("ollama",)},
    "monitoring": {9090: ("prometheus",), 9093: ("prometheus-alertmanager",)},
}
DATA_PATH = "/var/lib"


@dataclass
class Problem:
    host: str
    check: str
    found: str
    fix: str
    fatal: bool = True


def _free_gb(mounts: dict[str, Any], path: str) -> float | None:
    best = max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")), key=len, default=None)
    return None if best is None else int(mounts[best]) / 1024**3


def _listeners(lines: list[str]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[3]:
            continue
        port = fields[3].rsplit(":", 1)[1]
        if port.isdigit():
            found.setdefault(int(port), set()).update(re.findall(r'\("([^"]+)"', line))
    return found


def minimums_for(groups: list[str], overrides: dict[str, dict[str, int]] | None) -> dict[str, int]:
    table = {g: {**DEFAULT_MINIMUMS.get(g, {}), **((overrides or {}).get(g) or {})}
             for g in {*DEFAULT_MINIMUMS, *(overrides or {})}}
    needed: dict[str, int] = {}
    for group in ["all", *groups]:
        for key, value in (table.get(group) or {}).items():
            needed[key] = max(needed.get(key, 0), int(value))
    return needed


Finding = tuple[str, str, str, bool]  # check, what was found, what to do, fatal


def _system(probe: dict[str, Any], host_vars: dict[str, Any]) -> Iterator[Finding]:
    if probe.get("os") not in SUPPORTED_OS:
        yield ("operating system", f"{probe.get('os')} ({probe.get('os_version')})",
               f"use one of {', '.join(SUPPORTED_OS)}", True)
    python = tuple(int(p) for p in str(probe.get("python", "0")).split(".")[:2] if p.isdigit())
    if python < MINIMUM_TARGET_PYTHON:
        yield ("python3", str(probe.get("python")), "install python3 3.8 or newer", True)
    if str(probe.get("uid")) != "0":
        yield ("privilege escalation", f"uid {probe.get('uid')}",
               "give ansible_user passwordless sudo and set ansible_become: true", True)


def _size(probe: dict[str, Any], host_vars: dict[str, Any]) -> Iterator[Finding]:
    groups = list(probe.get("groups") or [])
    needed = minimums_for(groups, host_vars.get("preflight_minimums"))
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


def _ports(probe: dict[str, Any], host_vars: dict[str, Any]) -> Iterator[Finding]:
    listeners = _listeners(probe.get("listening") or [])
    for group in probe.get("groups") or []:
        for port, owners in GROUP_PORTS.get(group, {}).items():
            holders = listeners.get(port, set())
            if holders and not holders & {owner[:PROCESS_NAME_LENGTH] for owner in owners}:
                yield ("port", f"{port}/tcp held by {', '.join(sorted(holders))}",
                       f"free it for {owners[0]} ({group}): stop or move that service", True)


def _clock_and_gpu(probe: dict[str, Any], host_vars: dict[str, Any]) -> Iterator[Finding]:
    in_container = str(probe.get("virtualization", "")).split("/")[0] in CONTAINER_TYPES
    if probe.get("clock_synchronised") != "yes" and not in_container:
        yield ("time", "clock not synchronised",
               "the common role installs chrony; if it stays unsynchronised, allow NTP (UDP 123) out", False)
    if "gpu" in (probe.get("groups") or []) and NVIDIA_PCI_VENDOR not in (probe.get("pci_vendors") or []):
        required = bool(host_vars.get("preflight_gpu_required", False))
        yield ("GPU", "no NVIDIA GPU on the PCI bus",
               "add the GPU or take the host out of group gpu" if required
               else "the GPU roles will skip this host; set preflight_gpu_required: true to stop instead",
               required)


def _downloads(probe: dict[str, Any], host_vars: dict[str, Any]) -> Iterator[Finding]:
    for url, status in sorted((probe.get("downloads") or {}).items()):
        if int(status) < 0:
            yield ("download source", f"{url} does not answer",
                   "open the way to it, or configure a local source (mirror, image_archive, archive_src)", True)


HOST_CHECKS = (_system, _size, _ports, _clock_and_gpu, _downloads)


def judge_host(host: str, probe: dict[str, Any], host_vars: dict[str, Any]) -> list[Problem]:
    """Every problem of one host, each with what to do about it."""
    return [Problem(host, *finding) for check in HOST_CHECKS for finding in check(probe, host_vars)]


def judge(state_facts: dict[str, dict[str, Any]], loaded: LoadedInventory) -> list[Problem]:
    problems: list[Problem] = []
    for host, facts in sorted(state_facts.items()):
        probe = facts.get("preflight_probe")
        if isinstance(probe, dict):
            problems += judge_host(host, probe, loaded.host_vars(host))
    return problems
