"""firewall, docker, app and nginx on one host: the demo app (tests/demo_app, a stand-in for a product's API
image, loaded from an archive because no registry answers here) behind nginx with TLS,
probed from outside the test host: from this test process, at the host's own address,
with curl and openssl."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from reach import address_of, blocked, connects
from slow import slow

DOMAIN = "platform.test"
GATEWAY = "172.31.0.1"
SECRETS = {"postgresql_app_password": "pg-app-password", "redis_app_password": "r/d@s:p w",
           "JWT_SECRET": "jwt-secret-value"}
SCENARIO = Path(__file__).resolve().parents[1]
TIMEOUT = "5"
# molecule.yml's nginx_connections_per_client, low so that a test can reach it.
CONNECTIONS_PER_CLIENT = 4


@pytest.fixture(scope="module")
def address(host) -> str:
    """The test host's own address, as this process (outside the host) reaches it."""
    return address_of(host.backend.host)


def curl(address: str, *args: str, port: int = 443, input_text: str | None = None,
         name: str = DOMAIN) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", TIMEOUT, "--insecure", "--resolve", f"{name}:{port}:{address}", *args],
        capture_output=True, text=True, check=False, input=input_text)


def get_health(address: str) -> dict:
    result = curl(address, "--fail", f"https://{DOMAIN}/api/health")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_health_through_nginx(address):
    health = get_health(address)
    assert health["status"] == "ok"
    assert health["version"] == "1"


def test_pre_deploy_ran_with_the_app_volume(address):
    assert "pre-deploy-1" in get_health(address)["data"]


def test_static_files_are_served_by_nginx_with_their_expiry(address):
    result = curl(address, "--fail", "--dump-header", "-", f"https://{DOMAIN}/static/version.txt")
    assert result.returncode == 0, result.stderr
    headers, _, body = result.stdout.partition("\n\n")  # text mode: curl's \r\n read as \n
    assert body == "1", "written by the pre-deploy command of release 1"
    assert "cache-control: max-age=2592000" in headers.lower(), headers
    assert "x-content-type-options: nosniff" in headers.lower(), "the site's headers still apply"


def test_app_received_connection_urls_and_secrets(address):
    health = get_health(address)
    database = health["urls"]["DATABASE_URL"]
    assert (database["scheme"], database["username"], database["host"], database["port"], database["path"]) == (
        "postgresql", "platform", GATEWAY, 5432, "/platform")
    assert database["password_sha256"] == sha256(SECRETS["postgresql_app_password"])
    redis = health["urls"]["REDIS_URL"]
    assert (redis["scheme"], redis["username"], redis["host"], redis["port"], redis["path"]) == (
        "redis", "platform", GATEWAY, 6379, "/0")
    assert redis["password_sha256"] == sha256(SECRETS["redis_app_password"])
    assert "OLLAMA_BASE_URL" not in health["urls"]
    assert health["secrets_sha256"] == {"JWT_SECRET": sha256(SECRETS["JWT_SECRET"])}


@pytest.mark.parametrize("replica", ["api-1", "api-2"])
def test_app_containers_are_confined(host, replica):
    """No capabilities, no privilege gain, a read-only root filesystem with /tmp writable
    (app role defaults; the app itself still answers, above)."""
    status = host.check_output(f"docker exec {replica} cat /proc/self/status")
    assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE), status
    refused = host.run(f"docker exec {replica} touch /written-by-the-app")
    assert refused.rc != 0 and "Read-only file system" in refused.stderr, refused.stderr
    host.check_output(f"docker exec {replica} touch /tmp/written-by-the-app")


def test_the_worker_runs_once_without_ports(host):
    names = host.check_output("docker ps --filter label=platform.app=worker --format '{{.Names}}'")
    assert names.splitlines() == ["worker-1"], names
    assert host.run("docker port worker-1").stdout == "", "nothing published"


