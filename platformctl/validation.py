"""Input checks that need no host: the collections, and every inventory value against the
argument specs of the roles the manifests give its hosts. Nothing here changes anything."""

from __future__ import annotations

import difflib
import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from platformctl import forms, manifests, paths
from platformctl.errors import BadInput, PreflightFailed
from platformctl.inventory import Inventory, LoadedInventory, where_defined


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


WORDS = {"str": "a string", "path": "a path (a string)", "int": "an integer", "float": "a number",
         "bool": "a boolean (true or false)", "list": "a list", "dict": "a dict", "raw": "any value"}
PLURALS = {"str": "strings", "path": "paths", "int": "integers", "float": "numbers", "bool": "booleans",
           "list": "lists", "dict": "dicts", "raw": "values"}
BOOLEANS = {"yes", "no", "true", "false", "on", "off", "y", "n", "1", "0"}


def _expected(spec: dict) -> str:
    kind = spec.get("type", "str")
    words = WORDS.get(kind, kind)
    if kind == "list" and spec.get("elements"):
        words = f"a list of {PLURALS.get(spec['elements'], spec['elements'])}"
    if spec.get("choices"):
        words += f" (one of: {', '.join(map(str, spec['choices']))})"
    return words


def kind_of(value: Any) -> str:
    """A value's type in words (Ansible's own classes, such as its tagged strings, are strings)."""
    if value is None:
        return "nothing (null)"
    for kind, classes in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", (list, tuple)),
                          ("dict", dict)):
        if isinstance(value, classes):
            return WORDS[kind].split(" (")[0]
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value if not isinstance(value, str) else str(value))
    return text if len(text) <= 40 else text[:37] + "..."


_FITS = {
    "str": lambda v: isinstance(v, (str, int, float)),
    "path": lambda v: isinstance(v, (str, int, float)),
    "int": lambda v: isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit()),
    "float": lambda v: isinstance(v, (int, float)) or (isinstance(v, str) and _is_number(v)),
    "bool": lambda v: (isinstance(v, str) and v.lower() in BOOLEANS) or v in (0, 1),
    "list": lambda v: isinstance(v, (list, tuple)),
    "dict": lambda v: isinstance(v, dict),
}


