"""The app role's planning: where an app container reaches the services it uses, the
environment each app gets, its replicas (name, published port, health URL), and which
containers are missing or no longer declared. Plain functions on plain data
(roles/app/vars/main.yml and its tasks call them as filters), so
tests/unit/test_app_plan.py can check them without Ansible."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

# A replica's container is "<app>-<N>".
_REPLICA_NUMBER = re.compile(r"[0-9]+$")
_REPLICA_SUFFIX = re.compile(r"-[0-9]+$")


def app_service_host(groups: Mapping[str, list[str]], group: str) -> str:
    """The first host of the inventory group `group`, "" when it has none (or no such group)."""
    hosts = groups.get(group) or []
    return hosts[0] if hosts else ""


def app_service_address(service_host: str, inventory_hostname: str, hostvars: Mapping, gateway: str) -> str:
    """The address an app container on `inventory_hostname` reaches `service_host` at: the
    platform network's `gateway` when the service runs on this host (the services bind to
    it), else the service host's ansible_host, else its name ("" for no host)."""
    if service_host == inventory_hostname:
        return gateway
    if service_host not in hostvars:
        return service_host
    return hostvars[service_host].get("ansible_host", service_host)


def app_service_port(service_host: str, hostvars: Mapping, port_variable: str, default_port: int) -> int:
    """The port of the service on `service_host`: that host's `port_variable` (postgresql_port,
    redis_port, ollama_port) when the inventory sets it, else `default_port`."""
    if service_host not in hostvars:
        return default_port
    return hostvars[service_host].get(port_variable, default_port)


def app_service_url(
    scheme: str,
    address: str,
    port: int | str,
    database: int | str | None = None,
    *,
    user: str | None = None,
    password: str | None = None,
    query: str = "",
) -> str:
    """The URL <scheme>://[<user>:<password>@]<address>:<port>[/<database>][?<query>]: with
    credentials when `user` is given, the password percent-encoded, "/" included; with a
    path when `database` is; with the query (sslmode=verify-full&...) when given."""
    credentials = "" if user is None else f"{user}:{quote(str(password), safe='')}@"
    path = "" if database is None else f"/{database}"
    return f"{scheme}://{credentials}{address}:{port}{path}" + (f"?{query}" if query else "")


def app_postgres_tls(service_host: str, inventory_hostname: str, ca_file: str, proxied: bool = False) -> str:
    """The libpq settings of an app's DATABASE_URL: none when PostgreSQL runs on this host
    (its traffic stays here); else TLS, verify-full against the platform CA mounted at
    `ca_file` when there is one ("" for none), else require. Through HAProxy (`proxied`, a
    cluster) TLS always, to whichever host leads: the CA is verified, not the name (verify-ca),
    since the name in the URL is the proxy's."""
    if proxied:
        return f"sslmode=verify-ca&sslrootcert={ca_file}" if ca_file else "sslmode=require"
    if not service_host or service_host == inventory_hostname:
        return ""
    return f"sslmode=verify-full&sslrootcert={ca_file}" if ca_file else "sslmode=require"


def app_redis_tls(service_host: str, inventory_hostname: str, ca_file: str) -> str:
    """The TLS settings of an app's REDIS_URL (redis-py's and Celery's query names): none when
    Redis runs on this host (its traffic stays here) or there is no platform CA ("" for
    none); else a verified connection against the CA mounted at `ca_file`. A URL with
    settings is a rediss:// one, to the host's TLS port."""
    if not service_host or service_host == inventory_hostname or not ca_file:
        return ""
    return f"ssl_cert_reqs=required&ssl_ca_certs={ca_file}"


def app_environment(app: Mapping, secrets: Mapping, service_urls: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The environment of `app`: its env, then each secret_env name with its value from
    `secrets`, then the URLs of each service it `uses` (from `service_urls`), later ones
    winning; every value a string, as Docker wants it."""
    environment = dict(app.get("env", {}))
    environment.update((name, secrets[name]) for name in app.get("secret_env", []))
    for service in app.get("uses", []):
        environment.update(service_urls[service])
    return {name: str(value) for name, value in environment.items()}


def app_environment_of_container(environment: Iterable[str]) -> dict[str, str]:
    """A container's environment as Docker lists it ("NAME=value"), as a mapping again."""
    return dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in environment)