def in_replica(host, replica: str, method: str, path: str) -> str:
    """The status of `method path` asked of the replica itself, inside its container."""
    script = ("import sys, urllib.error, urllib.request\n"
              f"request = urllib.request.Request('http://127.0.0.1:8000{path}', method='{method}')\n"
              "try: print(urllib.request.urlopen(request, timeout=5).status)\n"
              "except urllib.error.HTTPError as err: print(err.code)")
    return host.check_output(f"docker exec {replica} python3 -c {shlex.quote(script)}")


def test_a_replica_that_stops_living_is_restarted(host):
    """api's liveness path is /live, probed every 2 s: a replica that fails it twice in a row
    (POST /sick makes it answer 500, as a hung process stops answering) is restarted by the
    host's liveness watcher and lives again; the other replica is left alone."""
    def started(replica: str) -> str:
        return host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {replica}")

    before = {replica: started(replica) for replica in ("api-1", "api-2")}
    assert in_replica(host, "api-1", "POST", "/sick") == "200"
    assert in_replica(host, "api-1", "GET", "/live") == "500"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and started("api-1") == before["api-1"]:
        time.sleep(1)
    assert started("api-1") != before["api-1"], "api-1 was not restarted"
    assert started("api-2") == before["api-2"]
    journal = host.check_output("journalctl -u platform-app-liveness.service --no-pager -o cat")
    assert "api-1: restarted after 2 failed liveness probes" in journal, journal
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and host.run("docker exec api-1 true").rc != 0:
        time.sleep(1)
    assert in_replica(host, "api-1", "GET", "/live") == "200"


