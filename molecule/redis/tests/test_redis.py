"""The redis role, probed with the real redis-cli inside each test host and with raw RESP
from outside it, as an app container on another host would connect."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

# The whole inventory folder: molecule keeps the groups and group_vars beside the file it names.
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
testinfra_hosts = RUNNER.get_hosts("redis")

PORT = "6379"
BACKUP_DIR = "/var/backups/platform/redis"
DENIED = [["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["DEBUG", "SLEEP", "0"],
          ["SHUTDOWN", "NOSAVE"], ["KEYS", "*"]]


@pytest.fixture(scope="module")
def hostvars(host):
    """The test host's inventory variables (the docker backend's host name is its inventory name)."""
    return RUNNER.get_variables(host.backend.get_hostname())


def cli(host, hostvars, user: str | None, *command: str) -> str:
    """redis-cli on the test host as `user` (None: without a password); returns the reply."""
    if user is None:
        result = host.run("redis-cli -p %s " + " ".join(["%s"] * len(command)), PORT, *command)
    else:
        secrets = hostvars["platform_secrets"]
        password = secrets["redis_password"] if user == "default" else secrets["redis_app_password"]
        result = host.run("REDISCLI_AUTH=%s redis-cli -p %s --user %s " + " ".join(["%s"] * len(command)),
                          password, PORT, user, *command)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def info(host, hostvars, section: str) -> dict[str, str]:
    lines = cli(host, hostvars, "default", "INFO", section).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def resp(address: str, *command: str, port: str = PORT) -> bytes:
    """One command in the Redis protocol over TCP; returns the raw first reply line."""
    request = f"*{len(command)}\r\n".encode() + b"".join(
        f"${len(part)}\r\n{part}\r\n".encode() for part in command)
    with socket.create_connection((address, int(port)), timeout=5) as conn:
        conn.sendall(request)
        return conn.recv(4096).split(b"\r\n", 1)[0]


def network_address(host) -> str:
    return host.interface("eth0").addresses[0]


def test_service_running_and_enabled(host):
    service = host.service("redis-server")
    assert service.is_running
    assert service.is_enabled


def test_without_password_is_refused(host, hostvars):
    assert cli(host, hostvars, None, "PING").startswith("NOAUTH")
    assert cli(host, hostvars, None, "GET", "anything").startswith("NOAUTH")


def test_wrong_password_is_refused(host):
    reply = host.run("REDISCLI_AUTH=not-the-password redis-cli -p %s --user platform PING", PORT)
    assert "WRONGPASS" in reply.stdout + reply.stderr


def test_app_user_can_set_and_get(host, hostvars):
    value = uuid.uuid4().hex
    assert cli(host, hostvars, "platform", "SET", "platform:test:setget", value) == "OK"
    assert cli(host, hostvars, "platform", "GET", "platform:test:setget") == value
    assert cli(host, hostvars, "platform", "DEL", "platform:test:setget") == "1"


@pytest.mark.parametrize("user", ["platform", "default"])
@pytest.mark.parametrize("command", DENIED, ids=lambda command: command[0])
def test_dangerous_commands_are_refused(host, hostvars, user, command):
    reply = cli(host, hostvars, user, *command)
    if command[0] == "DEBUG":  # enable-debug-command no refuses it before the ACL is asked
        assert reply.startswith(("NOPERM", "ERR DEBUG command not allowed"))
    else:
        assert reply.startswith("NOPERM")
    assert cli(host, hostvars, user, "PING") == "PONG"


def test_default_user_may_read_info_but_not_manage_users(host, hostvars):
    assert "redis_version" in info(host, hostvars, "server")
    assert cli(host, hostvars, "default", "ACL", "LIST").startswith("NOPERM")


def test_data_survives_a_restart(host, hostvars):
    value = uuid.uuid4().hex
    assert cli(host, hostvars, "platform", "SET", "platform:test:durable", value) == "OK"
    host.run_expect([0], "systemctl restart redis-server")
    assert cli(host, hostvars, "platform", "GET", "platform:test:durable") == value
    assert info(host, hostvars, "persistence")["aof_enabled"] == "1"


def test_data_from_before_the_role_is_kept(host, hostvars):
    if not hostvars.get("preexisting_redis"):
        pytest.skip("this host started without Redis")
    assert cli(host, hostvars, "platform", "GET", "platform:preexisting") == "kept"


def test_memory_limit_and_policy_in_effect(host, hostvars):
    memory = info(host, hostvars, "memory")
    if "redis_maxmemory" in hostvars:
        assert hostvars["redis_maxmemory"] == "64mb"
        expected = 64 * 1024 * 1024
    else:
        memtotal_kb = int(host.file("/proc/meminfo").content_string.split()[1])
        expected = int(memtotal_kb // 1024 * hostvars["redis_maxmemory_fraction"]) * 1024 * 1024
    assert int(memory["maxmemory"]) == expected
    assert memory["maxmemory_policy"] == hostvars.get("redis_maxmemory_policy", "allkeys-lru")


def test_persistence_settings(host):
    config = host.file("/etc/redis/redis.conf")
    assert config.user == "root"
    assert config.group == "redis"
    assert config.mode == 0o640
    lines = config.content_string.splitlines()
    for line in ["appendonly yes", "appendfsync everysec", "save 900 1", "save 300 10", "save 60 10000"]:
        assert line in lines


def test_users_file_is_private(host):
    users = host.file("/etc/redis/users.conf")
    assert users.user == "root"
    assert users.group == "redis"
    assert users.mode == 0o640
    assert "molecule-" not in users.content_string  # hashes, not the passwords


def test_kernel_settings(host):
    """somaxconn belongs to the container's network namespace and is applied; overcommit
    belongs to the kernel the container shares with its host, so it is only written down."""
    written = dict(line.replace(" ", "").split("=", 1)
                   for line in host.file("/etc/sysctl.d/60-redis.conf").content_string.splitlines()
                   if "=" in line and not line.startswith("#"))
    assert written == {"vm.overcommit_memory": "1", "net.core.somaxconn": "4096"}
    assert host.sysctl("net.core.somaxconn") == 4096
    assert "tcp-backlog 511" in host.file("/etc/redis/redis.conf").content_string.splitlines()


def test_listens_on_loopback(host):
    assert host.socket(f"tcp://127.0.0.1:{PORT}").is_listening


def test_listens_on_platform_gateway_only_on_app_hosts(host, hostvars):
    gateway = host.socket(f"tcp://{hostvars['platform_network_gateway']}:{PORT}")
    assert gateway.is_listening == (hostvars["inventory_hostname"] in hostvars["groups"]["app"])


def test_network_address_answers_only_where_remote_apps_exist(host, hostvars):
    """From outside the test host: only a host with app hosts elsewhere listens on its network
    address, and there a client without a password gets NOAUTH."""
    address = network_address(host)
    remote_apps = [name for name in hostvars["groups"]["app"] if name != hostvars["inventory_hostname"]]
    if remote_apps:
        assert resp(address, "PING").startswith(b"-NOAUTH")
    else:
        with pytest.raises(ConnectionRefusedError):
            resp(address, "PING")


TLS_PORT = "6380"
TLS_DIR = "/etc/redis/tls"


def test_tls_port_only_where_remote_apps_exist(host, hostvars):
    """A host with app hosts elsewhere serves them on the TLS port, with a certificate for
    its address signed by the platform CA (prepare.yml made it; no public CA signs it); the
    app user's PING works over TLS and a plain-text client on that port gets nothing."""
    address = network_address(host)
    remote_apps = [name for name in hostvars["groups"]["app"] if name != hostvars["inventory_hostname"]]
    if not remote_apps:
        assert not host.socket(f"tcp://0.0.0.0:{TLS_PORT}").is_listening
        assert not host.file(TLS_DIR).exists
        return
    platform_ca = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "platform_ca.pem").read_text()
    ca_certificate = platform_ca[platform_ca.index("-----BEGIN CERTIFICATE-----"):]
    assert host.file(f"{TLS_DIR}/ca.crt").content_string.strip() == ca_certificate.strip()
    key = host.file(f"{TLS_DIR}/server.key")
    assert (key.user, key.mode) == ("redis", 0o600)
    for ca, verified in ((f"{TLS_DIR}/ca.crt", True), ("/etc/ssl/certs/ca-certificates.crt", False)):
        # The name the certificate holds for this host (no ansible_host here: its inventory name).
        name = hostvars["inventory_hostname"]
        handshake = host.run(f"openssl s_client -connect {address}:{TLS_PORT} -CAfile {ca} -verify_hostname {name} "
                             "-verify_return_error -brief </dev/null")
        assert (handshake.rc == 0) == verified, handshake.stdout + handshake.stderr
    ping = host.run("REDISCLI_AUTH=%s redis-cli --tls --cacert %s -h %s -p %s --user %s PING",
                    hostvars["platform_secrets"]["redis_app_password"], f"{TLS_DIR}/ca.crt", address, TLS_PORT,
                    "platform")
    assert ping.stdout.strip() == "PONG", ping.stdout + ping.stderr
    try:
        reply = resp(address, "PING", port=TLS_PORT)
    except OSError:  # reset, or no answer
        reply = b""
    assert not reply.startswith((b"+", b"-")), f"a plain-text client got a Redis reply: {reply!r}"