def _fits(kind: str, value: Any) -> bool:
    """Whether Ansible would take `value` as `kind` without changing its meaning: a list is
    never read as text (Ansible would make "['50M']" of it), nor a text as a list (it would
    split it at commas), and a YAML boolean is not taken for a word (on, no: quote them)."""
    if isinstance(value, bool):
        return kind in ("bool", "raw")
    return _FITS.get(kind, lambda v: True)(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _converted(kind: str, value: Any) -> Any:
    if kind == "int" and isinstance(value, str):
        return int(value)
    if kind == "float" and isinstance(value, str):
        return float(value)
    if kind in ("str", "path") and isinstance(value, (int, float)):
        return str(value)
    return value


class SpecWalk:
    """Checks one value against its argument spec, keys of dicts and list items included:
    type (strict, see _fits), choices, required and unknown keys, and the value's form
    (platformctl.forms). `render` templates a string holding Jinja, or returns None when it
    depends on what only a run knows (such a value is not checked)."""

    def __init__(self, render) -> None:
        self.render = render
        self.problems: list[tuple[str, str]] = []  # (shown path, what is wrong)

    def value(self, shown: str, generic: str, value: Any, spec: dict) -> None:
        if isinstance(value, str) and "{{" in value:
            value = self.render(value)
        if value is None:
            return
        kind = spec.get("type", "str")
        if not _fits(kind, value):
            hint = "; quote it to make it a string" if isinstance(value, bool) and kind in ("str", "path") else ""
            self.problems.append((shown, f"expected {_expected(spec)}, got {kind_of(value)} {_shown(value)}{hint}"))
            return
        value = _converted(kind, value)
        if kind != "list" and spec.get("choices") and value not in spec["choices"]:
            self.problems.append((shown, f"expected {_expected(spec)}, got {_shown(value)}"))
            return
        if kind == "list":
            self._items(shown, generic, value, spec)
        elif kind == "dict" and spec.get("options"):
            self.keys(shown, generic, value, spec["options"])
        check = forms.form_of(generic, spec)
        problem = check(value) if check else None
        if problem:
            self.problems.append((shown, f"expected {problem}, got {_shown(value)}"))

    def _items(self, shown: str, generic: str, items: list, spec: dict) -> None:
        element = {"type": spec.get("elements", "raw"), "choices": spec.get("choices"),
                   "options": spec.get("options")}
        for index, item in enumerate(items):
            label = item.get("name") if isinstance(item, dict) and isinstance(item.get("name"), str) else index
            self.value(f"{shown}[{label}]", f"{generic}[]", item, element)

    def keys(self, shown: str, generic: str, mapping: dict, options: dict) -> None:
        for key in mapping:
            if key not in options:
                hint = nearest(str(key), options)
                self.problems.append((f"{shown}.{key}", "unknown key; " + (
                    f"did you mean {hint[0]}?" if hint else f"expected one of: {', '.join(options)}")))
        for key, spec in options.items():
            if key in mapping:
                self.value(f"{shown}.{key}", f"{generic}.{key}", mapping[key], spec)
            elif spec.get("required"):
                self.problems.append((f"{shown}.{key}", f"missing; expected {_expected(spec)}"))


def nearest(name: str, known) -> list[str]:
    """The known name a misspelt one most likely meant: the closest by spelling, else one it
    begins (strip for strip_prefix)."""
    return difflib.get_close_matches(name, known, n=1) or [k for k in known if k.startswith(name)][:1]


def _render(loaded: LoadedInventory, host_vars: dict, value: str) -> Any:
    """A value holding Jinja, templated; None when it depends on what only a run knows."""
    from ansible.template import Templar

    try:
        return Templar(loader=loaded.loader, variables=host_vars).template(value)
    except Exception:  # facts and registered values do not exist before the run
        return None


def applied_roles(loaded: LoadedInventory, limit: str | None = None) -> dict[str, set[str]]:
    """Host -> the roles its manifests give it, with their dependencies."""
    loaded_manifests = manifests.load_all()
    groups = loaded.groups()
    applied: dict[str, set[str]] = {}
    for host in loaded.hosts("all", limit):
        roles = manifests.roles_of_host(loaded_manifests, loaded.groups_of(host), groups)
        applied[host] = {*roles, *(d for r in roles for d in manifests.role_dependencies(r))}
    return applied


def check_variables(
    loaded: LoadedInventory, documents: dict[Path, dict], extra_var_names: set[str], limit: str | None = None,
) -> None:
    """Each value set in the inventory or with -e has the type the role's argument spec asks for,
    and each role-prefixed name is one the role knows."""
    inventory: Inventory = loaded.inventory
    known_roles = all_roles()
    errors: dict[str, str] = {}
    failed: set[str] = set()  # variables already reported, not checked again on the next host

    def source(key: str) -> str:
        if key in extra_var_names:
            return "-e/--extra-vars"
        return where_defined(documents, inventory, key) or inventory.display_path(inventory.hosts_file)

    for host, roles in sorted(applied_roles(loaded, limit).items()):
        host_vars = loaded.host_vars(host)
        for role in sorted(roles):
            for key, spec in role_options(role).items():
                if key not in host_vars or key in failed:
                    continue
                walk = SpecWalk(lambda text, hv=host_vars: _render(loaded, hv, text))
                walk.value(key, key, host_vars[key], spec)
                if key == "platform_apps" and not walk.problems:
                    zones = host_vars.get("nginx_rate_limits", manifests.role_default("nginx", "nginx_rate_limits"))
                    walk.problems += app_problems(host_vars[key], loaded.groups(), zones)
                if key == "nginx_rate_limits" and not walk.problems:
                    walk.problems += rate_zone_problems(host_vars[key])
                if key in ACME_CHECKS and not walk.problems:
                    walk.problems += acme_problems(key, host_vars)
                for shown, problem in walk.problems:
                    errors[f"{shown}: {problem}"] = f"{source(key)}: {shown}: {problem} (role {role})"
                    failed.add(key)

    errors |= {problem: f"{inventory.display_path(inventory.hosts_file)}: {problem}"
               for problem in group_problems(loaded.groups())}

    user_keys = set(extra_var_names)
    for file, data in documents.items():
        user_keys |= _hosts_file_variables(data) if file == inventory.hosts_file else set(data)
    for key in sorted(user_keys):
        # The longest name first: backup_repository_path is backup_repository's, not backup's.
        role = next((r for r in sorted(known_roles, key=len, reverse=True) if key.startswith(r + "_")), None)
        if role is None or key in role_options(role):
            continue
        hint = nearest(key, role_options(role))
        errors[key] = (f"{source(key)}: {key}: unknown variable of role {role}"
                       + (f"; did you mean {hint[0]}?" if hint else f"; see roles/{role}/README.md"))
    if errors:
        raise BadInput(*errors.values())


ACME_CHECKS = ("nginx_tls_mode", "nginx_acme_server", "nginx_acme_server_ca")


def group_problems(groups: dict[str, list[str]]) -> list[str]:
    """Shapes of the inventory's groups the roles cannot serve: the backup repository host
    (group backup) is one host, not a database host;
    Redis and PostgreSQL run on one host or as a set of three or more."""
    backup, postgres = groups.get("backup", []), groups.get("postgres", [])
    problems = []
    if len(backup) > 1:
        problems.append(f"group backup: {', '.join(backup)}: expected one host, the backup repository host")
    problems += [f"group backup: {host} is in group postgres too: the backup repository host must be another "
                 "host than the database host whose backups it keeps" for host in backup if host in postgres]
    redis = groups.get("redis", [])
    if len(redis) == 2:
        problems.append(f"group redis: {', '.join(redis)}: expected one host, or three or more for a replicated set: "
                        "with two, Sentinel cannot elect a new master when one is lost")
    if len(postgres) == 2:
        problems.append(f"group postgres: {', '.join(postgres)}: expected one host, or three or more for a "
                        "cluster: with two, etcd loses its majority and Patroni its leader when one is lost")
    return problems


def acme_problems(key: str, host_vars: dict) -> list[tuple[str, str]]:
    """nginx's acme mode: a contact address, an https directory URL, the CA as certificates."""
    value = host_vars[key]
    if not isinstance(value, str) or not value or "{{" in value:
        return []
    if key == "nginx_tls_mode" and value == "acme" and not host_vars.get("nginx_acme_email"):
        return [(key, "acme needs nginx_acme_email, the address the ACME service writes to about expiry")]
    if key == "nginx_acme_server" and not value.startswith("https://"):
        return [(key, f"expected the ACME service's directory URL, starting with https://, got {_shown(value)}")]
    if key == "nginx_acme_server_ca" and "-----BEGIN CERTIFICATE-----" not in value:
        return [(key, "expected PEM text of one or more CA certificates (-----BEGIN CERTIFICATE-----)")]
    return []


def rate_zone_problems(zones: Any) -> list[tuple[str, str]]:
    """nginx_rate_limits: each zone a dict of a rate nginx can count and a burst of 0 or more."""
    if not isinstance(zones, dict):
        return []
    problems = []
    for name, zone in zones.items():
        shown = f"nginx_rate_limits.{name}"
        if not isinstance(zone, dict) or "rate" not in zone:
            problems.append((shown, "expected a dict with rate (10r/s, 30r/m, 100r/h, 1000r/d) and burst"))
            continue
        if not plan("nginx_plan").RATE.match(str(zone["rate"])):
            problems.append((f"{shown}.rate", f"expected N requests per second, minute, hour or day (10r/s, 30r/m, "
                             f"100r/h, 1000r/d), got {_shown(zone['rate'])}"))
        burst_problem = forms.zero_or_more(zone["burst"]) if "burst" in zone else None
        if burst_problem:
            problems.append((f"{shown}.burst", f"expected {burst_problem}, got {_shown(zone['burst'])}"))
        problems += [(f"{shown}.{key}", "unknown key; expected rate or burst")
                     for key in zone if key not in ("rate", "burst")]
    return problems


def app_problems(apps: list, groups: dict[str, list[str]], rate_zones: dict | None = None) -> list[tuple[str, str]]:
    """What the types alone do not say of platform_apps: unique names and route paths, a port
    where nginx or the health check must reach the app, one way of giving GPUs, secret
    formats of the app's own secrets, services in `uses` that have hosts, and each route's
    rate_limit a zone of `rate_zones` (nginx_rate_limits) or none."""
    problems = []
    names: set[str] = set()
    paths_taken: dict[str, str] = {}
    for app in apps:
        shown = f"platform_apps[{app['name']}]"
        if app["name"] in names:
            problems.append((f"{shown}.name", "a second app of this name; expected each name once"))
        names.add(app["name"])
        problems += [(f"{shown}.{key}", problem) for key, problem in _route_problems(app, paths_taken)]
        known_zones = (*(rate_zones or {}), "none")
        problems += [(f"{shown}.{where}.rate_limit", f"{zone}: not a zone of nginx_rate_limits; expected one of "
                      f"{', '.join(known_zones)}")
                     for where, zone in _route_zones(app) if rate_zones is not None and zone not in known_zones]
        gpu_keys = [key for key in ("gpus", "gpu_devices") if key in (app.get("resources") or {})]
        if len(gpu_keys) + ("gpus" in app) > 1:
            problems.append((f"{shown}.resources", "gpus (all), resources.gpus and resources.gpu_devices: expected "
                             "one way of giving GPUs"))
        problems += [(f"{shown}.{key}", problem) for key, problem in _placement_problems(app, groups)]
        problems += [(f"{shown}.secret_formats.{name}", problem) for name, problem in _secret_format_problems(app)]
        problems += [(f"{shown}.uses", f"{service}: the inventory's group {service} has no host; expected a "
                      "service the inventory installs") for service in app.get("uses") or [] if not groups.get(service)]
    return problems


def _route_zones(app: dict) -> list[tuple[str, str]]:
    """The rate_limit each route names, with where it is (route, routes[N])."""
    several = bool(app.get("routes"))
    return [(f"routes[{number}]" if several else "route", route["rate_limit"])
            for number, route in enumerate(plan("nginx_plan").app_routes(app)) if "rate_limit" in route]


def _route_problems(app: dict, paths_taken: dict[str, str]) -> list[tuple[str, str]]:
    problems = []
    if "route" in app and "routes" in app:
        problems.append(("routes", "given beside route; expected one of them (route is one location, routes several)"))
    for route in plan("nginx_plan").app_routes(app) + (app.get("static") or []):
        if route.get("host"):
            continue
        if route["path"] in paths_taken:
            problems.append(("routes", f"{route['path']}: already a route of {paths_taken[route['path']]}; "
                             "expected each path once"))
        paths_taken.setdefault(route["path"], app["name"])
    healthcheck = app.get("healthcheck") or {}
    probed = [f"healthcheck.{key}" for key in ("path", "readiness", "liveness") if healthcheck.get(key)]
    reached_by = "route" if plan("nginx_plan").app_routes(app) else (probed[0] if probed else None)
    if reached_by and app.get("port") is None:
        problems.append(("port", f"missing; expected the app's port, which its {reached_by} needs"))
    return problems


def _placement_problems(app: dict, groups: dict[str, list[str]]) -> list[tuple[str, str]]:
    """hosts naming groups or hosts of the inventory, at least one of them an app host; one
    replica for a singleton; a job (schedule) with nothing that only a service has."""
    problems = []
    known = set(groups) | set(groups.get("all", []))
    for entry in app.get("hosts") or []:
        if entry not in known:
            problems.append(("hosts", f"{entry}: neither a group nor a host of the inventory; expected one of them"))
    runs_on = plan("app_plan").app_hosts(app, groups)
    if app.get("hosts") and not problems and not runs_on:
        problems.append(("hosts", "names no host of group app; expected at least one app host, where apps run"))
    if app.get("static") and not set(runs_on) & set(groups.get("edge", [])):
        problems.append(("static", "nginx serves the files from a folder of its own host; expected the app to run "
                         "on an edge host (hosts)"))
    if app.get("singleton") and app.get("replicas", 1) != 1:
        problems.append(("replicas", "a singleton has one replica; expected 1 or nothing"))
    if app.get("schedule"):
        service_keys = [key for key in ("port", "route", "routes", "replicas", "healthcheck", "singleton", "pre_deploy")
                        if key in app]
        if service_keys:
            problems.append(("schedule", f"a job has no {', '.join(service_keys)}; expected a command run on the "
                             "schedule, or a service without schedule"))
        if not app.get("command"):
            problems.append(("command", "missing; expected the command a job runs on its schedule"))
    return problems


@functools.cache
def plan(name: str) -> ModuleType:
    """A filter of plugins/filter (app_plan, nginx_plan, signing_keys) as a module, so that the
    installer reads apps and keys as the roles do."""
    spec = importlib.util.spec_from_file_location(name, paths.ROOT / "plugins" / "filter" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _secret_format_problems(app: dict) -> list[tuple[str, str]]:
    problems = []
    known = [f for f in manifests.SECRET_FORMATS if f not in manifests.PLATFORM_ONLY_FORMATS] + [manifests.GIVEN]
    for name, secret_format in (app.get("secret_formats") or {}).items():
        if name not in (app.get("secret_env") or []):
            problems.append((name, "not in secret_env; expected the name of one of the app's secret_env entries"))
        elif secret_format not in known:
            problems.append((name, f"expected one of: {', '.join(known)}, got {_shown(secret_format)}"))
    return problems


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
