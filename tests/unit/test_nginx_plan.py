"""The nginx role's site plan (plugins/filter/nginx_plan.py), on the data the role hands it:
platform_apps, the inventory's groups and hostvars, and the rate-limit settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "nginx_plan.py"
_spec = importlib.util.spec_from_file_location("nginx_plan", _PLUGIN)
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)

RATE_LIMITS = {"api": {"rate": "10r/s", "burst": 20}, "auth": {"rate": "2r/s", "burst": 5}}
HOSTVARS = {
    "edge": {"ansible_host": "10.0.0.31"},
    "published": {"ansible_host": "10.0.0.11", "app_publish_address": "192.168.1.11"},
    "addressed": {"ansible_host": "10.0.0.12"},
    "named": {},
}
GROUPS = {"edge": ["edge"]}
API = {"name": "api", "port": 8000, "replicas": 2, "healthcheck": {"path": "/health"},
       "route": {"path": "/api/", "strip_prefix": True}}
WEB = {"name": "web", "port": 3000, "host_port": 3010, "route": {"path": "/", "rate_limit": "none"}}
WORKER = {"name": "worker", "replicas": 3}


# What a route is when it asks for nothing more.
PLAIN = {"host": None, "websocket": False, "buffering": False, "body_size": None, "timeout": None, "cache": 0}


def route(app: dict, **changes) -> dict:
    return plan.nginx_routes([{**app, **changes}], RATE_LIMITS, "api")[0]


# nginx_app_host_address


def test_an_app_host_is_reached_at_its_publish_address_even_when_it_is_this_host():
    assert plan.nginx_app_host_address("published", HOSTVARS, "edge", GROUPS) == "192.168.1.11"
    assert plan.nginx_app_host_address("published", HOSTVARS, "published", GROUPS) == "192.168.1.11"


def test_an_app_host_that_is_the_only_edge_host_is_reached_on_loopback():
    groups = {"edge": ["addressed"]}
    assert plan.nginx_app_host_address("addressed", HOSTVARS, "addressed", groups) == "127.0.0.1"


def test_an_app_host_with_an_edge_host_elsewhere_is_reached_at_its_address_from_every_edge_host():
    """Also from itself, when it is an edge host too: it publishes on that address only."""
    groups = {"edge": ["edge", "addressed"]}
    assert plan.nginx_app_host_address("addressed", HOSTVARS, "edge", groups) == "10.0.0.12"
    assert plan.nginx_app_host_address("addressed", HOSTVARS, "addressed", groups) == "10.0.0.12"


def test_an_app_host_without_a_known_address_is_reached_by_its_name():
    assert plan.nginx_app_host_address("named", HOSTVARS, "edge", GROUPS) == "named"
    with_facts = {**HOSTVARS, "named": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.13"}}}}
    assert plan.nginx_app_host_address("named", with_facts, "edge", GROUPS) == "10.0.0.13"


# nginx_upstreams


def on(hosts: list[str], *apps: dict) -> dict[str, list[str]]:
    """Every app on these hosts, as app_plan's app_hosts_by_name gives them."""
    return {app["name"]: hosts for app in apps}


def test_one_upstream_per_routed_app_with_every_replica_of_every_app_host_host_by_host():
    hosts = on(["published", "addressed", "named"], API, WORKER, WEB)
    assert plan.nginx_upstreams([API, WORKER, WEB], hosts, HOSTVARS, "edge", GROUPS) == [
        {"name": "api", "servers": ["192.168.1.11:8000", "192.168.1.11:8001", "10.0.0.12:8000", "10.0.0.12:8001",
                                    "named:8000", "named:8001"]},
        {"name": "web", "servers": ["192.168.1.11:3010", "10.0.0.12:3010", "named:3010"]},
    ]


def test_a_single_node_upstream_is_on_loopback():
    assert plan.nginx_upstreams([API], on(["edge"], API), HOSTVARS, "edge", GROUPS) == [
        {"name": "api", "servers": ["127.0.0.1:8000", "127.0.0.1:8001"]},
    ]


def test_without_app_hosts_or_replicas_an_upstream_has_no_servers():
    assert plan.nginx_upstreams([API], on([], API), HOSTVARS, "edge", GROUPS) == [{"name": "api", "servers": []}]
    no_replica = plan.nginx_upstreams([{**API, "replicas": 0}], on(["edge"], API), HOSTVARS, "edge", GROUPS)
    assert no_replica[0]["servers"] == []


