"""The nginx role's site plan: the upstream of each routed app (every app host, every
replica) and its locations (each route with its options, the health path). Plain
functions on plain data (roles/nginx/vars/main.yml calls them as filters, the template only
prints what they return), so tests/unit/test_nginx_plan.py can check them without Ansible."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# The app role's rule for where apps are published, shared so both ends agree.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_plan import app_publish_address

_TRAILING_SLASH = re.compile(r"/$")
# A request rate: N requests per second, minute, hour or day.
RATE = re.compile(r"^([1-9][0-9]*)r/([smhd])$")
_MINUTES_PER = {"h": 60, "d": 1440}


def nginx_rate_zones(rate_limits: Mapping[str, Mapping]) -> dict[str, dict]:
    """Each rate-limit zone as nginx takes it, {rate, burst}. nginx counts requests per second
    or minute and refills no slower than one a minute: N per hour or day becomes a burst of N
    (the first request and burst N - 1) refilled at N/60 or N/1440 a minute, rounded up to a
    whole request. A zone without burst has none (per second or minute)."""
    zones = {}
    for name, limit in rate_limits.items():
        match = RATE.match(str(limit["rate"]))
        if not match:
            raise ValueError(f"nginx_rate_limits.{name}.rate: {limit['rate']!r} is not N r/s, r/m, r/h or r/d")
        count, unit = int(match[1]), match[2]
        if unit in _MINUTES_PER:
            per_minute = -(-count // _MINUTES_PER[unit])
            zones[name] = {"rate": f"{per_minute}r/m", "burst": limit.get("burst", count - 1)}
        else:
            zones[name] = {"rate": limit["rate"], "burst": limit.get("burst", 0)}
    return zones


def nginx_app_host_address(host: str, hostvars: Mapping, inventory_hostname: str,
                           groups: Mapping[str, list[str]]) -> str:
    """The address nginx on `inventory_hostname` reaches the apps of app host `host` at: its
    app_publish_address when the inventory sets it, else where the app role publishes them by
    default (app_plan's app_publish_address: loopback, or the host's platform address), else
    its ansible_host, else its name."""
    host_vars = hostvars[host]
    if "app_publish_address" in host_vars:
        return host_vars["app_publish_address"]
    try:
        return app_publish_address(host, groups, hostvars)
    except ValueError:
        # Its facts are not known in this run (--limit): the name it is reached by, which
        # nginx resolves.
        return host_vars.get("ansible_host", host)


def app_routes(app: Mapping) -> list[Mapping]:
    """An app's locations: `routes`, or its one `route`."""
    return list(app.get("routes") or ([app["route"]] if app.get("route") else []))


def nginx_upstreams(
    apps: Iterable[Mapping], app_hosts: Mapping[str, list[str]], hostvars: Mapping, inventory_hostname: str,
    groups: Mapping[str, list[str]],
) -> list[dict]:
    """One upstream per app with a route, as {name, servers}: "address:port" of every replica
    on every host that runs the app (`app_hosts`, by app name: app_plan's app_hosts_by_name),
    host by host; replica N is at host_port (or port) + N - 1."""
    upstreams = []
    for app in apps:
        if not app_routes(app):
            continue
        addresses = [nginx_app_host_address(host, hostvars, inventory_hostname, groups)
                     for host in app_hosts[app["name"]]]
        first_port = app["host_port"] if "host_port" in app else app["port"]
        ports = [first_port + replica for replica in range(app.get("replicas", 1))]
        servers = [f"{address}:{port}" for address in addresses for port in ports]
        upstreams.append({"name": app["name"], "servers": servers})
    return upstreams