def ansible_playbook(playbook: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY, str(playbook), *extra]
    return subprocess.run(command, cwd=PROJECT, text=True, capture_output=True, check=False)


def test_a_rotated_password_applies_on_the_next_run(host, hostvars):
    """installer.py secrets --rotate changes the vault; the next converge makes Redis use it."""
    if hostvars["inventory_hostname"] != max(testinfra_hosts):
        pytest.skip("two converges: run on one host only")
    converge = Path(__file__).resolve().parents[1] / "converge.yml"
    limit = ["--limit", hostvars["inventory_hostname"]]
    old = hostvars["platform_secrets"]["redis_app_password"]
    rotated = {"platform_secrets": {**hostvars["platform_secrets"], "redis_app_password": "rotated-app-password"}}
    try:
        run = ansible_playbook(converge, *limit, "-e", json.dumps(rotated))
        assert run.returncode == 0, run.stdout + run.stderr
        ping = "REDISCLI_AUTH=%s redis-cli -p %s --user platform PING"
        assert host.run(ping, "rotated-app-password", PORT).stdout.strip() == "PONG"
        refused = host.run(ping, old, PORT)
        assert "WRONGPASS" in refused.stdout + refused.stderr
    finally:
        restore = ansible_playbook(converge, *limit)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert cli(host, hostvars, "platform", "PING") == "PONG"