def test_the_scheduled_job_runs_on_its_schedule_with_the_app_s_environment(host, address):
    """tick runs every 10 s in a one-shot container: its marks in the shared volume come
    about 10 s apart; between runs no container is left; its environment file is root's."""
    deadline = time.monotonic() + 60
    ticks: list[int] = []
    while time.monotonic() < deadline and len(ticks) < 3:
        time.sleep(3)
        ticks = sorted(int(name.removeprefix("tick-")) for name in get_health(address)["data"]
                       if name.startswith("tick-"))
    assert len(ticks) >= 3, ticks
    last = ticks[-7:]  # up to six gaps, also with fewer than seven marks
    gaps = sorted((later - earlier) / 1e9 for earlier, later in zip(last, last[1:]))
    # The median: a run that started late on a loaded machine moves two gaps, not the schedule.
    assert 8 <= gaps[len(gaps) // 2] <= 13, gaps
    assert host.file("/etc/platform/jobs/tick.env").mode == 0o600
    assert host.file("/etc/platform/jobs/tick.env").user == "root"
    assert host.service("platform-job-tick.timer").is_enabled
    assert "platform-job-tick.service" in host.check_output("systemctl list-timers --all --no-legend")


# The replica's own limits as the kernel holds them: cgroup v2's files, or v1's where the
# host still mounts v1 (the CI machine's Docker engine does).
CGROUP_LIMITS = ("if [ -e /sys/fs/cgroup/memory.max ]; then cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; "
                 "else cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
                 "/sys/fs/cgroup/cpu/cpu.cfs_period_us; fi")


@pytest.mark.parametrize("replica", ["api-1", "api-2"])
def test_replicas_are_held_to_their_resources(host, replica):
    """resources {memory: 256m, cpus: 0.5}: 256 MiB with no swap beyond it, half a CPU's
    time in each 100 ms."""
    limits = host.check_output(f"docker exec {replica} sh -c '{CGROUP_LIMITS}'").split()
    assert limits == [str(256 * 1024 * 1024), "50000", "100000"], limits
    swap = host.check_output(f"docker inspect --format '{{{{.HostConfig.MemorySwap}}}}' {replica}")
    assert swap == str(256 * 1024 * 1024)


@pytest.mark.parametrize(("flag", "accepted"), [
    ("-tls1", False), ("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)])
def test_tls_versions(address, flag, accepted):
    # SECLEVEL=0 lets this OpenSSL 3 client offer TLS 1.0/1.1 at all, so a refusal below
    # comes from the server (a protocol-version alert), not from the client.
    result = subprocess.run(
        ["timeout", TIMEOUT, "openssl", "s_client", "-connect", f"{address}:443", "-servername", DOMAIN,
         flag, "-cipher", "DEFAULT@SECLEVEL=0", "-brief"],
        input="", capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    if accepted:
        assert result.returncode == 0, output
        assert "Protocol version" in output
    else:
        assert result.returncode != 0
        assert "alert protocol version" in output, output


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"])
def test_tls_1_2_handshakes_with_ecdhe(address, cipher):
    result = subprocess.run(
        ["timeout", TIMEOUT, "openssl", "s_client", "-connect", f"{address}:443", "-servername", DOMAIN,
         "-tls1_2", "-cipher", cipher, "-brief"],
        input="", capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Ciphersuite: {cipher}" in output, output


def test_tls_1_2_ciphers_are_mozilla_intermediate_6(host):
    """ECDHE key exchange only, whatever certificate is served (a provided RSA one would
    otherwise allow finite-field DHE), and no DH parameters."""
    config = host.check_output("nginx -T 2>/dev/null")
    ciphers = re.findall(r"^\s*ssl_ciphers\s+([^;]+);", config, re.MULTILINE)
    assert ciphers, config[:2000]
    offered = {name for line in ciphers for name in line.split(":")}
    assert offered == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                       "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}
    assert "ssl_dhparam" not in config
    assert re.search(r"^\s*ssl_ecdh_curve X25519:prime256v1:secp384r1;", config, re.MULTILINE)


def tls_connection(address: str) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((address, 443), timeout=5)
    return context.wrap_socket(raw, server_hostname=DOMAIN)


def test_a_client_that_never_finishes_its_request_header_is_cut_off(address):
    """nginx_client_timeout (10 s), not nginx's default minute: the connection is closed."""
    with tls_connection(address) as connection:
        connection.sendall(f"GET /api/health HTTP/1.1\r\nHost: {DOMAIN}\r\n".encode())
        connection.settimeout(40)
        started = time.monotonic()
        try:
            while connection.recv(4096):
                pass
        except TimeoutError:
            pytest.fail("nginx still holds the half-sent request after 40 s")
        except (ConnectionResetError, ssl.SSLError):
            pass
        # Its 10 s: not at once (another reason), not nginx's minute (some slack for a loaded machine).
        assert 8 <= time.monotonic() - started <= 20


def test_requests_in_progress_per_client_are_limited(address):
    """Uploads that never finish hold their connections; one more request from the same
    address gets 429 until they are gone."""
    request = (f"POST /api/health HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Length: 1000\r\n\r\n").encode()
    with ExitStack() as holders:
        for _ in range(CONNECTIONS_PER_CLIENT):
            connection = holders.enter_context(tls_connection(address))
            connection.sendall(request)
        # The bodies never come; nginx counts each connection once it has read its header,
        # so the next request is asked until it gets 429, for at most 10 s.
        deadline = time.monotonic() + 10
        while True:
            over = curl(address, "--output", "/dev/null", "--write-out", "%{http_code}",
                        f"https://{DOMAIN}/api/health")
            if over.stdout == "429" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert over.stdout == "429", over.stderr
    after = curl(address, "--output", "/dev/null", "--write-out", "%{http_code}", f"https://{DOMAIN}/api/health")
    assert after.stdout == "200", after.stderr


def test_security_headers(address):
    result = curl(address, "--fail", "--dump-header", "-", "--output", "/dev/null", f"https://{DOMAIN}/api/health")
    assert result.returncode == 0, result.stderr
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
               for line in result.stdout.splitlines() if ":" in line}
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert "script-src 'self';" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["server"] == "nginx"
    # A self-signed certificate: no HSTS, which would lock browsers out.
    assert "strict-transport-security" not in headers


def status_codes(address: str, path: str, count: int) -> list[int]:
    """`count` requests over one connection, as fast as curl sends them."""
    per_url = ["--output", "/dev/null", f"https://{DOMAIN}{path}"] * count
    result = curl(address, "--write-out", "%{http_code}\n", *per_url)
    return [int(code) for code in result.stdout.split()]


def test_burst_above_rate_limit_gets_429(address):
    codes = status_codes(address, "/api/not-there", 60)
    assert len(codes) == 60
    assert 429 in codes
    # The first requests fit the burst and reach the app (which has no such page).
    assert codes[0] == 404


def test_an_hourly_limit_serves_its_count_then_429(address):
    """/limited/'s zone allows 5 requests an hour (nginx: a burst of 5 refilled at 1r/m)."""
    assert status_codes(address, "/limited/now", 7) == [200] * 5 + [429] * 2


def test_health_route_has_no_rate_limit(address):
    assert set(status_codes(address, "/api/health", 60)) == {200}


WEBSOCKET_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example, whose answer it gives
WEBSOCKET_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def upgrade(address: str, path: str) -> str:
    """The status line and headers of a WebSocket opening handshake sent to `path`."""
    result = curl(address, "--http1.1", "--dump-header", "-", "--output", "/dev/null", "-H", "Connection: Upgrade",
                  "-H", "Upgrade: websocket", "-H", f"Sec-WebSocket-Key: {WEBSOCKET_KEY}",
                  "-H", "Sec-WebSocket-Version: 13", f"https://{DOMAIN}{path}")
    return result.stdout


def test_only_the_websocket_route_upgrades(address):
    answer = upgrade(address, "/ws/")
    assert answer.startswith("HTTP/1.1 101"), answer
    accept = re.compile(rf"^sec-websocket-accept: {re.escape(WEBSOCKET_ACCEPT)}\r?$", re.IGNORECASE | re.MULTILINE)
    assert accept.search(answer), answer
    # The same handshake on the API route: nginx does not pass the upgrade, the app answers plainly.
    plain = upgrade(address, "/api/health")
    assert plain.startswith("HTTP/1.1 200"), plain


def now(address: str, path: str, *headers: str) -> int:
    result = curl(address, "--fail", *[arg for header in headers for arg in ("-H", header)], f"https://{DOMAIN}{path}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["ns"]


def test_the_cached_route_serves_its_answer_again_but_never_to_a_login(address):
    first = now(address, "/cached/now")
    assert now(address, "/cached/now") == first, "the cached route's answer is served again"
    assert now(address, "/api/now") != now(address, "/api/now"), "other routes are not cached"
    assert now(address, "/cached/now", "Authorization: Bearer someone") != first
    assert now(address, "/cached/now", "Cookie: session=someone") != first


def test_a_route_s_body_size_limit(address):
    def post(path: str, size: int) -> str:
        return curl(address, "--output", "/dev/null", "--write-out", "%{http_code}", "--data-binary", "@-",
                    f"https://{DOMAIN}{path}", input_text="x" * size).stdout

    assert post("/cached/now", 512) == "200"
    assert post("/cached/now", 4096) == "413"
    assert post("/api/now", 4096) == "200", "the server's own limit (nginx_client_max_body_size) elsewhere"


NAMES = {DOMAIN, f"ai.{DOMAIN}", f"admin.{DOMAIN}", f"www.{DOMAIN}"}


def test_every_name_is_in_the_certificate(host):
    text = host.check_output(f"openssl x509 -in /etc/nginx/tls/{DOMAIN}.crt -noout -ext subjectAltName")
    assert set(re.findall(r"DNS:([\w.-]+)", text)) == NAMES, text


def status_and_location(address: str, name: str, path: str) -> str:
    return curl(address, "--output", "/dev/null", "--write-out", "%{http_code} %{redirect_url}",
                f"https://{name}{path}", name=name).stdout.strip()


def test_an_alias_serves_the_platform_and_www_redirects_to_it(address):
    assert status_and_location(address, f"ai.{DOMAIN}", "/api/health") == "200"
    assert status_and_location(address, f"www.{DOMAIN}", "/api/health?x=1") == f"301 https://{DOMAIN}/api/health?x=1"


def test_a_route_with_its_own_host_is_served_only_there(address):
    assert status_and_location(address, f"admin.{DOMAIN}", "/health") == "200"
    assert status_and_location(address, f"admin.{DOMAIN}", "/api/health") == "404", "the API is on the platform's names"
    assert status_and_location(address, DOMAIN, "/health") == "404", "and the admin host's route only on its own"


def test_http_redirects_to_https(address):
    result = curl(address, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                  f"http://{DOMAIN}/api/health?x=1", port=80)
    assert result.stdout == f"301 https://{DOMAIN}/api/health?x=1"


def test_unknown_host_names_are_closed(address):
    plain = subprocess.run(["curl", "-sS", "--max-time", TIMEOUT, "-H", "Host: other.test", f"http://{address}/"],
                           capture_output=True, text=True, check=False)
    assert plain.returncode == 52, plain.stderr  # empty reply: nginx closed the connection
    tls = curl(address, f"https://{address}/")
    assert tls.returncode == 35, tls.stderr  # the handshake was refused
    assert "unrecognized name" in tls.stderr


def test_only_ssh_and_nginx_answer_from_outside(address):
    """sshd and nginx only; the app's published ports (8000, 8001: two replicas) stay on loopback."""
    for port in (22, 80, 443):
        assert connects(address, port), port
    for port in (8000, 8001):
        assert blocked(address, port, control=(address, 443)), port


def converge(role: str, tag: str, *extra: str) -> subprocess.CompletedProcess:
    """converge.yml again, with molecule's inventory (its folder holds the group files), for
    the one role a test changes (as `installer.py --tags ROLE` runs it)."""
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(SCENARIO.parents[1] / "roles"), ANSIBLE_NOCOLOR="1")
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    return subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(SCENARIO / "converge.yml"), "--tags", role,
         "-e", f"edge_demo_tag={tag}", *extra],
        env=env, capture_output=True, text=True, check=False)


def converged(role: str, tag: str) -> None:
    result = converge(role, tag)
    assert result.returncode == 0, result.stdout[-3000:]


def replica_images(host) -> dict[str, str]:
    return {replica: host.check_output(f"docker inspect -f '{{{{.Config.Image}}}}' {replica}")
            for replica in ("api-1", "api-2")}


def rolled_back(app: str) -> None:
    """installer.py rollback's playbook, with molecule's inventory."""
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(SCENARIO.parents[1] / "roles"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
         str(SCENARIO.parents[1] / "playbooks" / "rollback.yml"), "-e", f"rollback_app={app}"],
        env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:]


def test_changed_image_tag_rolls_the_containers_and_rollback_returns_them(host, address):
    try:
        converged("app", "2")
        health = get_health(address)
        assert health["version"] == "2"
        assert "pre-deploy-2" in health["data"]  # the new version's pre_deploy ran first
        assert replica_images(host) == {"api-1": "platform-demo-app:2", "api-2": "platform-demo-app:2"}
        rolled_back("api")
        assert replica_images(host) == {"api-1": "platform-demo-app:1", "api-2": "platform-demo-app:1"}
        assert get_health(address)["version"] == "1"
        rolled_back("api")  # the image the last rollback replaced: forward again
        assert replica_images(host) == {"api-1": "platform-demo-app:2", "api-2": "platform-demo-app:2"}
    finally:
        converged("app", "1")
    assert get_health(address)["version"] == "1"


def test_unhealthy_new_version_stops_the_rollout_with_its_logs_and_rolls_the_replica_back(host, address):
    """A release that exits at start: the run fails on the first replica and shows its last
    log lines; that replica returns to the previous release by itself, the second keeps it,
    and the route keeps answering."""
    try:
        result = converge("app", "2", "-e", "edge_demo_fail='cannot reach the license server'",
                          "-e", "app_health_timeout=16")
        assert result.returncode != 0, result.stdout[-3000:]
        # The failure message, however the callback wrapped it.
        printed = " ".join((result.stdout + result.stderr).split())
        assert "api-1 (platform-demo-app:2) did not start or answer /health" in printed
        assert "fatal: cannot reach the license server" in printed
        # What Docker knew of the replica that failed: its state, exit code and restarts.
        assert re.search(r"Container: \w+ \(exit code \d+, restarts \d+", printed), printed[-3000:]
        # What the replica's own network namespace listened on: addresses, or none; "unknown"
        # would mean the probe itself failed.
        assert re.search(r"Listening inside it: (none|none \(not running\)|\S+:\d+( \S+:\d+)*)\. ", printed), \
            printed[-3000:]
        assert "it is back on platform-demo-app:1, the release it ran before" in printed
        assert replica_images(host) == {"api-1": "platform-demo-app:1", "api-2": "platform-demo-app:1"}
        assert host.docker("api-1").is_running
        assert {get_health(address)["version"] for _ in range(4)} == {"1"}, "both replicas answer, on the old release"
    finally:
        converged("app", "1")
    assert replica_images(host) == {"api-1": "platform-demo-app:1", "api-2": "platform-demo-app:1"}


def hsts_header(address: str) -> str | None:
    headers = curl(address, "--dump-header", "-", "--output", "/dev/null", f"https://{DOMAIN}/api/health").stdout
    found = re.search(r"^strict-transport-security: (.*?)\r?$", headers, re.IGNORECASE | re.MULTILINE)
    return found.group(1) if found else None


def test_a_provided_certificate_is_served_and_trusted_with_hsts(address, tmp_path):
    """nginx_tls_mode provided: the operator's certificate and key (made here with openssl,
    as their CA would give them; the key passed as the vault holds it, PEM text) are served
    for every name, a client that trusts that certificate verifies it (no --insecure), and
    HSTS is sent; back on self-signed, HSTS is off again."""
    key, certificate = tmp_path / "site.key", tmp_path / "site.crt"
    names = ",".join(f"DNS:{name}" for name in sorted(NAMES))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "30", "-subj", f"/CN={DOMAIN}",
                    "-addext", f"subjectAltName={names}"], check=True, capture_output=True)
    settings = tmp_path / "provided.json"
    settings.write_text(json.dumps({"nginx_tls_mode": "provided", "nginx_tls_certificate_file": str(certificate),
                                    "nginx_tls_private_key": key.read_text()}))
    try:
        result = converge("nginx", "1", "-e", f"@{settings}")
        assert result.returncode == 0, result.stdout[-3000:]
        with tls_connection(address) as connection:
            served = connection.getpeercert(binary_form=True)
        assert served == ssl.PEM_cert_to_DER_cert(certificate.read_text())
        for name in (DOMAIN, f"ai.{DOMAIN}"):
            trusted = subprocess.run(
                ["curl", "-sS", "--max-time", TIMEOUT, "--cacert", str(certificate), "--resolve",
                 f"{name}:443:{address}", "--output", "/dev/null", "--write-out", "%{http_code}",
                 f"https://{name}/api/health"], capture_output=True, text=True, check=False)
            assert trusted.stdout == "200", trusted.stderr
        assert hsts_header(address) == "max-age=63072000; includeSubDomains"
    finally:
        converged("nginx", "1")
    assert hsts_header(address) is None


