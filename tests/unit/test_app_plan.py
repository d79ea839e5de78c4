"""The app role's planning (plugins/filter/app_plan.py), on the data the role hands it: the
inventory's groups and hostvars, platform_apps, platform_secrets and docker_host_info's containers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jinja2
import pytest

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "app_plan.py"
_spec = importlib.util.spec_from_file_location("app_plan", _PLUGIN)
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)

GATEWAY = "172.31.0.1"
GROUPS = {"all": ["app1", "db1", "db2", "gpu1"], "postgres": ["db1", "db2"], "redis": [], "ollama": ["gpu1"]}
HOSTVARS = {
    "app1": {"ansible_host": "10.0.0.1"},
    "db1": {"ansible_host": "10.0.0.21", "postgresql_port": 5433},
    "db2": {"ansible_host": "10.0.0.22"},
    "gpu1": {},
}


# app_service_host, app_service_address, app_service_port


def test_the_service_host_is_the_first_of_its_group():
    assert plan.app_service_host(GROUPS, "postgres") == "db1"
    assert plan.app_service_host(GROUPS, "ollama") == "gpu1"


def test_a_missing_or_empty_service_group_gives_no_host():
    assert plan.app_service_host(GROUPS, "redis") == ""
    assert plan.app_service_host(GROUPS, "nosuchgroup") == ""


def test_a_service_on_this_host_is_reached_at_the_platform_network_gateway():
    assert plan.app_service_address("db1", "db1", HOSTVARS, GATEWAY) == GATEWAY


def test_a_service_on_another_host_is_reached_at_its_ansible_host_else_its_name():
    assert plan.app_service_address("db1", "app1", HOSTVARS, GATEWAY) == "10.0.0.21"
    assert plan.app_service_address("gpu1", "app1", HOSTVARS, GATEWAY) == "gpu1"


def test_no_service_host_gives_no_address():
    assert plan.app_service_address("", "app1", HOSTVARS, GATEWAY) == ""


def test_the_service_host_sets_its_own_port_else_the_default_applies():
    assert plan.app_service_port("db1", HOSTVARS, "postgresql_port", 5432) == 5433
    assert plan.app_service_port("db2", HOSTVARS, "postgresql_port", 5432) == 5432
    assert plan.app_service_port("", HOSTVARS, "postgresql_port", 5432) == 5432


def test_another_host_s_port_setting_does_not_count():
    # db1 sets postgresql_port; its redis_port is not set, whatever other hosts say.
    hostvars = {**HOSTVARS, "db2": {"redis_port": 6390}}
    assert plan.app_service_port("db1", hostvars, "redis_port", 6379) == 6379


# app_service_url

PASSWORDS = ["letters0123", "p/ss w@rd:%+&?#", "é~_.-", "a//b", "=+/", ""]


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_password_is_encoded_as_the_jinja_urlencode_with_slashes_did(password):
    jinja = jinja2.Environment(autoescape=True).from_string("{{ password | urlencode | replace('/', '%2F') }}")
    url = plan.app_service_url("postgresql", "db", 5432, "app", user="user", password=password)
    assert url == f"postgresql://user:{jinja.render(password=password)}@db:5432/app"


@pytest.mark.parametrize(("endpoint", "credentials", "url"), [
    (("postgresql", "10.0.0.21", 5433, "platform"), ("platform", "p/w d"),
     "postgresql://platform:p%2Fw%20d@10.0.0.21:5433/platform"),
    (("redis", GATEWAY, 6379, 0), ("platform", "r@s"), f"redis://platform:r%40s@{GATEWAY}:6379/0"),
    (("http", "gpu1", 11434), None, "http://gpu1:11434"),
    # A non-string password is encoded as its text; an empty user still gives credentials.
    (("redis", "r", 6379, 0), ("u", 12345), "redis://u:12345@r:6379/0"),
    (("redis", "r", "6380", 1), ("", "pw"), "redis://:pw@r:6380/1"),
])
def test_service_urls(endpoint, credentials, url):
    user, password = credentials or (None, None)
    assert plan.app_service_url(*endpoint, user=user, password=password) == url


# app_environment

SECRETS = {"JWT_SECRET": "jwt", "API_KEY": 12345, "UNUSED": "x"}
SERVICE_URLS = {
    "postgres": {"DATABASE_URL": "postgresql://u:p@db:5432/d"},
    "redis": {"REDIS_URL": "redis://u:p@r:6379/0"},
    "ollama": {"OLLAMA_BASE_URL": "http://o:11434"},
}


def test_an_app_without_env_secrets_or_uses_gets_an_empty_environment():
    assert plan.app_environment({"name": "a"}, SECRETS, SERVICE_URLS) == {}


def test_env_then_secrets_then_service_urls_in_that_order():
    app = {"name": "a", "env": {"LOG_LEVEL": "info"}, "secret_env": ["JWT_SECRET"], "uses": ["redis", "postgres"]}
    environment = plan.app_environment(app, SECRETS, SERVICE_URLS)
    assert list(environment.items()) == [
        ("LOG_LEVEL", "info"),
        ("JWT_SECRET", "jwt"),
        ("REDIS_URL", "redis://u:p@r:6379/0"),
        ("DATABASE_URL", "postgresql://u:p@db:5432/d"),
    ]


def test_a_secret_overrides_env_and_a_service_url_overrides_both_in_place():
    app = {
        "name": "a",
        "env": {"DATABASE_URL": "from env", "JWT_SECRET": "from env", "KEPT": "yes"},
        "secret_env": ["JWT_SECRET"],
        "uses": ["postgres"],
    }
    environment = plan.app_environment(app, SECRETS, SERVICE_URLS)
    assert list(environment.items()) == [
        ("DATABASE_URL", "postgresql://u:p@db:5432/d"), ("JWT_SECRET", "jwt"), ("KEPT", "yes"),
    ]


def test_only_the_services_an_app_uses_are_read():
    # The others' URLs are never built: their passwords need not be there.
    class OnlyRedis(dict):
        def __getitem__(self, service):
            assert service == "redis"
            return super().__getitem__(service)

    app = {"name": "a", "uses": ["redis"]}
    assert plan.app_environment(app, SECRETS, OnlyRedis(SERVICE_URLS)) == {"REDIS_URL": "redis://u:p@r:6379/0"}


def test_every_value_becomes_a_string():
    app = {
        "name": "a",
        "env": {"INT": 1, "BOOL": True, "FLOAT": 1.5, "NONE": None, "LIST": ["a", 1], "TEXT": "t"},
        "secret_env": ["API_KEY"],
    }
    assert plan.app_environment(app, SECRETS, SERVICE_URLS) == {
        "INT": "1", "BOOL": "True", "FLOAT": "1.5", "NONE": "None", "LIST": "['a', 1]", "TEXT": "t", "API_KEY": "12345",
    }


def test_an_unknown_secret_name_fails():
    # main.yml's declaration check names it first.
    with pytest.raises(KeyError):
        plan.app_environment({"name": "a", "secret_env": ["NOPE"]}, SECRETS, SERVICE_URLS)


# app_replicas, app_health_urls

ADDRESS = "127.0.0.1"


def test_one_replica_by_default_publishing_its_port():
    assert plan.app_replicas({"name": "api", "port": 8000}, ADDRESS) == [
        {"number": 1, "name": "api-1", "host_port": 8000, "published_ports": ["127.0.0.1:8000:8000"]},
    ]


def test_replica_n_publishes_the_port_plus_n_minus_one():
    replicas = plan.app_replicas({"name": "api", "port": 8000, "replicas": 3}, "10.0.0.1")
    assert [r["name"] for r in replicas] == ["api-1", "api-2", "api-3"]
    assert [r["published_ports"] for r in replicas] == [
        ["10.0.0.1:8000:8000"], ["10.0.0.1:8001:8000"], ["10.0.0.1:8002:8000"],
    ]


def test_replicas_with_a_host_port_publish_from_it_to_the_container_port():
    replicas = plan.app_replicas({"name": "pwa", "port": 3000, "host_port": 3010, "replicas": 2}, ADDRESS)
    assert [(r["host_port"], r["published_ports"]) for r in replicas] == [
        (3010, ["127.0.0.1:3010:3000"]), (3011, ["127.0.0.1:3011:3000"]),
    ]


def test_a_worker_without_a_port_publishes_nothing():
    assert plan.app_replicas({"name": "worker", "replicas": 2}, ADDRESS) == [
        {"number": 1, "name": "worker-1"}, {"number": 2, "name": "worker-2"},
    ]


def test_a_host_port_without_a_port_publishes_nothing():
    replicas = plan.app_replicas({"name": "w", "host_port": 9000}, ADDRESS)
    assert replicas == [{"number": 1, "name": "w-1", "host_port": 9000}]


def test_zero_replicas_give_none():
    assert plan.app_replicas({"name": "api", "port": 8000, "replicas": 0}, ADDRESS) == []


def test_a_healthcheck_path_gives_each_replica_a_health_url():
    app = {"name": "api", "port": 8000, "host_port": 8100, "replicas": 2, "healthcheck": {"path": "/health"}}
    assert [r["health_url"] for r in plan.app_replicas(app, "10.0.0.1")] == [
        "http://10.0.0.1:8100/health", "http://10.0.0.1:8101/health",
    ]


@pytest.mark.parametrize("healthcheck", [None, {}, {"docker": {"test": ["CMD", "true"]}}])
def test_no_health_url_without_a_healthcheck_path(healthcheck):
    app = {"name": "api", "port": 8000, "healthcheck": healthcheck}
    assert "health_url" not in plan.app_replicas(app, ADDRESS)[0]


def test_a_healthcheck_path_without_a_port_is_refused():
    # main.yml's declaration check refuses it first.
    with pytest.raises(ValueError, match="needs a port"):
        plan.app_replicas({"name": "w", "healthcheck": {"path": "/health"}}, ADDRESS)


APPS = [
    {"name": "frontend", "port": 3000, "route": {"path": "/"}},
    {"name": "api", "port": 8000, "replicas": 2, "healthcheck": {"path": "/health"}},
    {"name": "worker", "replicas": 2},
    {"name": "pwa", "port": 3000, "host_port": 3010, "healthcheck": {"path": "/ready", "docker": {}}},
]


def test_health_urls_are_those_of_every_replica_of_apps_with_a_healthcheck_path_in_order():
    assert plan.app_health_urls(APPS, ADDRESS) == [
        "http://127.0.0.1:8000/health", "http://127.0.0.1:8001/health", "http://127.0.0.1:3010/ready",
    ]


def test_no_apps_no_health_urls():
    assert plan.app_health_urls([], ADDRESS) == []


# app_containers_not_declared, app_replicas_missing


def test_containers_of_removed_apps_and_surplus_replicas_are_not_declared():
    names = ["frontend-1", "api-1", "api-2", "api-3", "worker-3", "old-app-1", "worker-1"]
    assert plan.app_containers_not_declared(names, APPS) == ["api-3", "worker-3", "old-app-1"]


def test_a_replica_number_is_read_as_a_number():
    assert plan.app_containers_not_declared(["api-02", "api-003", "frontend-01"], APPS) == ["api-003"]


def test_a_name_without_a_replica_number_is_kept_only_when_it_names_an_app():
    assert plan.app_containers_not_declared(["api", "frontend", "pre-deploy"], APPS) == ["pre-deploy"]


def test_an_app_name_ending_in_a_number_is_told_apart_from_its_replica_number():
    apps = [{"name": "web-2", "replicas": 1}, {"name": "api2"}]
    assert plan.app_containers_not_declared(["web-2-1", "web-2-2", "api2-1", "web-1"], apps) == ["web-2-2", "web-1"]


def test_the_first_declaration_of_an_app_name_counts():
    apps = [{"name": "api", "replicas": 1}, {"name": "api", "replicas": 5}]
    assert plan.app_containers_not_declared(["api-2"], apps) == ["api-2"]


def test_nothing_is_undeclared_when_nothing_runs():
    assert plan.app_containers_not_declared([], APPS) == []


def test_missing_replicas_in_app_and_replica_order():
    running = ["api-2", "frontend-1", "worker-1", "old-app-1"]
    assert plan.app_replicas_missing(APPS, running) == ["api-1", "worker-2", "pwa-1"]


def test_a_replica_number_written_otherwise_is_not_that_replica():
    assert plan.app_replicas_missing([{"name": "api"}], ["api-01", "/api-1"]) == ["api-1"]


def test_nothing_is_missing_when_every_replica_runs():
    running = ["frontend-1", "api-1", "api-2", "worker-1", "worker-2", "pwa-1"]
    assert plan.app_replicas_missing(APPS, running) == []


def test_the_plugin_exposes_every_filter():
    assert set(plan.FilterModule().filters()) == {
        "app_service_host", "app_service_address", "app_service_port", "app_service_url", "app_environment",
        "app_replicas", "app_health_urls", "app_containers_not_declared",
        "app_replicas_missing", "app_device_requests", "app_hosts", "app_hosts_by_name", "app_services_here",
        "app_jobs_here", "app_systemd_arguments", "app_environment_of_container", "app_numeric_user",
        "app_liveness_checks", "app_probe_paths", "app_images", "app_postgres_tls", "app_redis_tls",
        "app_probe_command", "app_publish_address", "app_edge_allowances",
    }


# app_device_requests


@pytest.mark.parametrize(("app", "requests"), [
    ({"name": "a"}, []),
    ({"name": "a", "resources": {"memory": "1g"}}, []),
    ({"name": "a", "gpus": "all"}, [{"driver": "nvidia", "capabilities": [["gpu"]], "count": -1}]),
    ({"name": "a", "resources": {"gpus": 1}}, [{"driver": "nvidia", "capabilities": [["gpu"]], "count": 1}]),
    ({"name": "a", "resources": {"gpu_devices": [0, "GPU-3a5b"]}},
     [{"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["0", "GPU-3a5b"]}]),
])
def test_gpus_are_requested_all_by_number_or_by_device(app, requests):
    assert plan.app_device_requests(app) == requests


# app_hosts, app_services_here, app_jobs_here

PLACES = {"all": ["gpu1", "cpu1", "cpu2", "db1"], "app": ["gpu1", "cpu1", "cpu2"], "gpu": ["gpu1"],
          "postgres": ["db1"]}


@pytest.mark.parametrize(("app", "hosts"), [
    ({"name": "web"}, ["gpu1", "cpu1", "cpu2"]),
    ({"name": "whisper", "hosts": ["gpu"]}, ["gpu1"]),
    ({"name": "api", "hosts": ["cpu2", "cpu1"]}, ["cpu1", "cpu2"]),  # in the app group's order
    ({"name": "api", "hosts": ["gpu", "cpu2"]}, ["gpu1", "cpu2"]),
    ({"name": "beat", "singleton": True}, ["gpu1"]),
    ({"name": "beat", "singleton": True, "hosts": ["cpu2", "cpu1"]}, ["cpu1"]),
    ({"name": "nightly", "schedule": "daily"}, ["gpu1"]),
    ({"name": "api", "hosts": ["db1"]}, []),  # not an app host
    ({"name": "api", "hosts": ["nosuch"]}, []),
])
def test_the_hosts_an_app_runs_on(app, hosts):
    assert plan.app_hosts(app, PLACES) == hosts


def test_services_and_jobs_of_a_host():
    apps = [{"name": "web"}, {"name": "whisper", "hosts": ["gpu"]}, {"name": "nightly", "schedule": "daily"}]
    assert [a["name"] for a in plan.app_services_here(apps, PLACES, "gpu1")] == ["web", "whisper"]
    assert [a["name"] for a in plan.app_services_here(apps, PLACES, "cpu1")] == ["web"]
    assert [a["name"] for a in plan.app_jobs_here(apps, PLACES, "gpu1")] == ["nightly"]
    assert plan.app_jobs_here(apps, PLACES, "cpu1") == []
    assert plan.app_hosts_by_name(apps, PLACES) == {"web": ["gpu1", "cpu1", "cpu2"], "whisper": ["gpu1"],
                                                    "nightly": ["gpu1"]}


def test_systemd_arguments_keep_what_systemd_would_expand():
    assert plan.app_systemd_arguments(["python3", "-c", "print('50% of $HOME')", 'say "hi"', "a\\b"]) == (
        '"python3" "-c" "print(\'50%% of $$HOME\')" "say \\"hi\\"" "a\\\\b"')


def test_a_container_s_environment_becomes_a_mapping_again():
    assert plan.app_environment_of_container(["A=1", "URL=postgresql://u:p=w@h/db", "EMPTY=", "BARE"]) == {
        "A": "1", "URL": "postgresql://u:p=w@h/db", "EMPTY": "", "BARE": ""}


@pytest.mark.parametrize(("user", "owner"), [
    (None, {"owner": "root", "group": "root"}), ("1000:1001", {"owner": "1000", "group": "1001"}),
    ("65534", {"owner": "65534", "group": "65534"}), ("node", {"owner": "root", "group": "root"}),
    ("node:1000", {"owner": "root", "group": "1000"}),
])
def test_the_owner_of_an_app_s_folders_on_the_host(user, owner):
    assert plan.app_numeric_user({"name": "a"} if user is None else {"name": "a", "user": user}) == owner


# Readiness and liveness (app_probe_paths, app_liveness_checks)


def test_readiness_and_liveness_paths_each_give_their_own_url():
    app = {"name": "api", "port": 8000, "replicas": 2,
           "healthcheck": {"path": "/health", "readiness": "/ready", "liveness": "/live"}}
    replicas = plan.app_replicas(app, ADDRESS)
    assert [(r["health_url"], r["liveness_url"]) for r in replicas] == [
        ("http://127.0.0.1:8000/ready", "http://127.0.0.1:8000/live"),
        ("http://127.0.0.1:8001/ready", "http://127.0.0.1:8001/live"),
    ]


def test_the_one_path_is_both_readiness_and_liveness():
    assert plan.app_probe_paths({"healthcheck": {"path": "/health"}}) == {"readiness": "/health", "liveness": "/health"}
    assert plan.app_probe_paths({"healthcheck": {"liveness": "/live"}}) == {"liveness": "/live"}
    assert plan.app_probe_paths({"healthcheck": {"docker": {}}}) == {}


def test_a_liveness_path_without_a_port_is_refused():
    with pytest.raises(ValueError, match="needs a port"):
        plan.app_replicas({"name": "w", "healthcheck": {"liveness": "/live"}}, ADDRESS)


def test_liveness_checks_are_each_replica_with_a_liveness_path_and_its_timing():
    apps = [
        {"name": "api", "port": 8000, "replicas": 2, "healthcheck": {"readiness": "/ready", "liveness": "/live",
                                                                     "interval": 2, "failures": 5}},
        {"name": "web", "port": 3000, "healthcheck": {"readiness": "/ready"}},
        {"name": "worker"},
        {"name": "admin", "port": 9000, "healthcheck": {"path": "/health", "start_period": 0}},
    ]
    assert plan.app_liveness_checks(apps, ADDRESS) == [
        {"container": "api-1", "url": "http://127.0.0.1:8000/live", "interval": 2, "failures": 5, "start_period": 30},
        {"container": "api-2", "url": "http://127.0.0.1:8001/live", "interval": 2, "failures": 5, "start_period": 30},
        {"container": "admin-1", "url": "http://127.0.0.1:9000/health", "interval": 10, "failures": 3,
         "start_period": 0},
    ]


def test_each_image_is_loaded_or_pulled_once_from_the_first_archive_given():
    apps = [
        {"name": "backend", "image": "acme/backend:1"},
        {"name": "worker", "image": "acme/backend:1", "image_archive": "/srv/backend-1.tar"},
        {"name": "beat", "image": "acme/backend:1", "image_archive": "/srv/other.tar"},
        {"name": "frontend", "image": "acme/frontend:1"},
    ]
    assert plan.app_images(apps) == [
        {"image": "acme/backend:1", "archive": "/srv/backend-1.tar"},
        {"image": "acme/frontend:1", "archive": None},
    ]
    # An offline bundle's archive of an image comes first: the inventory's path is the
    # connected machine's, which the bundle was built on.
    bundled = {"acme/backend:1": "/bundles/b/images/acme_backend_1.tar"}
    assert plan.app_images(apps, bundled) == [
        {"image": "acme/backend:1", "archive": "/bundles/b/images/acme_backend_1.tar"},
        {"image": "acme/frontend:1", "archive": None},
    ]


# app_postgres_tls


def test_postgresql_on_another_host_is_reached_over_tls_verified_against_the_platform_ca():
    ca = "/etc/platform/tls/ca.crt"
    assert plan.app_postgres_tls("db-1", "app-1", ca) == f"sslmode=verify-full&sslrootcert={ca}"
    assert plan.app_postgres_tls("db-1", "app-1", "") == "sslmode=require"
    assert plan.app_postgres_tls("node-1", "node-1", ca) == "", "traffic that stays on one host"
    # A cluster, through HAProxy on this host: TLS to whichever host leads, its CA verified.
    assert plan.app_postgres_tls("node-1", "node-1", ca, proxied=True) == f"sslmode=verify-ca&sslrootcert={ca}"
    assert plan.app_postgres_tls("node-1", "node-1", "", proxied=True) == "sslmode=require"
    url = plan.app_service_url("postgresql", "10.0.0.5", 5432, "app", user="u", password=PASSWORDS[0],
                               query=plan.app_postgres_tls("db-1", "app-1", ca))
    assert url.endswith(f"@10.0.0.5:5432/app?sslmode=verify-full&sslrootcert={ca}")


def test_redis_on_another_host_is_reached_over_tls_verified_against_the_platform_ca():
    ca = "/etc/platform/tls/ca.crt"
    assert plan.app_redis_tls("data-1", "app-1", ca) == f"ssl_cert_reqs=required&ssl_ca_certs={ca}"
    assert plan.app_redis_tls("node-1", "node-1", ca) == "", "traffic that stays on one host"
    assert plan.app_redis_tls("data-1", "app-1", "") == "", "no CA: the redis role refuses remote app hosts"
    assert plan.app_redis_tls("", "app-1", ca) == "", "no redis host"


def test_one_curl_probes_every_url_and_discards_each_body(tmp_path):
    """Run for real against a local server: one status line per URL, no body on stdout."""
    import http.server
    import subprocess
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()
            self.wfile.write(b"a body that must not be printed")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        out = subprocess.run(plan.app_probe_command([f"{base}/ready", f"{base}/busy", "http://127.0.0.1:9/x"]),
                             capture_output=True, text=True, check=False).stdout
    finally:
        server.shutdown()
    assert out.splitlines() == [f"200 {base}/ready", f"503 {base}/busy", "000 http://127.0.0.1:9/x"]


# app_publish_address, app_edge_allowances: the multi-node example works as written

PROD_GROUPS = {"all": ["gpu-1", "db-1", "edge-1"], "app": ["gpu-1"], "edge": ["edge-1"], "postgres": ["db-1"]}
PROD_HOSTVARS = {"gpu-1": {"ansible_host": "10.0.10.11"}, "db-1": {"ansible_host": "10.0.10.21"},
                 "edge-1": {"ansible_host": "10.0.10.31"}}
ROUTED = {"name": "api", "port": 8000, "replicas": 2, "route": {"path": "/api/"}}
FRONT = {"name": "web", "port": 3000, "routes": [{"path": "/"}]}
WORKER_ONLY = {"name": "worker", "replicas": 2}
UNROUTED = {"name": "metrics", "port": 9400}


def test_apps_are_published_on_loopback_without_an_edge_host_elsewhere():
    assert plan.app_publish_address("gpu-1", {"edge": []}, PROD_HOSTVARS) == "127.0.0.1"
    assert plan.app_publish_address("gpu-1", {"edge": ["gpu-1"]}, PROD_HOSTVARS) == "127.0.0.1"


def test_apps_are_published_where_the_edge_host_reaches_their_host():
    assert plan.app_publish_address("gpu-1", PROD_GROUPS, PROD_HOSTVARS) == "10.0.10.11"
    by_name = {"gpu-1": {"ansible_host": "gpu-1.example.com",
                         "ansible_facts": {"default_ipv4": {"address": "10.0.10.12"}}}}
    assert plan.app_publish_address("gpu-1", PROD_GROUPS, by_name) == "10.0.10.12"


def test_an_app_host_without_an_address_is_an_error_that_says_what_to_set():
    with pytest.raises(ValueError, match=r"gpu-1: .*set app_publish_address"):
        plan.app_publish_address("gpu-1", PROD_GROUPS, {"gpu-1": {"ansible_host": "gpu-1.example.com"}})


def test_the_edge_host_may_open_the_routed_apps_container_ports_and_nothing_else():
    apps = [ROUTED, FRONT, WORKER_ONLY, UNROUTED]
    groups = {**PROD_GROUPS, "all": PROD_GROUPS["all"]}
    assert plan.app_edge_allowances(apps, groups, PROD_HOSTVARS, "gpu-1") == [
        {"port": 3000, "proto": "tcp", "from": "10.0.10.31/32"},
        {"port": 8000, "proto": "tcp", "from": "10.0.10.31/32"},
    ]
    # Nothing on a host that runs no app, nor where nginx runs on the app host itself.
    assert plan.app_edge_allowances(apps, groups, PROD_HOSTVARS, "db-1") == []
    assert plan.app_edge_allowances(apps, {**groups, "edge": ["gpu-1"]}, PROD_HOSTVARS, "gpu-1") == []


def test_the_edge_host_is_let_in_from_the_address_it_connects_from():
    """Its firewall_host_address, else its default IPv4 address, else its ansible_host."""
    hostvars = {**PROD_HOSTVARS, "edge-1": {"ansible_host": "203.0.113.5", "firewall_host_address": "10.0.10.31",
                                            "ansible_facts": {"default_ipv4": {"address": "203.0.113.5"}}}}
    assert plan.app_edge_allowances([ROUTED], PROD_GROUPS, hostvars, "gpu-1")[0]["from"] == "10.0.10.31/32"
    hostvars["edge-1"] = {"ansible_host": "edge-1.example.com",
                          "ansible_facts": {"default_ipv4": {"address": "10.0.10.32"}}}
    assert plan.app_edge_allowances([ROUTED], PROD_GROUPS, hostvars, "gpu-1")[0]["from"] == "10.0.10.32/32"
    with pytest.raises(ValueError, match=r"edge-1: .*firewall_host_address"):
        plan.app_edge_allowances([ROUTED], PROD_GROUPS, {**PROD_HOSTVARS, "edge-1": {}}, "gpu-1")