def test_each_app_s_upstream_has_only_the_hosts_that_run_it():
    hosts = {"api": ["published"], "web": ["addressed", "named"]}
    assert plan.nginx_upstreams([API, WEB], hosts, HOSTVARS, "edge", GROUPS) == [
        {"name": "api", "servers": ["192.168.1.11:8000", "192.168.1.11:8001"]},
        {"name": "web", "servers": ["10.0.0.12:3010", "named:3010"]},
    ]


def test_a_host_port_alone_sets_the_servers_ports():
    app = {"name": "odd", "host_port": 9000, "replicas": 2, "route": {"path": "/odd/"}}
    assert plan.nginx_upstreams([app], on(["edge"], app), HOSTVARS, "edge", GROUPS)[0]["servers"] == [
        "127.0.0.1:9000", "127.0.0.1:9001",
    ]


def test_no_routed_apps_no_upstreams():
    assert plan.nginx_upstreams([WORKER], on(["edge"], WORKER), HOSTVARS, "edge", GROUPS) == []
    assert plan.nginx_routes([WORKER], RATE_LIMITS, "api") == []


# nginx_routes


def test_a_stripped_prefix_proxies_to_the_upstream_root_and_routes_the_health_path_under_it():
    assert route(API) == {
        "app": "api",
        "path": "/api/",
        "proxy_pass": "http://api/",
        "rate_limit": {"zone": "api", "burst": 20},
        "health": {"path": "/api/health", "proxy_pass": "http://api/health"},
        **PLAIN,
    }


@pytest.mark.parametrize(("path", "health_location"), [
    ("/api/", "/api/health"),
    ("/api", "/api/health"),
    ("/", "/health"),
    ("/a//", "/a//health"),  # only one slash is dropped
])
def test_the_health_location_of_a_stripped_route_with_and_without_a_trailing_slash(path, health_location):
    stripped = route(API, route={"path": path, "strip_prefix": True})
    assert stripped["path"] == path
    assert stripped["health"]["path"] == health_location


@pytest.mark.parametrize("api_route", [{"path": "/api/"}, {"path": "/api/", "strip_prefix": False}])
def test_without_strip_prefix_the_request_passes_unchanged(api_route):
    assert route(API, route=api_route) == {
        "app": "api", "path": "/api/", "proxy_pass": "http://api", "rate_limit": {"zone": "api", "burst": 20},
        "health": None, **PLAIN,
    }


def test_without_strip_prefix_the_health_path_is_routed_only_when_the_route_holds_it():
    held = route(API, healthcheck={"path": "/api/health/"}, route={"path": "/api/"})
    assert held["health"] == {"path": "/api/health/", "proxy_pass": "http://api/api/health/"}
    assert route(API, route={"path": "/api/"})["health"] is None
    assert route(API, route={"path": "/"})["health"] == {"path": "/health", "proxy_pass": "http://api/health"}


def test_the_health_location_is_the_readiness_path_the_platform_probes():
    checks = {"path": "/health", "readiness": "/ready", "liveness": "/live"}
    assert route(API, healthcheck=checks, route={"path": "/"})["health"] == {"path": "/ready",
                                                                               "proxy_pass": "http://api/ready"}
    assert route(API, healthcheck={"liveness": "/live"}, route={"path": "/"})["health"] is None


@pytest.mark.parametrize("healthcheck", [None, {}, {"docker": {"test": ["CMD", "true"]}}])
def test_no_health_location_without_a_healthcheck_path(healthcheck):
    assert route(API, healthcheck=healthcheck)["health"] is None
    assert route(API, healthcheck=healthcheck, route={"path": "/"})["health"] is None


def test_a_route_picks_its_zone_else_the_default_and_none_turns_the_limit_off():
    assert route(API, route={"path": "/", "rate_limit": "auth"})["rate_limit"] == {"zone": "auth", "burst": 5}
    assert route(WEB)["rate_limit"] is None
    assert plan.nginx_routes([API], RATE_LIMITS, "none")[0]["rate_limit"] is None
    assert plan.nginx_routes([API], RATE_LIMITS, "auth")[0]["rate_limit"] == {"zone": "auth", "burst": 5}


def test_an_unknown_zone_fails():
    with pytest.raises(KeyError):
        route(API, route={"path": "/", "rate_limit": "nosuchzone"})


def test_routes_keep_the_order_of_the_apps():
    assert [r["app"] for r in plan.nginx_routes([WEB, WORKER, API], RATE_LIMITS, "api")] == ["web", "api"]