def app_numeric_user(app: Mapping) -> dict[str, str]:
    """Who owns the folders the app writes on the host: its `user` when numeric ("1000" or
    "1000:1000"), else root (a name means nothing outside the image)."""
    user, _, group = str(app.get("user", "")).partition(":")
    owner = user if user.isdigit() else "root"
    return {"owner": owner, "group": group if group.isdigit() else (owner if not group and owner != "root" else "root")}


def app_device_requests(app: Mapping) -> list[dict]:
    """docker_container's device_requests for the app's NVIDIA GPUs: every one (gpus: all), a
    number of them (resources.gpus) or these (resources.gpu_devices); none otherwise."""
    resources = app.get("resources") or {}
    request = {"driver": "nvidia", "capabilities": [["gpu"]]}
    if app.get("gpus") == "all":
        return [{**request, "count": -1}]
    if resources.get("gpus"):
        return [{**request, "count": int(resources["gpus"])}]
    if resources.get("gpu_devices"):
        return [{**request, "device_ids": [str(d) for d in resources["gpu_devices"]]}]
    return []


def app_hosts(app: Mapping, groups: Mapping[str, list[str]]) -> list[str]:
    """The hosts that run the app, in the order of group `app`: all of them, or those that
    its `hosts` names (each a group or a host); only the first for a singleton or a
    scheduled job."""
    app_group = list(groups.get("app", []))
    if app.get("hosts"):
        named = {host for entry in app["hosts"]
                 for host in groups.get(entry, [entry] if entry in groups.get("all", []) else [])}
        app_group = [host for host in app_group if host in named]
    return app_group[:1] if app.get("singleton") or app.get("schedule") else app_group


def _ip_address(value: object) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


def _default_ipv4(host_vars: Mapping) -> str | None:
    facts = host_vars.get("ansible_facts") or {}
    return (facts.get("default_ipv4") or {}).get("address") or None


def platform_host_address(host: str, hostvars: Mapping) -> str | None:
    """The address the other platform hosts reach `host` at: its ansible_host when that is an
    IP address, else its default IPv4 address (from its facts), else None."""
    host_vars = hostvars.get(host) or {}
    return _ip_address(host_vars.get("ansible_host")) or _default_ipv4(host_vars)


def platform_source_address(host: str, hostvars: Mapping) -> str | None:
    """The address `host` connects to the other platform hosts from: its firewall_host_address,
    else its default IPv4 address, else its ansible_host when that is an IP address."""
    host_vars = hostvars.get(host) or {}
    return (_ip_address(host_vars.get("firewall_host_address")) or _default_ipv4(host_vars)
            or _ip_address(host_vars.get("ansible_host")))


def app_publish_address(inventory_hostname: str, groups: Mapping[str, list[str]], hostvars: Mapping) -> str:
    """Where this host publishes its apps' ports: loopback when no nginx elsewhere proxies to
    them (no edge host, or this host is the only one), else the address the edge hosts reach
    it at (platform_host_address), which nginx's upstreams use too."""
    if not [host for host in groups.get("edge", []) if host != inventory_hostname]:
        return "127.0.0.1"
    address = platform_host_address(inventory_hostname, hostvars)
    if address is None:
        raise ValueError(f"{inventory_hostname}: no address for the edge hosts' nginx to reach its apps at; "
                         "give it an IP address as ansible_host, or set app_publish_address")
    return address


