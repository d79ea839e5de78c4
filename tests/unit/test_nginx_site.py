"""The nginx site template (roles/nginx/templates/platform.conf.j2) rendered through
Ansible's own templating with the role's defaults and the plan of tests/unit/test_nginx_plan.py:
what each route's options become. The edge scenario checks the same site with nginx itself."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "nginx"
_spec = importlib.util.spec_from_file_location("nginx_plan", ROLE.parents[1] / "plugins" / "filter" / "nginx_plan.py")
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)


def render(apps: list[dict], **settings) -> str:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    settings = {**defaults, **settings}
    zones = plan.nginx_rate_zones(settings["nginx_rate_limits"])
    routes = plan.nginx_routes(apps, zones, "api")
    names = plan.nginx_server_names("ai.example.com", settings.pop("aliases", []), routes,
                                    settings["nginx_www_redirect"])
    variables = {
        **settings, "ansible_managed": "managed", "platform_domain": "ai.example.com", "__nginx_names": names,
        "__nginx_routes": plan.nginx_main_host(routes, names["main"]), "__nginx_rate_zones": zones,
        "__nginx_cache_wanted": plan.nginx_cache_wanted(routes), "__nginx_static": plan.nginx_static(apps),
        "__nginx_upstreams": [{"name": app["name"], "servers": ["127.0.0.1:8000"]} for app in apps],
        "__nginx_http2_directive": True, "__nginx_ssl_reject_handshake": True, "__nginx_hsts": True,
        "__nginx_certificate_path": "/etc/nginx/tls/site.crt", "__nginx_private_key_path": "/etc/nginx/tls/site.key",
        "__nginx_acme_webroot": "/var/www/acme",
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template((ROLE / "templates" / "platform.conf.j2").read_text()))


def location(site: str, path: str) -> str:
    match = re.search(rf"^    location {re.escape(path)} \{{\n(.*?)^    \}}", site, re.MULTILINE | re.DOTALL)
    assert match, f"no location {path}"
    return match.group(1)


BACKEND = {"name": "backend", "port": 3001, "routes": [
    {"path": "/api/", "strip_prefix": True, "body_size": "10m", "timeout": 30, "cache": 60},
    {"path": "/socket.io/", "websocket": True, "rate_limit": "none"},
    {"path": "/stream/"},
]}


def test_only_a_websocket_route_passes_the_upgrade_with_every_header_and_a_long_timeout():
    site = render([BACKEND])
    socket = location(site, "/socket.io/")
    for header in ("Host $host", "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme",
                   "Upgrade $http_upgrade", "Connection $connection_upgrade"):
        assert f"proxy_set_header {header};" in socket, socket
    assert "proxy_read_timeout 3600s;" in socket
    assert "Upgrade" not in location(site, "/stream/")
    server_level = site.split("proxy_http_version 1.1;", 1)[1].split("location", 1)[0]
    assert 'proxy_set_header Connection "";' in server_level and "$http_upgrade;" not in server_level


def test_a_cached_route_buffers_and_never_caches_a_login_or_a_cookie():
    site = render([BACKEND])
    api = location(site, "/api/")
    assert "proxy_cache platform_cache;" in api and "proxy_cache_valid 200 60s;" in api
    assert "proxy_cache_bypass $http_authorization $http_cookie;" in api
    assert "proxy_no_cache $http_authorization $http_cookie;" in api
    assert "proxy_buffering on;" in api and "client_max_body_size 10m;" in api and "proxy_read_timeout 30s;" in api
    assert "proxy_cache_path /var/cache/nginx/platform " in site
    assert "proxy_cache" not in location(site, "/stream/")
    assert "proxy_cache_path" not in render([{**BACKEND, "routes": BACKEND["routes"][1:]}])


@pytest.mark.parametrize(("preload", "header"), [
    (False, '"max-age=63072000; includeSubDomains"'), (True, '"max-age=63072000; includeSubDomains; preload"')])
def test_hsts_preload_is_a_setting(preload, header):
    assert f"add_header Strict-Transport-Security {header} always;" in render([BACKEND], nginx_hsts_preload=preload)


def server(site: str, names: str) -> str:
    match = re.search(rf"^server {{\n    listen 443 ssl;\n.*?server_name {re.escape(names)};\n(.*?)^}}", site,
                      re.MULTILINE | re.DOTALL)
    assert match, f"no server {names}"
    return match.group(1)


def test_each_name_has_its_server_with_the_platform_s_settings():
    admin = {"name": "admin", "port": 8001, "routes": [{"path": "/", "host": "admin.example.com"}]}
    site = render([BACKEND, admin], aliases=["app.example.com"], nginx_www_redirect=True)
    main = server(site, "ai.example.com app.example.com")
    assert "location /api/ {" in main and "location / {" not in main
    admin_server = server(site, "admin.example.com")
    assert "location / {" in admin_server and "proxy_pass http://admin;" in admin_server
    assert "location /api/" not in admin_server
    for block in (main, admin_server):
        assert 'add_header X-Content-Type-Options "nosniff" always;' in block
        assert "limit_conn connections_per_client" in block
    www = server(site, "www.ai.example.com")
    assert "return 301 https://ai.example.com$request_uri;" in www
    assert "server_name ai.example.com app.example.com admin.example.com www.ai.example.com;" in site  # port 80


def test_static_files_are_served_by_nginx_with_expiry_and_the_site_s_headers():
    web = {"name": "web", "port": 3000, "route": {"path": "/"},
           "static": [{"path": "/static/", "folder": "/srv/web/static", "expires": "30d"}]}
    site = render([web])
    static = location(site, "/static/")
    assert "alias /srv/web/static/;" in static and "expires 30d;" in static
    assert "add_header" not in static, "an add_header here would drop the server's security headers"


def test_an_hourly_zone_is_a_burst_refilled_per_minute():
    zones = {"api": {"rate": "10r/s", "burst": 20}, "signup": {"rate": "100r/h"}}
    app = {"name": "backend", "port": 3001, "routes": [{"path": "/signup/", "rate_limit": "signup"}]}
    site = render([app], nginx_rate_limits=zones)
    assert "limit_req_zone $binary_remote_addr zone=signup:10m rate=2r/m;" in site
    assert "limit_req zone=signup burst=99 nodelay;" in location(site, "/signup/")
