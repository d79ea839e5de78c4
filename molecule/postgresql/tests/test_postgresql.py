"""PostgreSQL with pgBackRest, probed with the real clients (psql, pgbackrest) on each host."""

from __future__ import annotations

import json
import os
import shlex

import pytest
import testinfra.utils.ansible_runner

# The inventory directory: molecule keeps the scenario's groups beside the file it names.
INVENTORY = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("postgres")
assert testinfra_hosts, f"no host of group postgres in {INVENTORY}: every test would be skipped"

SECRETS = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_variables(testinfra_hosts[0])["platform_secrets"]
APP_PASSWORD = SECRETS["postgresql_app_password"]
READER_PASSWORD = SECRETS["postgresql_platform_reader_password"]
MAX_CONNECTIONS = 200


def psql_tcp(host, user: str, password: str, sql: str, database: str = "platform"):
    """psql over TCP to 127.0.0.1 inside the test host, with a password."""
    return host.run(
        f"PGPASSWORD={shlex.quote(password)} PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -U {user} -d {database} "
        f"-v ON_ERROR_STOP=1 -Atc {shlex.quote(sql)}")


def psql_superuser(host, sql: str, database: str = "postgres") -> str:
    """psql through the local socket as the OS user postgres (peer authentication)."""
    return host.check_output(f"runuser -u postgres -- psql -d {database} -Atc {shlex.quote(sql)}")


def setting_bytes(host, name: str) -> int:
    return int(psql_superuser(host, f"SELECT pg_size_bytes(current_setting('{name}'))"))


def expected_tuning(host) -> dict[str, int]:
    """The role's derivation, recomputed from what the host reports."""
    memory_mb = int(host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo")) // 1024
    cpus = int(host.check_output("grep -c ^processor /proc/cpuinfo"))
    shared_buffers = int(memory_mb * 0.25)
    per_gather = min(max(cpus // 2, 1), 4)
    return {
        "shared_buffers": shared_buffers,
        "effective_cache_size": int(memory_mb * 0.75),
        "maintenance_work_mem": min(memory_mb // 16, 2048),
        "work_mem": max(int((memory_mb - shared_buffers) / (MAX_CONNECTIONS * 3) / per_gather), 4),
        "max_parallel_workers_per_gather": per_gather,
    }


def test_app_user_connects_over_tcp_with_its_password(host):
    result = psql_tcp(host, "platform", APP_PASSWORD, "SELECT current_user || ' ' || current_database()")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "platform platform"


def test_app_user_password_is_scram(host):
    stored = psql_superuser(host, "SELECT rolpassword FROM pg_authid WHERE rolname = 'platform'")
    assert stored.startswith("SCRAM-SHA-256$")


def test_wrong_password_is_refused(host):
    result = psql_tcp(host, "platform", "not-the-password", "SELECT 1")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_superuser_cannot_connect_over_tcp(host):
    result = psql_tcp(host, "postgres", APP_PASSWORD, "SELECT 1", database="postgres")
    assert result.rc != 0
    assert "pg_hba.conf rejects connection" in result.stderr


def test_app_user_owns_its_database_and_reader_only_reads(host):
    owner = psql_tcp(host, "platform", APP_PASSWORD,
                     "DROP TABLE IF EXISTS probe; CREATE TABLE probe (id int); INSERT INTO probe VALUES (7)")
    assert owner.rc == 0, owner.stderr
    read = psql_tcp(host, "platform_reader", READER_PASSWORD, "SELECT id FROM probe")
    assert read.rc == 0, read.stderr
    assert read.stdout.strip() == "7"
    write = psql_tcp(host, "platform_reader", READER_PASSWORD, "INSERT INTO probe VALUES (8)")
    assert write.rc != 0
    assert "permission denied" in write.stderr


def test_only_the_superuser_is_a_superuser(host):
    assert psql_superuser(host, "SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolsuper") == "postgres"


@pytest.mark.parametrize("name", ["shared_buffers", "effective_cache_size", "maintenance_work_mem", "work_mem"])
def test_memory_settings_are_derived_from_the_host(host, name):
    assert setting_bytes(host, name) == expected_tuning(host)[name] * 1024 * 1024


def test_other_settings_in_effect(host):
    expected = {
        "max_connections": str(MAX_CONNECTIONS),
        "max_parallel_workers_per_gather": str(expected_tuning(host)["max_parallel_workers_per_gather"]),
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        "password_encryption": "scram-sha-256",
        "listen_addresses": "localhost",
        "shared_preload_libraries": "pg_stat_statements",
        "log_min_duration_statement": "1s",
        "log_connections": "on",
        "archive_mode": "on",
        "archive_command": "pgbackrest --stanza=platform archive-push %p",
        "archive_timeout": "1min",
        "wal_level": "replica",
        "ssl": "on",
    }
    shown = {name: psql_superuser(host, f"SHOW {name}") for name in expected}
    assert shown == expected


def test_no_setting_waits_for_a_restart(host):
    assert psql_superuser(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_pg_stat_statements_collects(host):
    count = psql_superuser(host, "SELECT count(*) > 0 FROM pg_stat_statements", database="platform")
    assert count == "t"


def test_pgbackrest_has_a_full_backup(host):
    info = json.loads(host.check_output("runuser -u postgres -- pgbackrest --stanza=platform --output=json info"))
    stanza = info[0]
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert [backup for backup in stanza["backup"] if backup["type"] == "full"]


def test_pgbackrest_check_passes(host):
    result = host.run("runuser -u postgres -- pgbackrest --stanza=platform check")
    assert result.rc == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["full", "diff"])
def test_backup_timers_are_enabled(host, kind):
    timer = host.service(f"pgbackrest-{kind}.timer")
    assert timer.is_enabled
    assert timer.is_running
    assert host.check_output(f"systemctl show -P Unit pgbackrest-{kind}.timer") == f"pgbackrest-backup@{kind}.service"


def backup_labels(host, kind: str) -> set[str]:
    info = json.loads(host.check_output("runuser -u postgres -- pgbackrest --stanza=platform --output=json info"))
    return {backup["label"] for backup in info[0]["backup"] if backup["type"] == kind}


def test_the_unit_the_timer_starts_takes_a_backup(host):
    """What the nightly timer runs, run now: it succeeds and leaves a new differential backup."""
    before = backup_labels(host, "diff")
    run = host.run("systemctl start pgbackrest-backup@diff.service")
    assert run.rc == 0, host.run("journalctl -u pgbackrest-backup@diff.service -n 30 --no-pager").stdout
    assert host.check_output("systemctl show -P Result pgbackrest-backup@diff.service") == "success"
    assert len(backup_labels(host, "diff") - before) == 1