def app_edge_allowances(apps: Iterable[Mapping], groups: Mapping[str, list[str]], hostvars: Mapping,
                        inventory_hostname: str) -> list[dict]:
    """The container ports of the routed apps on this host that each edge host elsewhere may
    open (Docker's DOCKER-USER chain), as docker_ufw_allowed_ports entries {port, proto, from}."""
    edges = [host for host in groups.get("edge", []) if host != inventory_hostname]
    ports = sorted({app["port"] for app in app_services_here(apps, groups, inventory_hostname)
                    if app.get("port") and (app.get("routes") or app.get("route"))})
    allowances = []
    for edge in edges:
        source = platform_source_address(edge, hostvars)
        if source is None:
            raise ValueError(f"{edge}: no address it connects to {inventory_hostname} from; set its "
                             "firewall_host_address")
        allowances += [{"port": port, "proto": "tcp", "from": f"{source}/32"} for port in ports]
    return allowances


def app_hosts_by_name(apps: Iterable[Mapping], groups: Mapping[str, list[str]]) -> dict[str, list[str]]:
    return {app["name"]: app_hosts(app, groups) for app in apps}


def app_services_here(apps: Iterable[Mapping], groups: Mapping[str, list[str]], inventory_hostname: str) -> list:
    """The apps whose replicas run on this host (scheduled jobs are not among them)."""
    return [app for app in apps if not app.get("schedule") and inventory_hostname in app_hosts(app, groups)]


def app_jobs_here(apps: Iterable[Mapping], groups: Mapping[str, list[str]], inventory_hostname: str) -> list:
    """The scheduled jobs whose timer is on this host."""
    return [app for app in apps if app.get("schedule") and inventory_hostname in app_hosts(app, groups)]


def app_images(apps: Iterable[Mapping], bundled: Mapping[str, str] | None = None) -> list[dict]:
    """Each image the apps run, once, as {image, archive}: archive is the offline bundle's
    archive of the image (`bundled`, platform_bundle_images) when there is one, else the
    image_archive of the first app of that image that has one, else None (the image is
    pulled). Apps of one image (a backend and its workers) load or pull it once."""
    bundled = bundled or {}
    images: dict[str, dict] = {}
    for app in apps:
        entry = images.setdefault(app["image"], {"image": app["image"], "archive": bundled.get(app["image"])})
        entry["archive"] = entry["archive"] or app.get("image_archive")
    return list(images.values())


def app_systemd_arguments(arguments: Iterable) -> str:
    """A command line for a systemd unit's Exec line: each argument in double quotes, with
    systemd's specifiers (%) and variables ($) kept literal."""
    quoted = []
    for argument in arguments:
        text = str(argument).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
        quoted.append(f'"{text}"')
    return " ".join(quoted)


def _replica_names(app: Mapping) -> list[str]:
    return [f"{app['name']}-{number}" for number in range(1, app.get("replicas", 1) + 1)]


def app_probe_paths(app: Mapping) -> dict[str, str]:
    """The app's health paths by use: readiness (what a rollout waits for and verify probes)
    and liveness (what the liveness watcher restarts a replica for), each its own key, else
    healthcheck.path; a use with neither is left out."""
    healthcheck = app.get("healthcheck") or {}
    paths = {use: healthcheck.get(use, healthcheck.get("path")) for use in ("readiness", "liveness")}
    return {use: path for use, path in paths.items() if path}


def app_replicas(app: Mapping, publish_address: str) -> list[dict]:
    """The replicas of `app` (`replicas`, default 1), each as {number, name: "<app>-<N>"},
    and where the app has a port (or host_port): replica N's host_port, host_port (or
    port) + N - 1; with a port, published_ports ["<publish_address>:<host_port>:<port>"]
    (an app without one, a worker, publishes nothing); with a readiness path, health_url;
    with a liveness path, liveness_url (app_probe_paths)."""
    first_host_port = app.get("host_port", app.get("port"))
    paths = app_probe_paths(app)
    if paths and first_host_port is None:
        raise ValueError(f"app {app['name']}: a healthcheck path needs a port")
    replicas = []
    for number, name in enumerate(_replica_names(app), start=1):
        replica: dict = {"number": number, "name": name}
        if first_host_port is not None:
            replica["host_port"] = first_host_port + number - 1
        if "port" in app:
            replica["published_ports"] = [f"{publish_address}:{replica['host_port']}:{app['port']}"]
        for use, key in (("readiness", "health_url"), ("liveness", "liveness_url")):
            if use in paths:
                replica[key] = f"http://{publish_address}:{replica['host_port']}{paths[use]}"
        replicas.append(replica)
    return replicas