ACME_DIRECTORY = "https://127.0.0.1:14000/dir"  # pebble, the ACME stand-in (prepare.yml)
ACME_LIVE = f"/etc/letsencrypt/live/{DOMAIN}"


def served_certificate(address: str) -> bytes:
    with tls_connection(address) as connection:
        return connection.getpeercert(binary_form=True)


@slow(10, "three more converges of the edge host")
def test_an_acme_certificate_is_obtained_trusted_renewed_by_certbot_s_timer_and_sent_with_hsts(
        host, address, tmp_path):
    """nginx_tls_mode acme against an internal ACME service (STAND-IN for Let's Encrypt:
    pebble, prepare.yml), whose own HTTPS certificate only nginx_acme_server_ca vouches for.
    Every name validates over HTTP-01 through nginx's port 80; clients trusting only the
    ACME service's root verify the served chain; HSTS is sent; a rerun asks for nothing; the
    renewal certbot.timer starts trusts the same CA and its deploy hook reloads nginx."""
    settings = tmp_path / "acme.json"
    settings.write_text(json.dumps({
        "nginx_tls_mode": "acme", "nginx_acme_email": f"ops@{DOMAIN}", "nginx_acme_server": ACME_DIRECTORY,
        "nginx_acme_server_ca": host.file("/etc/pebble/ca.crt").content_string}))
    renewal = f"/etc/letsencrypt/renewal/{DOMAIN}.conf"
    try:
        first = converge("nginx", "1", "-e", f"@{settings}")
        assert first.returncode == 0, first.stdout[-3000:]
        root = tmp_path / "acme-root.pem"
        # The ACME service's root, from its management API (the host has no curl).
        root.write_text(host.check_output(
            "python3 -c \"import ssl, urllib.request; "
            "context = ssl.create_default_context(cafile='/etc/pebble/ca.crt'); "
            "print(urllib.request.urlopen('https://127.0.0.1:15000/roots/0', context=context).read().decode())\""))
        # Each name's handshake verifies against that root alone (admin.* serves its own
        # route, www.* redirects: their status is theirs); the platform's name answers its API.
        for name in sorted(NAMES):
            trusted = subprocess.run(
                ["curl", "-sS", "--max-time", TIMEOUT, "--cacert", str(root), "--resolve", f"{name}:443:{address}",
                 "--output", "/dev/null", "--write-out", "%{http_code}", f"https://{name}/api/health"],
                capture_output=True, text=True, check=False)
            assert trusted.returncode == 0 and trusted.stdout in {"200", "301", "404"}, (name, trusted.stderr)
            assert name != DOMAIN or trusted.stdout == "200", (name, trusted.stdout)
        assert hsts_header(address) == "max-age=63072000; includeSubDomains"
        issued = served_certificate(address)
        assert issued == ssl.PEM_cert_to_DER_cert(host.file(f"{ACME_LIVE}/cert.pem").content_string)

        again = converge("nginx", "1", "-e", f"@{settings}")
        assert again.returncode == 0, again.stdout[-3000:]
        assert host.file(f"{ACME_LIVE}/cert.pem").linked_to.endswith("/cert1.pem"), "a rerun asked again"
        assert served_certificate(address) == issued

        # As if the certificate were due: certbot.service, as its timer starts it.
        environment = host.check_output("systemctl show --property=Environment --value certbot.service")
        assert "REQUESTS_CA_BUNDLE=/etc/nginx/tls/acme-server-ca.pem" in environment.split()
        host.run_expect([0], f"echo 'renew_before_expiry = 100000 days' > {renewal}.due && "
                             f"cat {renewal} >> {renewal}.due && mv {renewal}.due {renewal}")
        host.run_expect([0], "systemctl start certbot.service")
        assert host.file(f"{ACME_LIVE}/cert.pem").linked_to.endswith("/cert2.pem")
        renewed = ssl.PEM_cert_to_DER_cert(host.file(f"{ACME_LIVE}/cert.pem").content_string)
        assert renewed != issued
        # The deploy hook's reload: its new workers serve the renewed certificate.
        deadline = time.monotonic() + 10
        while served_certificate(address) != renewed and time.monotonic() < deadline:
            time.sleep(0.5)
        assert served_certificate(address) == renewed
    finally:
        host.run(f"sed -i '/^renew_before_expiry = 100000 days$/d' {renewal}")
        converged("nginx", "1")
    assert hsts_header(address) is None


def test_a_stopped_replica_costs_no_request(host, address):
    """nginx's passive health check: with api-1 down, every request is still answered, by
    api-2 (one that nginx sent to api-1 is passed on once), and api-1 is back afterwards."""
    host.check_output("docker stop api-1")
    try:
        assert host.check_output("docker inspect -f '{{.State.Running}}' api-1") == "false"
        codes = [curl(address, "--output", "/dev/null", "--write-out", "%{http_code}",
                      f"https://{DOMAIN}/api/health").stdout for _ in range(12)]
        assert codes == ["200"] * 12, codes
    finally:
        host.check_output("docker start api-1")
        # The host has no curl: its own Python asks api-1's published port.
        health = ("python3 -c \"import urllib.request; "
                  "urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)\"")
        deadline = time.monotonic() + 60
        while host.run(health).rc != 0 and time.monotonic() < deadline:
            time.sleep(1)
    assert host.run(health).rc == 0