def nginx_routes(apps: Iterable[Mapping], rate_limits: Mapping[str, Mapping], default_rate_limit: str) -> list[dict]:
    """The locations of each app's routes, as {app, host, path, proxy_pass, rate_limit,
    websocket, buffering, body_size, timeout, cache, health} (host: the route's own host
    name, None for the platform's names):
    - proxy_pass "http://<app>", with a trailing "/" when the route strips its prefix (nginx
      then replaces the route's path with "/");
    - rate_limit {zone, burst}: the route's rate_limit, else `default_rate_limit`; None for "none";
    - websocket, buffering (both off unless asked for; a cached route buffers, as nginx's
      cache needs), body_size and timeout (None: the server's), cache (seconds, 0 for none);
    - health {path, proxy_pass}: the exact location of the app's readiness path (healthcheck
      readiness, else path: what the platform itself probes), without
      rate limit or access log, on the first route that strips its prefix or holds that path
      (None on the others, and without a healthcheck path). With strip_prefix it is the
      health path under the route's path ("/api/" and "/health" give "/api/health")."""
    locations = []
    for app in apps:
        healthcheck = app.get("healthcheck") or {}
        ready_path = healthcheck.get("readiness", healthcheck.get("path"))
        health_placed = not ready_path
        for route in app_routes(app):
            strip = route.get("strip_prefix", False)
            zone = route.get("rate_limit", default_rate_limit)
            health = None
            if not health_placed and (strip or ready_path.startswith(route["path"])):
                under_route = _TRAILING_SLASH.sub("", route["path"]) + ready_path
                health = {
                    "path": under_route if strip else ready_path,
                    "proxy_pass": f"http://{app['name']}{ready_path}",
                }
                health_placed = True
            cache = int(route.get("cache", 0))
            locations.append({
                "app": app["name"],
                "host": route.get("host") or None,
                "path": route["path"],
                "proxy_pass": f"http://{app['name']}" + ("/" if strip else ""),
                "rate_limit": None if zone == "none" else {"zone": zone, "burst": rate_limits[zone]["burst"]},
                "websocket": bool(route.get("websocket", False)),
                "buffering": bool(route.get("buffering", False)) or cache > 0,
                "body_size": route.get("body_size"),
                "timeout": route.get("timeout"),
                "cache": cache,
                "health": health,
            })
    return locations


def nginx_static(apps: Iterable[Mapping]) -> list[dict]:
    """The folders nginx serves itself, as {app, path, folder, expires}: each app's static
    entries, the folder with one trailing slash (nginx's alias joins it to the rest)."""
    return [{"app": app["name"], "path": entry["path"], "folder": entry["folder"].rstrip("/") + "/",
             "expires": entry.get("expires", "7d")}
            for app in apps for entry in app.get("static") or []]


def nginx_server_names(domain: str, aliases: Iterable[str], routes: Iterable[Mapping], www_redirect: bool) -> dict:
    """The site's names, as {main, hosts, www, all}: the platform's own (domain, then its
    aliases), the host names routes ask for beyond those (a server each), the www name that
    redirects to the domain (None unless asked for), and every name, which the certificate
    covers."""
    main = list(dict.fromkeys([domain, *aliases]))
    hosts = list(dict.fromkeys(r["host"] for r in routes if r.get("host") and r["host"] not in main))
    www = f"www.{domain}" if www_redirect and f"www.{domain}" not in main + hosts else None
    return {"main": main, "hosts": hosts, "www": www, "all": main + hosts + ([www] if www else [])}


def nginx_main_host(routes: Iterable[Mapping], main: Iterable[str]) -> list[dict]:
    """The routes with a host that is one of the platform's own names served as the platform's."""
    main = set(main)
    return [{**route, "host": None} if route.get("host") in main else dict(route) for route in routes]


def nginx_cache_wanted(routes: Iterable[Mapping]) -> bool:
    """Whether any location caches: the cache zone is declared only then."""
    return any(route["cache"] for route in routes)


class FilterModule:
    """The nginx site planning filters."""

    def filters(self):
        return {
            "nginx_upstreams": nginx_upstreams,
            "nginx_routes": nginx_routes,
            "nginx_rate_zones": nginx_rate_zones,
            "nginx_cache_wanted": nginx_cache_wanted,
            "nginx_server_names": nginx_server_names,
            "nginx_static": nginx_static,
            "nginx_main_host": nginx_main_host,
        }