def app_health_urls(apps: Iterable[Mapping], publish_address: str) -> list[str]:
    """The readiness URL of every replica of every app with one, in app order."""
    return [
        replica["health_url"]
        for app in apps
        for replica in app_replicas(app, publish_address)
        if "health_url" in replica
    ]


def app_probe_command(urls: Iterable[str], timeout: int = 5) -> list[str]:
    """One curl for every URL: a line "<HTTP status> <URL>" each (000 for no answer within
    `timeout` seconds), every answer's body discarded (curl takes one --output per URL)."""
    command = ["curl", "--silent", "--max-time", str(timeout), "--write-out", "%{http_code} %{url_effective}\n"]
    for url in urls:
        command += ["--output", "/dev/null", url]
    return command


# The liveness watcher's defaults (platform_apps[].healthcheck, argument specs).
LIVENESS_DEFAULTS = {"interval": 10, "failures": 3, "start_period": 30}


def app_liveness_checks(apps: Iterable[Mapping], publish_address: str) -> list[dict]:
    """What the liveness watcher probes on this host: each replica with a liveness path, as
    {container, url, interval, failures, start_period} (seconds; the app's healthcheck
    settings, else LIVENESS_DEFAULTS)."""
    checks = []
    for app in apps:
        healthcheck = app.get("healthcheck") or {}
        timing = {key: healthcheck.get(key, default) for key, default in LIVENESS_DEFAULTS.items()}
        checks += [{"container": replica["name"], "url": replica["liveness_url"], **timing}
                   for replica in app_replicas(app, publish_address) if "liveness_url" in replica]
    return checks


def app_containers_not_declared(container_names: Iterable[str], apps: Iterable[Mapping]) -> list[str]:
    """The containers of `container_names` that no app declares: "<app>-<N>" of an app not in
    `apps` or with fewer than N replicas. A name without a number counts as replica 0 of
    the app it names, so it is kept when that app is declared."""
    replica_counts: dict[str, int] = {}
    for app in apps:
        replica_counts.setdefault(app["name"], app.get("replicas", 1))
    not_declared = []
    for name in container_names:
        app_name = _REPLICA_SUFFIX.sub("", name)
        number = _REPLICA_NUMBER.search(name)
        if app_name not in replica_counts or (int(number.group()) if number else 0) > replica_counts[app_name]:
            not_declared.append(name)
    return not_declared


def app_replicas_missing(apps: Iterable[Mapping], container_names: Iterable[str]) -> list[str]:
    """The replica names ("<app>-<N>") of `apps` that are not among `container_names`."""
    running = set(container_names)
    return [name for app in apps for name in _replica_names(app) if name not in running]


class FilterModule:
    """The app planning filters."""

    def filters(self):
        return {
            "app_device_requests": app_device_requests,
            "app_numeric_user": app_numeric_user,
            "app_environment_of_container": app_environment_of_container,
            "app_hosts": app_hosts,
            "app_hosts_by_name": app_hosts_by_name,
            "app_publish_address": app_publish_address,
            "app_edge_allowances": app_edge_allowances,
            "app_services_here": app_services_here,
            "app_jobs_here": app_jobs_here,
            "app_systemd_arguments": app_systemd_arguments,
            "app_service_host": app_service_host,
            "app_service_address": app_service_address,
            "app_service_port": app_service_port,
            "app_service_url": app_service_url,
            "app_postgres_tls": app_postgres_tls,
            "app_redis_tls": app_redis_tls,
            "app_environment": app_environment,
            "app_replicas": app_replicas,
            "app_health_urls": app_health_urls,
            "app_liveness_checks": app_liveness_checks,
            "app_probe_paths": app_probe_paths,
            "app_images": app_images,
            "app_probe_command": app_probe_command,
            "app_containers_not_declared": app_containers_not_declared,
            "app_replicas_missing": app_replicas_missing,
        }