def run_backup(*extra: str) -> subprocess.CompletedProcess:
    return ansible_playbook(PROJECT / "playbooks" / "backup.yml", "--tags", "redis", *extra)


def test_health_probes_pass_and_fail(hostvars):
    """tasks/verify.yml passes on the converged host and fails when a password is wrong."""
    health = Path(__file__).resolve().parents[1] / "health.yml"
    limit = ["--limit", hostvars["inventory_hostname"]]
    passing = ansible_playbook(health, *limit)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    wrong = {"platform_secrets": {**hostvars["platform_secrets"], "redis_app_password": "not-the-password"}}
    failing = ansible_playbook(health, *limit, "-e", json.dumps(wrong))
    assert failing.returncode != 0
    assert "did not answer PING as user platform" in failing.stdout
    assert "WRONGPASS" in failing.stdout
    assert "not-the-password" not in failing.stdout


@pytest.fixture(scope="module")
def backups(host, hostvars):
    """Two runs of playbooks/backup.yml (its Redis part) for this host, keeping one snapshot: the
    key written between the runs must be in the file that is kept."""
    keep_one = ["--limit", hostvars["inventory_hostname"], "-e", json.dumps({"redis_backup_keep": 1})]
    first = run_backup(*keep_one)
    assert first.returncode == 0, first.stdout + first.stderr
    first_files = host.run("ls %s", BACKUP_DIR).stdout.split()
    key = f"platform:test:backup:{uuid.uuid4().hex[:8]}"
    assert cli(host, hostvars, "platform", "SET", key, "x") == "OK"
    time.sleep(1.1)  # snapshots are named by the second they were written
    second = run_backup(*keep_one)
    assert second.returncode == 0, second.stdout + second.stderr
    return first_files, host.run("ls %s", BACKUP_DIR).stdout.split(), key, second.stdout


def test_backup_writes_a_valid_snapshot(host, backups):
    _, files, key, _ = backups
    assert len(files) == 1
    snapshot = host.file(f"{BACKUP_DIR}/{files[0]}")
    assert snapshot.mode == 0o600
    assert snapshot.content[:5] == b"REDIS"
    assert key.encode() in snapshot.content
    check = host.run("redis-check-rdb %s", snapshot.path)
    assert check.rc == 0, check.stdout


def test_backup_keeps_only_the_newest(backups):
    first, files, _, _ = backups
    assert len(first) == 1
    assert files[0] > first[0]


def test_backup_output_holds_no_password(backups, hostvars):
    *_, output = backups
    for secret in hostvars["platform_secrets"].values():
        assert secret not in output


def test_the_timer_takes_a_snapshot_with_the_settings_it_was_given(host, hostvars):
    """platform-redis-snapshot.timer runs hourly; the unit it starts (the program installer.py
    backup runs) writes a snapshot holding a key set just before, with its root-only settings."""
    timer = host.service("platform-redis-snapshot.timer")
    assert timer.is_enabled and timer.is_running
    calendar = host.check_output("systemctl show -P TimersCalendar platform-redis-snapshot.timer")
    assert "OnCalendar=*-*-* *:00:00" in calendar, calendar
    settings = host.file("/etc/platform/redis-snapshot.env")
    assert (settings.user, settings.mode) == ("root", 0o600)
    before = set(host.run("ls %s", BACKUP_DIR).stdout.split())
    key = f"platform:test:timer:{uuid.uuid4().hex[:8]}"
    assert cli(host, hostvars, "platform", "SET", key, "x") == "OK"
    time.sleep(1.1)  # snapshots are named by the second they were written
    started = host.run("systemctl start platform-redis-snapshot.service")
    assert started.rc == 0, host.run("journalctl -u platform-redis-snapshot.service -n 20 --no-pager").stdout
    new = set(host.run("ls %s", BACKUP_DIR).stdout.split()) - before
    assert len(new) == 1, new
    assert key.encode() in host.file(f"{BACKUP_DIR}/{new.pop()}").content
