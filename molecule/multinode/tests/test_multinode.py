"""installer.py on four hosts (converge.yml): the edge host's nginx routes to both app hosts,
whose app containers reach PostgreSQL and Redis on the data host; those accept only the
app hosts; the app's migration ran once, on one host, and its singleton runs on the host it
names; a rerun changes nothing. Every install ends with installer.py's verify probes
and exits 1 when one fails, so the first install (converge.yml) and the rerun here both
prove that verify passes. The app is the demo app
(tests/demo_app) and Ollama a STAND-IN release (tests/ollama_standin), both from local
archives. Probes go from inside the test hosts (docker exec) and from this process, only
to the test hosts' own addresses and the ports under test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from reach import address_of, blocked_from, connects_from

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "platform-inventory"
EDGE, APP, APP2, DATA = "multinode-edge", "multinode-app", "multinode-app2", "multinode-data"
DOMAIN = "multinode.test"
GATEWAY = "172.31.0.1"  # platform_network_gateway: Ollama runs on the app host itself
TIMEOUT = 3
CA_FILE = "/etc/platform/tls/ca.crt"  # the platform CA's certificate, kept on the app hosts


SECRETS_DIR = EPHEMERAL / "secrets"
RUNS_DIR = EPHEMERAL / "runs"  # this scenario's own: other scenarios' runs rotate runs/
PRINTED: list[str] = []  # what the installer runs of these tests printed


def installer(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PLATFORMCTL_SECRETS_DIR=str(SECRETS_DIR), PLATFORMCTL_RUNS_DIR=str(RUNS_DIR))
    proc = subprocess.run([sys.executable, "installer.py", *args, "--inventory", str(INVENTORY)],
                          cwd=PROJECT, env=env, text=True, capture_output=True, check=False)
    print(proc.stdout, proc.stderr)
    PRINTED.append(proc.stdout + proc.stderr)
    return proc


def run_in(name: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", name, *argv], capture_output=True, text=True, timeout=60, check=False)


@cache
def app_environment() -> dict[str, str]:
    """The environment the app role gave the app container on the app host."""
    out = run_in(APP, "docker", "inspect", "-f", "{{json .Config.Env}}", "api-1")
    assert out.returncode == 0, out.stderr
    return dict(item.split("=", 1) for item in json.loads(out.stdout))


def test_install_succeeded():
    assert json.loads((EPHEMERAL / "install.json").read_text())["exit_code"] == 0


def test_app_gets_urls_of_the_services_on_other_hosts():
    env = app_environment()
    assert urlsplit(env["DATABASE_URL"]).hostname == address_of(DATA)
    assert urlsplit(env["REDIS_URL"]).hostname == address_of(DATA)
    assert urlsplit(env["OLLAMA_BASE_URL"]).hostname == GATEWAY


def test_app_container_reaches_postgresql_and_redis_across_hosts():
    env = app_environment()
    for url in (env["DATABASE_URL"], env["REDIS_URL"]):
        parts = urlsplit(url)
        assert connects_from(APP, parts.hostname, parts.port, inner="api-1"), url


def redis_cli_from_app(url: str, *options: str, port: int | None = None) -> subprocess.CompletedProcess:
    """redis-cli PING on the app host with the URL's user and password (the password in the
    environment, as the app passes it), to the URL's host and `port` (default the URL's)."""
    redis = urlsplit(url)
    return run_in(APP, "env", f"REDISCLI_AUTH={redis.password}", "redis-cli", *options, "-h", redis.hostname,
                  "-p", str(port or redis.port), "--user", redis.username, "ping")


def test_postgresql_from_another_host_is_tls_only_verified_against_the_platform_ca():
    """The app's DATABASE_URL asks libpq for verify-full against the platform CA (mounted in the
    container, kept on the app host); the database refuses the same login without TLS, and a
    client that trusts other CAs cannot verify its certificate."""
    url = app_environment()["DATABASE_URL"]
    base, _, query = url.partition("?")
    assert parse_qs(query) == {"sslmode": ["verify-full"], "sslrootcert": [CA_FILE]}
    over_tls = run_in(APP, "psql", url, "-tAc", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert (over_tls.returncode, over_tls.stdout.strip()) == (0, "t"), over_tls.stderr
    plain = run_in(APP, "psql", f"{base}?sslmode=disable", "-tAc", "SELECT 1")
    assert plain.returncode != 0 and "no encryption" in plain.stderr, plain.stderr
    other_cas = run_in(APP, "psql", f"{base}?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt",
                       "-tAc", "SELECT 1")
    assert other_cas.returncode != 0 and "certificate verify failed" in other_cas.stderr, other_cas.stderr
    mounted = run_in(APP, "docker", "exec", "api-1", "cat", CA_FILE)
    assert mounted.stdout.startswith("-----BEGIN CERTIFICATE-----"), mounted.stderr
    written = run_in(APP, "docker", "exec", "--user", "0", "api-1", "sh", "-c", f"echo >> {CA_FILE}")
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written.stderr


def test_redis_from_another_host_is_tls_only_verified_against_the_platform_ca():
    """The app's REDIS_URL is rediss:// to the TLS port, verified against the platform CA
    (for redis-py and Celery in the URL, for Node's clients in NODE_EXTRA_CA_CERTS); the
    certificate names the data host and is signed by no public CA; the plain port, where a
    password would cross the network in clear, is closed to the app host."""
    env = app_environment()
    url = urlsplit(env["REDIS_URL"])
    assert (url.scheme, url.port) == ("rediss", 6380), env["REDIS_URL"]
    assert parse_qs(url.query) == {"ssl_cert_reqs": ["required"], "ssl_ca_certs": [CA_FILE]}
    assert env["NODE_EXTRA_CA_CERTS"] == CA_FILE
    assert redis_cli_from_app(env["REDIS_URL"], "--tls", "--cacert", CA_FILE).stdout.strip() == "PONG"
    plain_on_tls_port = redis_cli_from_app(env["REDIS_URL"])
    assert "PONG" not in plain_on_tls_port.stdout, plain_on_tls_port.stdout
    data = address_of(DATA)
    for ca, verified in ((CA_FILE, True), ("/etc/ssl/certs/ca-certificates.crt", False)):
        handshake = run_in(APP, "sh", "-c", f"openssl s_client -connect {data}:6380 -CAfile {ca} "
                           f"-verify_ip {data} -verify_return_error -brief </dev/null")
        assert (handshake.returncode == 0) == verified, handshake.stdout + handshake.stderr
    assert blocked_from(APP, data, 6379, control=(data, 6380)), "the plain port is open to the app host"


def test_app_container_reaches_ollama_on_its_host():
    url = f"{app_environment()['OLLAMA_BASE_URL']}/api/version"
    probe = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout={TIMEOUT}).read().decode())"
    out = run_in(APP, "docker", "exec", "api-1", "python3", "-c", probe)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["version"] == "0.12.6"


@pytest.mark.parametrize("port", [5432, 6380])
def test_data_services_accept_only_the_app_host(port):
    data = address_of(DATA)
    assert connects_from(APP, data, port)
    assert blocked_from(EDGE, data, port, control=(address_of(APP), 8000))


def test_ollama_and_the_app_port_are_closed_to_other_hosts():
    app, public = address_of(APP), (address_of(EDGE), 443)
    assert blocked_from(EDGE, app, 11434, control=(app, 8000))
    assert blocked_from(DATA, app, 11434, control=public)
    # The app's published port is for the edge host's nginx only (DOCKER-USER rules).
    assert connects_from(EDGE, app, 8000)
    assert blocked_from(DATA, app, 8000, control=public)


def test_nginx_on_the_edge_routes_to_the_app_host():
    result = subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "5", "--insecure", "--resolve", f"{DOMAIN}:443:{address_of(EDGE)}",
         f"https://{DOMAIN}/api/health"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    health = json.loads(result.stdout)
    assert health["status"] == "ok"
    assert health["urls"]["DATABASE_URL"]["host"] == address_of(DATA)


def test_the_app_works_with_postgresql_redis_and_ollama_on_the_other_hosts():
    """Through the edge's nginx, the app's own clients (psycopg2, redis-py, Ollama's API) do
    what an app does with its URLs (tests/demo_app /work): a wrong password, a pg_hba line
    or firewall rule that rejects the app's address, or an ACL that denies SET, fails here."""
    result = subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "30", "--insecure", "--resolve", f"{DOMAIN}:443:{address_of(EDGE)}",
         f"https://{DOMAIN}/api/work"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    work = json.loads(result.stdout)
    assert work["DATABASE_URL"]["ok"] and work["DATABASE_URL"]["user"] == "platform", work
    assert work["REDIS_URL"]["ok"] and work["REDIS_URL"]["user"] == "platform", work
    assert work["OLLAMA_BASE_URL"]["ok"], work


def health_in(host: str) -> dict:
    """api-1's /health on `host`, asked inside the container."""
    probe = ("import urllib.request; "
             f"print(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout={TIMEOUT}).read().decode())")
    out = run_in(host, "docker", "exec", "api-1", "python3", "-c", probe)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_migration_ran_once_on_the_first_app_host():
    """pre_deploy leaves its mark in the volume of the host it ran on, which /health lists."""
    marks = health_in(APP)["data"]
    assert len(marks) == 1 and re.fullmatch(r"migrated-1-[0-9]+", marks[0]), marks
    assert health_in(APP2)["data"] == []


def test_nginx_spreads_the_requests_over_both_app_hosts():
    seen = set()
    for _ in range(10):
        result = subprocess.run(
            ["curl", "-sS", "--fail", "--max-time", "5", "--insecure", "--resolve",
             f"{DOMAIN}:443:{address_of(EDGE)}", f"https://{DOMAIN}/api/health"],
            capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        seen.add(len(json.loads(result.stdout)["data"]))
    assert seen == {1, 0}, "each app host's replica answers (the first holds the migration's mark)"


def test_the_singleton_runs_once_on_the_host_it_names():
    def beats(host: str) -> list[str]:
        out = run_in(host, "docker", "ps", "--filter", "label=platform.app=beat", "--format", "{{.Names}}")
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert (beats(APP), beats(APP2)) == ([], ["beat-1"])


def test_preflight_names_a_download_source_that_does_not_answer():
    """The app host's Ollama release taken from a URL that refuses (its own loopback, port 9)
    instead of the local archive: preflight stops with exit 3 before anything changes, naming
    the source and the setting that replaces it."""
    unreachable = "http://127.0.0.1:9/ollama-linux-amd64.tgz"
    proc = installer("preflight", "--json", str(EPHEMERAL / "preflight.json"),
                     "-e", json.dumps({"ollama_archive_src": "", "ollama_archive_url": unreachable}))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    problems = json.loads((EPHEMERAL / "preflight.json").read_text())["problems"]
    [download] = [p for p in problems if p["check"] == "download source"]
    assert download["host"] == APP
    assert download["found"] == f"the Ollama release archive: {unreachable} does not answer"
    assert "ollama_archive_src" in download["fix"]


def test_rerun_changes_nothing():
    proc = installer("--json", str(EPHEMERAL / "rerun.json"))
    assert proc.returncode == 0
    hosts = json.loads((EPHEMERAL / "rerun.json").read_text())["hosts"]
    assert set(hosts) == {EDGE, APP, APP2, DATA}
    assert {host: counts["changed"] for host, counts in hosts.items()} == dict.fromkeys(hosts, 0)


def test_check_after_the_rerun_finds_no_drift():
    """The check-mode pass of this scenario, through installer.py: every role of every host."""
    proc = installer("check", "--json", str(EPHEMERAL / "check.json"))
    report = json.loads((EPHEMERAL / "check.json").read_text())
    assert proc.returncode == 0, [(d["host"], d["role"], d["task"]) for d in report["drift"]]
    assert report["drift"] == [] and report["failures"] == []
    assert set(report["roles"]) >= {"common", "firewall", "docker", "postgresql", "redis", "ollama", "app", "nginx"}


STOPPED = {DATA: ["postgresql", "redis-server"], APP: ["ollama", "docker.socket", "docker"], EDGE: ["nginx"]}


def test_check_with_services_stopped_reports_them_and_checks_every_other_role():
    """A service that is down is drift, not a failure: check exits 2, names each stopped
    service's role, and every role of every host is still checked."""
    for name, units in STOPPED.items():
        assert run_in(name, "systemctl", "stop", *units).returncode == 0
    try:
        proc = installer("check", "--json", str(EPHEMERAL / "check-stopped.json"))
        report = json.loads((EPHEMERAL / "check-stopped.json").read_text())
    finally:
        for name, units in STOPPED.items():
            run_in(name, "systemctl", "start", *reversed(units))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert report["failures"] == []
    drifted = {(item["host"], item["role"]) for item in report["drift"]}
    assert {(DATA, "postgresql"), (DATA, "redis"), (APP, "ollama"), (APP, "docker"), (EDGE, "nginx")} <= drifted
    assert set(report["roles"]) >= {"common", "firewall", "docker", "postgresql", "redis", "ollama", "app", "nginx"}


def created(host: str, container: str) -> float:
    out = run_in(host, "docker", "inspect", "-f", "{{.Created}}", container)
    assert out.returncode == 0, out.stderr
    return datetime.fromisoformat(out.stdout.strip()[:26].rstrip("Z")).timestamp()


def rollout_through_the_edge(*args: str) -> tuple[subprocess.CompletedProcess, list[int]]:
    """An install while a client asks the edge for /api/health every 0.2 s; the install's
    result and the client's curl exit codes."""
    codes: list[int] = []
    done = threading.Event()

    def ask():
        while not done.is_set():
            codes.append(subprocess.run(
                ["curl", "-sS", "--fail", "--max-time", "10", "--insecure", "-o", "/dev/null", "--resolve",
                 f"{DOMAIN}:443:{address_of(EDGE)}", f"https://{DOMAIN}/api/health"],
                capture_output=True, check=False).returncode)
            time.sleep(0.2)

    client = threading.Thread(target=ask)
    client.start()
    try:
        proc = installer(*args)
    finally:
        done.set()
        client.join()
    return proc, codes


def test_a_deploy_rolls_one_host_at_a_time_and_the_edge_keeps_answering():
    """A change to every app container (app_tmpfs) replaces api on both app hosts, one host
    after the other (each replica healthy before the next host starts), and back again: the
    edge answers every request meanwhile, from the host that is not being replaced."""
    for tmpfs in (["/tmp", "/var/tmp"], ["/tmp"]):  # noqa: S108 (tmpfs mounts of the app containers)
        proc, codes = rollout_through_the_edge("-e", json.dumps({"app_tmpfs": tmpfs}))
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert len(codes) > 20 and codes.count(0) == len(codes), codes
        first, second = sorted(created(host, "api-1") for host in (APP, APP2))
        # Hosts replacing at the same time start their new replicas within a second.
        print(f"\nROLLOUT: the second app host replaced api {second - first:.1f} s after the first")
        assert second - first >= 3


def vault_values() -> set[str]:
    """Every secret of the inventory's vault, decrypted with the installer's own password file."""
    sys.path.insert(0, str(PROJECT))
    os.environ["PLATFORMCTL_SECRETS_DIR"] = str(SECRETS_DIR)
    from platformctl.inventory import resolve
    from platformctl.secrets import SecretStore

    return set(SecretStore(resolve(str(INVENTORY))).load().values())


def test_no_secret_in_run_folders_reports_or_output():
    """After the install and a rerun (which inspects the running app container, whose
    environment holds the app's secrets), no secret is in the runs/ folders of this
    inventory, in the --json reports or in what the installer printed."""
    secrets = vault_values() | {v for k, v in app_environment().items() if k in ("DATABASE_URL", "REDIS_URL")}
    # The data host's server keys, which never leave it (their body: the PEM lines between the markers).
    for key in ("/etc/postgresql/tls/server.key", "/etc/redis/tls/server.key"):
        pem = run_in(DATA, "cat", key)
        assert pem.returncode == 0, (key, pem.stderr)
        secrets.add("".join(pem.stdout.splitlines()[1:-1])[:64])
    assert len(secrets) >= 7
    runs = [d for d in RUNS_DIR.iterdir()
            if (d / "command").is_file() and str(INVENTORY) in (d / "command").read_text(errors="replace")]
    assert len(runs) >= 4  # preflight, site and verify of the install, and of the rerun
    texts = {str(f): f.read_text(errors="replace") for run in runs for f in run.rglob("*") if f.is_file()}
    texts |= {str(f): f.read_text() for f in EPHEMERAL.glob("*.json")}
    texts |= {f"printed {n}": out for n, out in enumerate(PRINTED)}
    leaks = sorted({name for name, text in texts.items() for secret in secrets if secret in text})
    assert not leaks, f"secret values in: {leaks[:10]}"
