"""Input checks that need no host: the collections, and every inventory value against the
argument specs of the roles the manifests give its hosts. Nothing here changes anything."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from platformctl import manifests, paths
from platformctl.errors import BadInput, PreflightFailed
from platformctl.inventory import Inventory, LoadedInventory, where_defined


def role_dependencies(role: str) -> list[str]:
    meta = paths.ROLES / role / "meta" / "main.yml"
    if not meta.is_file():
        return []
    deps = (yaml.safe_load(meta.read_text(encoding="utf-8")) or {}).get("dependencies") or []
    return [d if isinstance(d, str) else d.get("role") or d.get("name") for d in deps]


def role_options(role: str) -> dict[str, dict]:
    """Every option of the role's argument specs: main's, then those only its other entry
    points (backup, restore) take."""
    spec_file = paths.ROLES / role / "meta" / "argument_specs.yml"
    if not spec_file.is_file():
        return {}
    specs = (yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}).get("argument_specs") or {}
    options: dict[str, dict] = {}
    for entry_point in sorted(specs, key=lambda name: name != "main"):
        for key, spec in ((specs[entry_point] or {}).get("options") or {}).items():
            options.setdefault(key, spec)
    return options


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


def applied_roles(loaded: LoadedInventory, limit: str | None = None) -> dict[str, set[str]]:
    """Host -> the roles its manifests give it, with their dependencies."""
    loaded_manifests = manifests.load_all()
    groups = loaded.groups()
    applied: dict[str, set[str]] = {}
    for host in loaded.hosts("all", limit):
        roles = manifests.roles_of_host(loaded_manifests, loaded.groups_of(host), groups)
        applied[host] = {*roles, *(d for r in roles for d in role_dependencies(r))}
    return applied


def check_variables(
    loaded: LoadedInventory, documents: dict[Path, dict], extra_var_names: set[str], limit: str | None = None,
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

    for host, roles in sorted(applied_roles(loaded, limit).items()):
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
