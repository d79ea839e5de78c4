"""Point-in-time recovery end to end: real data written with psql, playbooks/restore.yml run
from this test process against the scenario's inventory, the result read back with psql."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import testinfra.utils.ansible_runner

ROOT = Path(__file__).resolve().parents[3]
INVENTORY = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("postgres")
assert testinfra_hosts, f"no host of group postgres in {INVENTORY}: every test would be skipped"

APP_PASSWORD = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_variables(
    testinfra_hosts[0])["platform_secrets"]["postgresql_app_password"]
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^\S+\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def restore_command(target_time: str | None) -> list[str]:
    """How a restore is started (to become `installer.py restore --target-time T | --latest`)."""
    target = {"restore_target_time": target_time} if target_time else {"restore_latest": True}
    return [str(BIN / "ansible-playbook"), "-i", INVENTORY, str(ROOT / "playbooks" / "restore.yml"),
            "-e", json.dumps(target)]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False, timeout=1200)
    sys.stdout.write(proc.stdout)
    return proc


def app_sql(host, sql: str) -> str:
    """psql as the application user over TCP, as the app containers connect."""
    return host.check_output(
        f"PGPASSWORD={shlex.quote(APP_PASSWORD)} psql -h 127.0.0.1 -U platform -d platform "
        f"-v ON_ERROR_STOP=1 -Atc {shlex.quote(sql)}")


def superuser_sql(host, sql: str) -> str:
    return host.check_output(f"runuser -u postgres -- psql -d postgres -Atc {shlex.quote(sql)}")


def backups(host, kind: str) -> list[str]:
    info = json.loads(host.check_output("runuser -u postgres -- pgbackrest --stanza=platform --output=json info"))
    return [backup["label"] for backup in info[0]["backup"] if backup["type"] == kind]


def server_time(host) -> str:
    return superuser_sql(host, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'")


def test_backup_playbook_takes_a_differential_backup(host):
    before = backups(host, "diff")
    result = run([str(BIN / "ansible-playbook"), "-i", INVENTORY, str(ROOT / "playbooks" / "backup.yml"),
                  "-e", "backup_type=diff"])
    assert result.returncode == 0, "backup failed (output above)"
    assert len(set(backups(host, "diff")) - set(before)) == 1


def test_target_before_the_first_backup_is_refused_and_nothing_stops(host):
    started = superuser_sql(host, "SELECT pg_postmaster_start_time()")
    result = run(restore_command("2000-01-01 00:00:00+00"))
    assert result.returncode != 0
    assert "Cannot restore to 2000-01-01 00:00:00+00" in result.stdout
    assert "Nothing was stopped or changed" in result.stdout
    assert superuser_sql(host, "SELECT pg_postmaster_start_time()") == started
    assert superuser_sql(host, "SELECT pg_is_in_recovery()") == "f"


def test_restore_to_a_time_brings_back_what_was_there_then(host):
    app_sql(host, "CREATE TABLE pitr_probe (row_name text); INSERT INTO pitr_probe VALUES ('A')")
    time.sleep(1.5)  # the target has whole seconds: keep row A's commit before it
    target = server_time(host)
    time.sleep(1.5)
    app_sql(host, "INSERT INTO pitr_probe VALUES ('B')")
    app_sql(host, "DROP TABLE pitr_probe")
    backups_before = backups(host, "full")

    result = run(restore_command(target))

    assert result.returncode == 0, "restore failed (output above)"
    assert f"to {target}" in result.stdout
    assert app_sql(host, "SELECT string_agg(row_name, ',' ORDER BY row_name) FROM pitr_probe") == "A"
    assert superuser_sql(host, "SELECT pg_is_in_recovery()") == "f"
    app_sql(host, "INSERT INTO pitr_probe VALUES ('C')")
    assert app_sql(host, "SELECT count(*) FROM pitr_probe WHERE row_name = 'C'") == "1"
    new_backups = set(backups(host, "full")) - set(backups_before)
    assert len(new_backups) == 1, f"expected one new full backup, got {new_backups}"
    assert host.run("runuser -u postgres -- pgbackrest --stanza=platform check").rc == 0


def test_restore_to_the_latest_keeps_every_commit(host):
    app_sql(host, "INSERT INTO pitr_probe VALUES ('D')")
    result = run(restore_command(None))
    assert result.returncode == 0, "restore failed (output above)"
    assert "to the end of the archived WAL" in result.stdout
    assert app_sql(host, "SELECT string_agg(row_name, ',' ORDER BY row_name) FROM pitr_probe") == "A,C,D"
    assert superuser_sql(host, "SELECT pg_is_in_recovery()") == "f"


def test_converge_after_the_restore_changes_nothing(host):
    converge = ROOT / "molecule" / "postgresql" / "converge.yml"
    result = run([str(BIN / "ansible-playbook"), "-i", INVENTORY, str(converge)])
    assert result.returncode == 0, "converge failed (output above)"
    recap = [tuple(map(int, m)) for m in RECAP.findall(result.stdout)]
    assert recap, "no PLAY RECAP in the output"
    assert all(counts == (0, 0, 0) for counts in recap), f"converge after the restore was not clean: {recap}"
