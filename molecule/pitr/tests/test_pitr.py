"""Point-in-time recovery and backups end to end, through installer.py: real data written
with psql and redis-cli, `installer.py backup` and `installer.py restore` run from this test
process against an inventory folder for the scenario's host, the result read back with psql."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
import yaml
from drill import SCRATCH, archive_now, heartbeat, result, stale_heartbeat
from installer_runs import changed_tasks, outcome

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from platformctl import inventory as inventories  # noqa: E402
from platformctl.secrets import SecretStore  # noqa: E402

INVENTORY = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS_DIR = EPHEMERAL / "secrets"
MOLECULE_YML = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())
SCENARIO = MOLECULE_YML["provisioner"]["inventory"]
SCENARIO_PLATFORMS = {platform["name"]: platform for platform in MOLECULE_YML["platforms"]}
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("postgres")
assert testinfra_hosts, f"no host of group postgres in {INVENTORY}: every test would be skipped"
# The host of the S3 stand-in (prepare.yml) and the backup repository host, which outlive
# the database host.
S3_STORE = testinfra.get_host(f"ansible://pitr-s3?ansible_inventory={INVENTORY}")
REPOSITORY_HOST_NAME = "pitr-backup"
REPOSITORY_HOST = testinfra.get_host(f"ansible://{REPOSITORY_HOST_NAME}?ansible_inventory={INVENTORY}")
# The database host's user on the repository host for its files, and its folder there.
FILES_USER = f"pf-{testinfra_hosts[0]}"
FILES_FOLDER = f"/var/lib/platform-files/{FILES_USER}"
SFTP = ("-i /etc/platform/backup/ssh_key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile=/etc/platform/backup/known_hosts {FILES_USER}@{REPOSITORY_HOST_NAME}")

SECRETS = SCENARIO["group_vars"]["all"]["platform_secrets"]
# The S3 stand-in's access key, which prepare.yml had it make (the inventory reads this file).
S3_CREDENTIALS = json.loads((EPHEMERAL / "s3-credentials.json").read_text())
APP_PASSWORD = SECRETS["postgresql_app_password"]
REDIS_BACKUP_DIR = "/var/backups/platform/redis"
REPOSITORIES = (1, 2)  # on the repository host, and S3 (a stand-in, see prepare.yml)
S3_OBJECT = "pgbackrest/backup/platform/backup.info"  # under postgresql_pgbackrest_s3_path
# The backup role's program: restic with the role's settings (`files-backup restic ARGS`).
FILES_BACKUP = "/usr/local/lib/platform/files-backup"
FILES_SETTINGS = "/etc/platform/backup/restic.env"
# Written into Redis before installer.py backup; the host-loss test finds it again.
BACKED_UP_KEY = f"platform:test:pitr:{uuid.uuid4().hex[:8]}"
BIN = Path(sys.executable).parent
# The roles this scenario runs, through installer.py's site.yml (--tags).
ROLES_RUN = "backup_repository,postgresql,redis,backup"
RECAP = re.compile(r"^\S+\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@pytest.fixture(scope="module")
def operator_inventory() -> Path:
    """The inventory folder an operator would keep for this host: the scenario's groups and
    variables, the docker connection in place of SSH, and the scenario's passwords in the
    installer's vault file (as an operator moves a running database's existing passwords in)."""
    folder = EPHEMERAL / "operator-inventory"
    (folder / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    groups = {name: group for name, group in SCENARIO["hosts"]["all"]["children"].items() if name != "s3store"}
    hosts = {"all": {"vars": {"ansible_connection": "community.docker.docker"}, "children": groups}}
    (folder / "hosts.yml").write_text(yaml.safe_dump(hosts))
    settings = {k: v for k, v in SCENARIO["group_vars"]["all"].items()
                if k not in ("platform_secrets", "pitr_s3_credentials")}
    settings |= {"postgresql_pgbackrest_s3_key": S3_CREDENTIALS["key"],
                 "postgresql_pgbackrest_s3_key_secret": S3_CREDENTIALS["secret"]}
    (folder / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump(settings))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLATFORMCTL_SECRETS_DIR", str(SECRETS_DIR))
        # The CA prepare.yml made, which the scenario's inventory reads from its file.
        SecretStore(inventories.resolve(str(folder))).save(
            SECRETS | {"platform_ca": (EPHEMERAL / "platform_ca.pem").read_text()})
    return folder


def installer(inventory: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """installer.py COMMAND ... --yes --json; returns the process and its JSON summary."""
    summary = EPHEMERAL / f"{args[0]}-{uuid.uuid4().hex[:8]}.json"
    env = dict(os.environ, PLATFORMCTL_SECRETS_DIR=str(SECRETS_DIR))
    proc = subprocess.run([sys.executable, str(ROOT / "installer.py"), *args, "--inventory", str(inventory),
                           "--yes", "--json", str(summary)],
                          cwd=ROOT, env=env, text=True, capture_output=True, check=False, timeout=1800)
    sys.stdout.write(proc.stdout + proc.stderr)
    return proc, json.loads(summary.read_text()) if summary.is_file() else {}


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


def info(host) -> dict:
    return json.loads(host.check_output("runuser -u postgres -- pgbackrest --stanza=platform --output=json info"))[0]


def backups(host, kind: str, repo: int = 1) -> list[str]:
    """Labels of the backups of this kind in repository 1 (the repository host's) or 2 (S3)."""
    return [backup["label"] for backup in info(host)["backup"]
            if backup["type"] == kind and backup["database"]["repo-key"] == repo]


def server_time(host) -> str:
    return superuser_sql(host, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'")


def timeline(host) -> int:
    return int(superuser_sql(host, "SELECT timeline_id FROM pg_control_checkpoint()"))


def redis_cli(host, *command: str) -> str:
    return host.check_output("REDISCLI_AUTH=%s redis-cli --user platform " + " ".join(["%s"] * len(command)),
                             SECRETS["redis_app_password"], *command)


def redis_snapshots(host) -> set[str]:
    return set(host.run("ls %s", REDIS_BACKUP_DIR).stdout.split())


def test_s3_repository_is_encrypted_and_has_a_full_backup(host):
    """repo2 is the S3 stand-in: the stanza and a first full backup are there, and what the
    store holds is encrypted (OpenSSL's "Salted__" header, not pgBackRest's plain text)."""
    s3 = next(repo for repo in info(host)["repo"] if repo["key"] == 2)
    assert s3["status"]["code"] == 0, s3
    assert s3["cipher"] == "aes-256-cbc"
    assert backups(host, "full", 2)
    assert read_s3_object(S3_CREDENTIALS["key"], S3_CREDENTIALS["secret"]).stdout == "Salted__"


def test_the_repository_host_holds_the_backups_encrypted(host):
    """repo1 is on the backup repository host: the database host keeps no repository of its
    own, the stanza and its full backup are in the repository host's folder, encrypted (the
    backup list starts with OpenSSL's "Salted__" header, not pgBackRest's plain text), and the
    backup timers run there, not on the database host."""
    repo1 = next(repo for repo in info(host)["repo"] if repo["key"] == 1)
    assert repo1["status"]["code"] == 0, repo1
    assert backups(host, "full", 1)
    assert not any(host.file(f"/var/lib/pgbackrest/{kind}").exists for kind in ("archive", "backup"))
    stanzas = json.loads(REPOSITORY_HOST.check_output("runuser -u pgbackrest -- pgbackrest --output=json info"))
    assert [(stanza["name"], stanza["status"]["code"]) for stanza in stanzas] == [("platform", 0)], stanzas
    assert stanzas[0]["repo"][0]["cipher"] == "aes-256-cbc"
    assert REPOSITORY_HOST.check_output("head -c 8 /var/lib/pgbackrest/backup/platform/backup.info") == "Salted__"
    for timer in ("pgbackrest-full.timer", "pgbackrest-diff.timer"):
        assert REPOSITORY_HOST.service(timer).is_enabled and REPOSITORY_HOST.service(timer).is_running, timer
        on_database_host = host.run("systemctl is-enabled %s", timer).stdout.strip()
        assert on_database_host in ("", "disabled", "not-found"), f"{timer} is {on_database_host} on the database host"


def repo1_status(on, user: str, *options: str) -> int:
    """pgbackrest info's status code of repo1 asked from this host as this user, with these
    options or environment over the configuration; the command's exit code when it fails."""
    proc = on.run(" ".join([*options, "runuser", "-u", user, "--", "pgbackrest", "--stanza=platform", "--repo=1",
                            "--output=json", "info"]))
    return json.loads(proc.stdout)[0]["repo"][0]["status"]["code"] if proc.rc == 0 else proc.rc


def test_the_repository_host_lets_in_only_the_database_hosts_certificates(host):
    """pgBackRest's TLS server on the repository host: the database host's certificate opens
    the repository (positive control); a certificate under the same name that the platform CA
    did not sign is refused, and so is one the platform CA signed for a host that is not a
    database host (the repository host's own, presented to itself)."""
    name = testinfra_hosts[0]
    assert repo1_status(host, "postgres") == 0
    host.check_output(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=%s "
        "-addext subjectAltName=DNS:%s -keyout /tmp/foreign.key -out /tmp/foreign.crt && chmod 0644 /tmp/foreign.*",
        name, name)
    foreign = ("PGBACKREST_REPO1_HOST_CERT_FILE=/tmp/foreign.crt", "PGBACKREST_REPO1_HOST_KEY_FILE=/tmp/foreign.key")
    assert repo1_status(host, "postgres", *foreign) != 0
    tls = "/etc/pgbackrest/tls"
    itself = ("PGBACKREST_REPO1_HOST=pitr-backup", "PGBACKREST_REPO1_HOST_TYPE=tls",
              f"PGBACKREST_REPO1_HOST_CERT_FILE={tls}/server.crt", f"PGBACKREST_REPO1_HOST_KEY_FILE={tls}/server.key",
              f"PGBACKREST_REPO1_HOST_CA_FILE={tls}/ca.crt")
    assert repo1_status(REPOSITORY_HOST, "pgbackrest") == 0
    assert repo1_status(REPOSITORY_HOST, "pgbackrest", *itself) != 0


def read_s3_object(key: str, secret: str):
    """The first bytes of S3_OBJECT, read with boto3 on the store's host with this access key."""
    bucket = SCENARIO["group_vars"]["all"]["postgresql_pgbackrest_s3_bucket"]
    read_object = (
        "import sys, boto3; sys.stdout.buffer.write(boto3.client('s3', endpoint_url='https://s3.pitr.test:9000', "
        f"region_name='us-east-1', verify='/opt/s3-standin/ca.crt', aws_access_key_id='{key}', "
        f"aws_secret_access_key='{secret}').get_object(Bucket='{bucket}', Key='{S3_OBJECT}')['Body'].read()[:8])")
    return S3_STORE.run("/opt/s3-standin/venv/bin/python -c %s", read_object)


def repo2_status(host, environment: str = "") -> dict:
    """The S3 repository's status as pgBackRest's info reports it (it exits 0 either way),
    run as postgres with `environment` (VAR=value) before it."""
    repo = host.run(f"{environment} runuser -u postgres -- pgbackrest --stanza=platform --repo=2 info --output=json")
    assert repo.rc == 0, repo.stdout + repo.stderr
    return json.loads(repo.stdout)[0]["repo"][0]["status"]


def test_s3_store_refuses_a_wrong_key(host):
    """The stand-in checks keys and signatures as real S3 does: the right key reads (positive
    control), a wrong secret or an unknown key is refused, and so is pgBackRest with a wrong
    secret (the environment overrides its configuration file)."""
    assert read_s3_object(S3_CREDENTIALS["key"], S3_CREDENTIALS["secret"]).rc == 0
    wrong_secret = read_s3_object(S3_CREDENTIALS["key"], "not-" + S3_CREDENTIALS["secret"])
    assert wrong_secret.rc != 0 and "SignatureDoesNotMatch" in wrong_secret.stderr, wrong_secret.stderr
    unknown_key = read_s3_object("AKIAUNKNOWNKEY000000", S3_CREDENTIALS["secret"])
    assert unknown_key.rc != 0 and "InvalidAccessKeyId" in unknown_key.stderr, unknown_key.stderr
    assert repo2_status(host)["code"] == 0
    refused = repo2_status(host, "PGBACKREST_REPO2_S3_KEY_SECRET=wrong")
    assert refused["code"] != 0 and "SignatureDoesNotMatch" in refused["message"], refused


def files_snapshots(host) -> list[dict]:
    """The snapshots in the host's files repository, as restic lists them."""
    return json.loads(host.check_output(f"{FILES_BACKUP} restic snapshots --json"))


def restore_files(host, snapshot: str, *paths: str) -> str:
    """These paths of a files snapshot restored with restic into a new folder; returns it."""
    target = f"/tmp/files-restore-{uuid.uuid4().hex[:8]}"  # noqa: S108 (on the test host, a new name)
    includes = " ".join(f"--include {shlex.quote(path)}" for path in paths)
    host.check_output(f"{FILES_BACKUP} restic restore {snapshot} --target {target} {includes}")
    return target


def test_installer_backup_covers_postgresql_redis_and_the_files(host, operator_inventory):
    """installer.py backup: a differential pgBackRest backup, a fresh RDB snapshot holding a
    key written just before it, and a snapshot of the files in their restic repository in the
    S3 stand-in holding that RDB snapshot, the configuration, the app volume the inventory
    marks and the inventory, its vault file still encrypted. Restored with restic, each is as
    it was on the host."""
    diffs, snapshots = {repo: backups(host, "diff", repo) for repo in REPOSITORIES}, redis_snapshots(host)
    files_before = {snapshot["id"] for snapshot in files_snapshots(host)}
    key = BACKED_UP_KEY
    assert redis_cli(host, "SET", key, "x") == "OK"
    time.sleep(1.1)  # snapshots are named by the second they were written

    proc, summary = installer(operator_inventory, "backup")

    assert proc.returncode == 0, f"installer.py backup failed: {outcome(proc, summary)}"
    assert summary["exit_code"] == 0 and summary["failures"] == []
    for repo in REPOSITORIES:
        assert len(set(backups(host, "diff", repo)) - set(diffs[repo])) == 1, f"no new diff backup in repo {repo}"
    new_snapshots = redis_snapshots(host) - snapshots
    assert len(new_snapshots) == 1, f"expected one new snapshot in {REDIS_BACKUP_DIR}, got {new_snapshots}"
    snapshot = host.file(f"{REDIS_BACKUP_DIR}/{new_snapshots.pop()}")
    assert snapshot.content[:5] == b"REDIS"
    assert key.encode() in snapshot.content

    new_files = [s for s in files_snapshots(host) if s["id"] not in files_before]
    assert len(new_files) == 1, f"expected one new snapshot of the files, got {new_files}"
    assert new_files[0]["hostname"] == testinfra_hosts[0]
    vault_copy = "/var/lib/platform-backup/inventory/group_vars/all/secrets.yml"
    upload = "/var/lib/docker/volumes/uploads/_data/upload.txt"  # in the volume backup_app_volumes names
    target = restore_files(host, new_files[0]["id"], snapshot.path, "/etc/redis/redis.conf", vault_copy, upload)
    assert host.file(target + snapshot.path).sha256sum == snapshot.sha256sum
    assert host.file(target + upload).content == host.file(upload).content
    assert host.file(target + "/etc/redis/redis.conf").content == host.file("/etc/redis/redis.conf").content
    vault = host.file(target + vault_copy).content_string
    assert vault.startswith("$ANSIBLE_VAULT;") and "backed-up-still-encrypted" not in vault, vault[:200]
    report = summary["files"][testinfra_hosts[0]]
    assert report["snapshot"] == new_files[0]["short_id"] and report["files"] > 0, report
    # The database host's files went to the repository host; that host's own, to the store.
    printed = " ".join(proc.stdout.split())
    assert (f"files backed up as snapshot {report['snapshot']} "
            f"in sftp:{FILES_USER}@{REPOSITORY_HOST_NAME}:/repository") in printed
    assert summary["files"][REPOSITORY_HOST_NAME]["snapshot"] in printed
    bucket = SCENARIO["group_vars"]["all"]["postgresql_pgbackrest_s3_bucket"]
    assert f"in s3:https://s3.pitr.test:9000/{bucket}/files/{REPOSITORY_HOST_NAME}:" in printed
    for secret in SECRETS.values():
        assert secret not in proc.stdout + proc.stderr


def backed_up_marker(on) -> str:
    """A marker written into /etc on this host, backed up and restored (the positive control)."""
    marker = f"files-backup-marker-{uuid.uuid4().hex}"
    on.check_output(f"echo {marker} > /etc/platform-backup-probe")
    try:
        on.check_output("systemctl start platform-files-backup.service")
    finally:
        on.run("rm -f /etc/platform-backup-probe")
    target = restore_files(on, "latest", "/etc/platform-backup-probe")
    assert on.file(target + "/etc/platform-backup-probe").content_string.strip() == marker
    return marker


def test_files_backups_are_encrypted_where_they_are_kept_and_open_only_with_their_password(host):
    """What the repository host (the database host's files) and the store (the repository
    host's own) hold of the files' repositories is encrypted: a marker written into /etc and
    backed up is in the restored file and in no file or object there; and a repository does
    not open with another password."""
    marker = backed_up_marker(host)
    files, holding_marker = map(int, REPOSITORY_HOST.check_output(
        "find %s -type f | wc -l; grep -rlF %s %s | wc -l", FILES_FOLDER, marker, FILES_FOLDER).split())
    assert files > 0, f"the repository host holds nothing in {FILES_FOLDER}"
    assert holding_marker == 0, f"{holding_marker} of {files} files in {FILES_FOLDER} hold the marker in clear"

    marker = backed_up_marker(REPOSITORY_HOST)
    bucket = SCENARIO["group_vars"]["all"]["postgresql_pgbackrest_s3_bucket"]
    scan = (
        "import sys, boto3; s3 = boto3.client('s3', endpoint_url='https://s3.pitr.test:9000', region_name='us-east-1', "
        f"verify='/opt/s3-standin/ca.crt', aws_access_key_id='{S3_CREDENTIALS['key']}', "
        f"aws_secret_access_key='{S3_CREDENTIALS['secret']}'); "
        f"keys = [o['Key'] for page in s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}', "
        f"Prefix='files/{REPOSITORY_HOST_NAME}/') for o in page.get('Contents', [])]; "
        f"print(len(keys), sum(b'{marker}' in s3.get_object(Bucket='{bucket}', Key=k)['Body'].read() for k in keys))")
    objects, holding_marker = map(int, S3_STORE.check_output("/opt/s3-standin/venv/bin/python -c %s", scan).split())
    assert objects > 0, "the store holds nothing of the files' repository"
    assert holding_marker == 0, f"{holding_marker} of {objects} objects in the store hold the marker in clear"

    opened = f"set -a; . {FILES_SETTINGS}; {FILES_BACKUP} --latest"
    assert host.run(f"sh -c {shlex.quote(opened)}").rc == 0
    wrong = host.run("sh -c %s", f"set -a; . {FILES_SETTINGS}; echo not-the-password > /tmp/wrong-password; "
                     f"RESTIC_PASSWORD_FILE=/tmp/wrong-password {FILES_BACKUP} --latest")
    assert wrong.rc != 0 and "wrong password" in wrong.stderr, wrong.stdout + wrong.stderr


def test_a_hosts_files_user_on_the_repository_host_has_sftp_in_its_own_folder_only(host):
    """The database host's key, with the host key it trusts, lists its own folder over SFTP
    (the repository, nothing of the other hosts'); the same user gets no shell, and another key
    is not let in."""
    listing = host.run(f"echo 'ls -a /' | sftp -b - {SFTP}")
    assert listing.rc == 0, listing.stderr
    names = [name.rstrip("/").rsplit("/", 1)[-1] for line in listing.stdout.splitlines()
             if not line.startswith("sftp>") for name in line.split()]
    assert sorted(names) == [".", "..", "repository"], listing.stdout
    shell = host.run(f"ssh {SFTP} id")
    assert shell.rc != 0 and "uid=" not in shell.stdout, shell.stdout
    host.check_output("rm -f /root/other_key*; ssh-keygen -q -t ed25519 -N '' -f /root/other_key")
    other = host.run(f"echo 'ls /' | sftp -b - {SFTP.replace('/etc/platform/backup/ssh_key', '/root/other_key')}")
    assert other.rc != 0 and "Permission denied" in other.stderr, other.stderr


def drill_left_the_server_alone(host, started: str) -> None:
    """The running server was not restarted and the scratch instance is gone."""
    assert superuser_sql(host, "SELECT pg_postmaster_start_time()") == started
    assert not host.file(SCRATCH).exists
    assert host.run("pgrep -u postgres -f -- %s", f"-D {SCRATCH}/data").rc == 1, "the scratch server still runs"


def test_a_drill_whose_restored_heartbeat_is_too_old_fails_and_says_why(host, operator_inventory):
    """installer.py restore --drill, with the heartbeat an hour old in every archived WAL: the
    restore works, the recovery point it measures is the hour, past the 300 s allowed."""
    started = superuser_sql(host, "SELECT pg_postmaster_start_time()")
    with stale_heartbeat(host) as written:
        proc, summary = installer(operator_inventory, "restore", "--drill")

    assert proc.returncode == 1, f"a failed drill must fail the command: {outcome(proc, summary)}"
    name = testinfra_hosts[0]
    drill = summary["drills"][name]
    assert drill["status"] == "failed" and drill["repo"] == 2
    assert "newest heartbeat is" in drill["message"] and "more than 300 s" in drill["message"]
    assert abs(drill["recovery_point_seconds"] - (drill["started"] - written)) < 2, drill
    assert f"{name}: restore drill failed: {drill['message']}" in proc.stdout
    on_host = result(host)
    assert on_host["status"] == "failed" and on_host["finished"] == drill["finished"]
    drill_left_the_server_alone(host, started)


def test_restore_drill_restores_the_newest_backup_and_prints_its_figures(host, operator_inventory):
    """installer.py restore --drill: the newest backup of the S3 repository (the one a lost host
    is restored from) restored into a scratch instance, every database checked, and the
    recovery point measured from the heartbeat row archived just before."""
    archive_now(host)
    written = heartbeat(host)
    started = superuser_sql(host, "SELECT pg_postmaster_start_time()")

    proc, summary = installer(operator_inventory, "restore", "--drill")

    assert proc.returncode == 0, f"installer.py restore --drill failed: {outcome(proc, summary)}"
    name = testinfra_hosts[0]
    drill = summary["drills"][name]
    assert drill["status"] == "ok" and drill["repo"] == 2, drill
    assert {"platform", "postgres"} <= set(drill["databases"])
    assert 0 <= drill["recovery_point_seconds"] <= drill["started"] - written + 1, (drill, written)
    assert 0 < drill["restore_seconds"] < drill["finished"] - drill["started"] + 1
    assert drill["last_success"] == drill["finished"]
    assert (f"{name}: restored the newest backup of repository 2 in {drill['restore_seconds']} s; "
            f"recovery point {drill['recovery_point_seconds']} s") in proc.stdout
    assert result(host) == {k: v for k, v in drill.items() if k != "summary"}
    drill_left_the_server_alone(host, started)


@pytest.mark.parametrize("target", ["2000-01-01 00:00:00+00", "2999-01-01 00:00:00+00"], ids=["before", "future"])
def test_target_outside_the_backups_is_refused_and_nothing_stops(host, operator_inventory, target):
    started = superuser_sql(host, "SELECT pg_postmaster_start_time()")

    proc, summary = installer(operator_inventory, "restore", "--target-time", target)

    assert proc.returncode == 1
    # One message (shown as it happens and again in the end summary), not one per step.
    said = sorted({line.strip() for line in (proc.stdout + proc.stderr).splitlines() if "Cannot restore to" in line})
    assert len(said) == 1, f"expected one message, got {said}"
    assert f"Cannot restore to {target}: the backups and archived WAL cover" in said[0]
    assert "Nothing was stopped or changed" in said[0]
    assert len(summary["failures"]) == 1
    assert summary["failures"][0]["message"].startswith(f"Cannot restore to {target}")
    assert summary["restored"] == {}
    # The run ended with the check: the play that stops app containers never started.
    assert "Stop the app containers" not in Path(summary["run_log"]).read_text()
    assert superuser_sql(host, "SELECT pg_postmaster_start_time()") == started
    assert superuser_sql(host, "SELECT pg_is_in_recovery()") == "f"


def test_restore_to_a_time_brings_back_what_was_there_then(host, operator_inventory):
    app_sql(host, "CREATE TABLE pitr_probe (row_name text); INSERT INTO pitr_probe VALUES ('A')")
    time.sleep(1.5)  # the target has whole seconds: keep row A's commit before it
    target = server_time(host)
    time.sleep(1.5)
    app_sql(host, "INSERT INTO pitr_probe VALUES ('B')")
    app_sql(host, "DROP TABLE pitr_probe")
    backups_before = {repo: backups(host, "full", repo) for repo in REPOSITORIES}
    timeline_before = timeline(host)

    proc, summary = installer(operator_inventory, "restore", "--target-time", target)

    assert proc.returncode == 0, f"installer.py restore failed: {outcome(proc, summary)}"
    assert app_sql(host, "SELECT string_agg(row_name, ',' ORDER BY row_name) FROM pitr_probe") == "A"
    assert superuser_sql(host, "SELECT pg_is_in_recovery()") == "f"
    app_sql(host, "INSERT INTO pitr_probe VALUES ('C')")
    assert app_sql(host, "SELECT count(*) FROM pitr_probe WHERE row_name = 'C'") == "1"
    new_backups = {repo: set(backups(host, "full", repo)) - set(backups_before[repo]) for repo in REPOSITORIES}
    assert all(len(labels) == 1 for labels in new_backups.values()), f"expected one new full backup each: {new_backups}"
    assert host.run("runuser -u postgres -- pgbackrest --stanza=platform check").rc == 0
    # What the installer says it restored to, printed and in --json.
    name = testinfra_hosts[0]
    restored = summary["restored"][name]
    assert restored["target"] == target
    assert restored["full_backup"] in new_backups[1] | new_backups[2]
    assert int(restored["timeline"]) == timeline(host) > timeline_before
    assert (f"Restored {name} to {target} in {restored['seconds']} s: "
            f"last transaction replayed at {restored['last_replayed']}") in proc.stdout


def test_restore_to_the_latest_keeps_every_commit(host, operator_inventory):
    app_sql(host, "INSERT INTO pitr_probe VALUES ('D')")
    backups_before = {repo: backups(host, "full", repo) for repo in REPOSITORIES}
    timeline_before = timeline(host)

    proc, summary = installer(operator_inventory, "restore", "--latest")

    assert proc.returncode == 0, f"installer.py restore failed: {outcome(proc, summary)}"
    assert app_sql(host, "SELECT string_agg(row_name, ',' ORDER BY row_name) FROM pitr_probe") == "A,C,D"
    assert superuser_sql(host, "SELECT pg_is_in_recovery()") == "f"
    # D was there before: the restore itself shows in the new timeline and the backup after it.
    name = testinfra_hosts[0]
    assert int(summary["restored"][name]["timeline"]) == timeline(host) > timeline_before
    new_backups = {repo: set(backups(host, "full", repo)) - set(backups_before[repo]) for repo in REPOSITORIES}
    assert all(len(labels) == 1 for labels in new_backups.values()), f"expected one new full backup each: {new_backups}"
    assert summary["restored"][name]["target"] == "latest"
    assert f"Restored {name} to the end of the archived WAL in {summary['restored'][name]['seconds']} s" in proc.stdout


def test_converge_after_the_restore_changes_nothing(host):
    converge = ROOT / "molecule" / "pitr" / "converge.yml"
    result = run([str(BIN / "ansible-playbook"), "-i", INVENTORY, str(converge)])
    assert result.returncode == 0, "converge failed (output above)"
    recap = [tuple(map(int, m)) for m in RECAP.findall(result.stdout)]
    assert recap, "no PLAY RECAP in the output"
    assert all(counts == (0, 0, 0) for counts in recap), f"converge after the restore was not clean: {recap}"


def replace_database_host(name: str) -> None:
    """The database host's container and its volumes destroyed, a fresh one made under the same
    name on the same network, and readied as the scenario's prepare readies a host."""
    from containers import remove_container, start_systemd_container

    remove_container(name)
    gone = subprocess.run(["docker", "inspect", name], capture_output=True, check=False)
    assert gone.returncode != 0, f"{name} still exists"
    network = next(iter(SCENARIO_PLATFORMS[name]["networks"]))["name"]
    start_systemd_container(name, "--network", network)
    prepared = run([str(BIN / "ansible-playbook"), "-i", INVENTORY, str(ROOT / "molecule" / "pitr" / "prepare.yml"),
                    "--limit", name])
    assert prepared.returncode == 0, "preparing the new host failed (output above)"


def test_a_lost_database_host_comes_back_from_the_off_host_repository(host, operator_inventory):
    """The procedure in the README: a new, empty host under the lost one's name, the install
    (of the roles this scenario runs: ROLES_RUN), which names the
    backups as another database's and says to restore, then `installer.py restore --latest`.
    Every row committed before the last WAL segment that archive_timeout closed is back, from
    the repositories on the repository host and in the S3 store, which the loss left alone."""
    name = testinfra_hosts[0]
    archive_timeout = int(superuser_sql(host, "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'"))
    app_sql(host, "CREATE TABLE loss_probe (batch text, n int)")
    app_sql(host, "INSERT INTO loss_probe SELECT 'kept', generate_series(1, 1000)")
    written = superuser_sql(host, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    # No WAL switch by hand: the server's own archive_timeout must close and archive the segment.
    # The slack covers one failed push: PostgreSQL's archiver tries three times, then waits up
    # to a minute before the next round.
    waited_from = time.monotonic()
    deadline = waited_from + archive_timeout + 150
    while superuser_sql(host, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[:24] < written:
        archiver = superuser_sql(host, "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver")
        assert time.monotonic() < deadline, \
            f"{written} not archived in archive_timeout ({archive_timeout} s) + 150 s; archiver: {archiver}"
        time.sleep(2)
    print(f"host loss: {written} archived {time.monotonic() - waited_from:.0f} s after the write")
    app_sql(host, "INSERT INTO loss_probe SELECT 'at the loss', generate_series(1, 10)")

    offsite = {repo: backups(host, "full", repo) + backups(host, "diff", repo) for repo in REPOSITORIES}
    last_files = files_snapshots(host)[-1]["id"]
    replace_database_host(name)
    assert host.run("test -e /var/lib/postgresql").rc != 0, "the new host is not empty"

    proc, summary = installer(operator_inventory, "--tags", ROLES_RUN)
    assert proc.returncode == 1, \
        f"the install must not pass verify with no data and no backups: {outcome(proc, summary)}"
    assert "holds the backups of another database than this server's" in proc.stdout
    assert "run installer.py restore --latest" in proc.stdout
    failed = [(p["probe"], p["result"]) for p in summary["probes"] if p["result"] != "pass"]
    # The probe that names the cause first, then only the backup probes it explains.
    assert failed and failed[0][0] == "Check that the backups are this server's", outcome(proc, summary)
    assert {probe for probe, _ in failed} <= {"Check that the backups are this server's",
                                              "Check WAL archiving into the backup repository",
                                              "Check that a full backup exists"}, outcome(proc, summary)
    assert {repo: backups(host, "full", repo) + backups(host, "diff", repo) for repo in REPOSITORIES} == offsite, \
        "the install touched the lost host's backups"

    proc, summary = installer(operator_inventory, "restore", "--latest")
    assert proc.returncode == 0, f"installer.py restore --latest failed: {outcome(proc, summary)}"
    counts = dict(line.split("|") for line in app_sql(host, "SELECT batch, count(*) FROM loss_probe GROUP BY batch")
                  .splitlines())
    assert counts.get("kept") == "1000", counts
    restored = summary["restored"][name]
    print(f"host loss: restored in {restored['seconds']} s; of the 10 rows written at the loss, "
          f"{counts.get('at the loss', '0')} came back")
    assert all(len(backups(host, "full", repo)) >= 1 for repo in REPOSITORIES)
    assert host.run("runuser -u postgres -- pgbackrest --stanza=platform check").rc == 0

    # The files' repository outlived the host as well: the last snapshot from before the loss
    # (the new host's install took one of its own since) brings back the Redis snapshot
    # holding the key written then.
    assert files_snapshots(host)[-1]["id"] != last_files, "the install took no first backup on the new host"
    restored_snapshots = restore_files(host, last_files, REDIS_BACKUP_DIR) + REDIS_BACKUP_DIR
    assert any(BACKED_UP_KEY.encode() in host.file(f"{restored_snapshots}/{name}").content
               for name in host.file(restored_snapshots).listdir()), "no Redis snapshot from before the loss"

    proc, summary = installer(operator_inventory, "--tags", ROLES_RUN)
    assert proc.returncode == 0, f"the install after the restore failed: {outcome(proc, summary)}"
    assert summary["totals"]["changed"] == 0, changed_tasks(summary)