def test_several_routes_of_one_app_each_with_its_options():
    """Prompt Card's backend: its API, and Socket.IO's WebSocket beside it; the health
    location goes with the first route that can carry it."""
    backend = {**API, "route": None, "routes": [
        {"path": "/api/", "strip_prefix": True, "body_size": "10m", "timeout": 30, "cache": 60},
        {"path": "/socket.io/", "websocket": True, "rate_limit": "none"},
        {"path": "/stream/", "strip_prefix": True, "buffering": True},
    ]}
    api, socket, stream = plan.nginx_routes([backend], RATE_LIMITS, "api")
    assert api == {"app": "api", "host": None, "path": "/api/", "proxy_pass": "http://api/",
                   "rate_limit": {"zone": "api", "burst": 20}, "health": {"path": "/api/health", "proxy_pass": "http://api/health"},
                   "websocket": False, "buffering": True, "body_size": "10m", "timeout": 30, "cache": 60}
    assert socket == {"app": "api", "path": "/socket.io/", "proxy_pass": "http://api", "rate_limit": None,
                      "health": None, **{**PLAIN, "websocket": True}}
    assert stream["health"] is None and stream["buffering"] is True
    assert plan.nginx_cache_wanted([api, socket]) and not plan.nginx_cache_wanted([socket, stream])
    upstreams = plan.nginx_upstreams([backend], on(["edge"], backend), HOSTVARS, "edge", GROUPS)
    assert [u["name"] for u in upstreams] == ["api"]


def test_the_site_s_names_and_which_server_serves_a_route():
    routes = plan.nginx_routes([{**API, "route": None, "routes": [
        {"path": "/api/"}, {"path": "/", "host": "admin.example.com"}, {"path": "/x/", "host": "ai.example.com"},
        {"path": "/y/", "host": "admin.example.com"}]}], RATE_LIMITS, "api")
    names = plan.nginx_server_names("ai.example.com", ["app.example.com"], routes, www_redirect=True)
    assert names == {"main": ["ai.example.com", "app.example.com"], "hosts": ["admin.example.com"],
                     "www": "www.ai.example.com",
                     "all": ["ai.example.com", "app.example.com", "admin.example.com", "www.ai.example.com"]}
    # A route on one of the platform's own names is the platform's.
    assert [r["host"] for r in plan.nginx_main_host(routes, names["main"])] == [
        None, "admin.example.com", None, "admin.example.com"]
    assert plan.nginx_server_names("ai.example.com", [], [], www_redirect=False) == {
        "main": ["ai.example.com"], "hosts": [], "www": None, "all": ["ai.example.com"]}


def test_the_plugin_exposes_every_filter():
    assert set(plan.FilterModule().filters()) == {"nginx_upstreams", "nginx_routes", "nginx_cache_wanted",
                                                  "nginx_server_names", "nginx_main_host", "nginx_static",
                                                  "nginx_rate_zones"}


def test_static_folders_with_their_expiry():
    app = {"name": "web", "static": [{"path": "/static/", "folder": "/srv/web/static"},
                                     {"path": "/media/", "folder": "/srv/web/media/", "expires": "30d"}]}
    assert plan.nginx_static([app, WORKER]) == [
        {"app": "web", "path": "/static/", "folder": "/srv/web/static/", "expires": "7d"},
        {"app": "web", "path": "/media/", "folder": "/srv/web/media/", "expires": "30d"}]


# nginx_rate_zones


@pytest.mark.parametrize(("limit", "zone"), [
    ({"rate": "10r/s", "burst": 20}, {"rate": "10r/s", "burst": 20}),
    ({"rate": "30r/m"}, {"rate": "30r/m", "burst": 0}),
    # Seed 000's 100 requests an hour: all at once, then refilled at 100/60 a minute, rounded up.
    ({"rate": "100r/h"}, {"rate": "2r/m", "burst": 99}),
    ({"rate": "60r/h", "burst": 10}, {"rate": "1r/m", "burst": 10}),
    ({"rate": "1000r/d"}, {"rate": "1r/m", "burst": 999}),
    ({"rate": "3000r/d"}, {"rate": "3r/m", "burst": 2999}),
])
def test_rate_zones_as_nginx_takes_them(limit, zone):
    assert plan.nginx_rate_zones({"z": limit}) == {"z": zone}


@pytest.mark.parametrize("rate", ["10", "10r/w", "0r/s", "1.5r/s", "r/s"])
def test_a_rate_nginx_cannot_count_is_refused(rate):
    with pytest.raises(ValueError, match="is not N r/s, r/m, r/h or r/d"):
        plan.nginx_rate_zones({"z": {"rate": rate}})
