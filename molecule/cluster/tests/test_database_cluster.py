"""The PostgreSQL cluster: Patroni on three hosts over etcd, grown from a single database host
that held data, and HAProxy on the app host routing to its leader and over its replicas.
Probed with the real psql, patronictl, etcdctl and curl, and a failover drill that stops the
leader's host while a client writes through HAProxy, and `installer.py restore` of the whole
cluster to a time. Runs after test_cluster.py (the Redis
drill), whose stopped host is back by then."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import datetime, timezone

import pytest
from test_cluster import PROJECT, health, playbook, stop_host_while_writing

HOSTS = ["cluster-1", "cluster-2", "cluster-3"]
ADDRESSES = {"cluster-1": "10.231.11.11", "cluster-2": "10.231.11.12", "cluster-3": "10.231.11.13"}
APP = "cluster-app"
GATEWAY = "192.0.2.1"  # the scenario's platform_network_gateway, where HAProxy listens
APP_PASSWORD = "molecule-app-password-2"  # noqa: S105 (the scenario's inventory)
CA = "/etc/haproxy/platform-ca.crt"
PATRONI = ["patronictl", "-c", "/etc/patroni/config.yml"]
ETCD_TLS = ["--cacert=/etc/etcd/tls/ca.crt", "--cert=/etc/etcd/tls/server.crt", "--key=/etc/etcd/tls/server.key"]
# The target: writes resume within 30 s of losing the leader's host.
RESUME_TARGET_S = 30


def run(container: str, *argv: str, timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def sql(container: str, query: str) -> str:
    """A query as the superuser on that host's own server."""
    out = run(container, "runuser", "-u", "postgres", "--", "psql", "-d", "platform", "-XAtc", query)
    return out.stdout.strip() or out.stderr.strip()


def url(port: int) -> str:
    return (f"postgresql://platform:{APP_PASSWORD}@{GATEWAY}:{port}/platform"
            f"?sslmode=verify-ca&sslrootcert={CA}&connect_timeout=3")


def through_haproxy(query: str, port: int = 15432) -> subprocess.CompletedProcess:
    """A query as the apps make it: their user, HAProxy on their own host, TLS to the server."""
    return run(APP, "psql", url(port), "-XAtc", query)


def members() -> dict[str, dict]:
    out = run("cluster-1", *PATRONI, "list", "-f", "json")
    return {member["Member"]: member for member in json.loads(out.stdout or "[]")}


def leader() -> str:
    leaders = [name for name, member in members().items() if member["Role"] == "Leader"]
    assert len(leaders) == 1, members()
    return leaders[0]


def wait_for_members(predicate, seconds: int = 180) -> dict[str, dict]:
    found: dict[str, dict] = {}
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            found = members()
        except json.JSONDecodeError:
            found = {}
        if predicate(found):
            return found
        time.sleep(2)
    return found


def all_streaming(found: dict[str, dict]) -> bool:
    """One leader, and every member running on its timeline (a replica left on an older one
    cannot follow it)."""
    return (len(found) == 3 and sum(m["Role"] == "Leader" for m in found.values()) == 1
            and all(m["State"] in ("running", "streaming") for m in found.values())
            and len({m.get("TL") for m in found.values()}) == 1)


@pytest.fixture(scope="module", autouse=True)
def settled():
    """The Redis drill before this module stopped and started a host: wait until every member
    runs again."""
    found = wait_for_members(all_streaming)
    assert all_streaming(found), found


def test_the_cluster_grew_from_the_host_that_held_data():
    # cluster-2 held the rows as a single host; the drills may have moved the lead since.
    for host in HOSTS:
        assert sql(host, "SELECT count(*) FROM grown") == "1000", host
    initialize = run("cluster-1", "etcdctl", f"--endpoints=https://{ADDRESSES['cluster-1']}:2379", *ETCD_TLS,
                     "get", "--print-value-only", "/service/platform/initialize")
    assert initialize.stdout.strip() == sql("cluster-2", "SELECT system_identifier FROM pg_control_system()")


def test_one_leader_and_a_synchronous_replica():
    roles = sorted(member["Role"] for member in members().values())
    assert roles == ["Leader", "Replica", "Sync Standby"], members()
    assert sql(leader(), "SHOW synchronous_commit") == "on"
    assert sql(leader(), "SHOW synchronous_standby_names") != ""


def test_etcd_has_three_healthy_members_and_refuses_clients_without_a_certificate():
    health = run("cluster-1", "etcdctl", f"--endpoints=https://{ADDRESSES['cluster-1']}:2379", *ETCD_TLS,
                 "endpoint", "health", "--cluster")
    # etcdctl prints its health report on stderr.
    assert health.returncode == 0 and health.stderr.count("is healthy") == 3, health.stdout + health.stderr
    anonymous = run(APP, "curl", "-sS", "--cacert", CA, f"https://{ADDRESSES['cluster-2']}:2379/version")
    assert anonymous.returncode != 0, anonymous.stdout


def test_patroni_takes_changes_only_from_a_client_with_a_certificate():
    # From the app host, which may read Patroni's state (HAProxy's checks) but change nothing.
    patch = run(APP, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PATCH", "--cacert", CA,
                "-d", '{"ttl": 99}', f"https://{ADDRESSES['cluster-1']}:8008/config")
    assert patch.stdout in ("401", "403"), patch.stdout + patch.stderr
    config = json.loads(run(APP, "curl", "-sS", "--cacert", CA, f"https://{ADDRESSES['cluster-1']}:8008/config").stdout)
    assert (config["ttl"], config["synchronous_mode"]) == (20, True)


def test_a_write_through_haproxy_reaches_every_replica():
    marker = uuid.uuid4().hex  # the test's own value: no injection to fear
    out = through_haproxy(f"CREATE TABLE IF NOT EXISTS probe (marker text); INSERT INTO probe VALUES ('{marker}')")  # noqa: S608
    assert out.returncode == 0, out.stderr
    query = f"SELECT count(*) FROM probe WHERE marker = '{marker}'"  # noqa: S608
    for host in HOSTS:
        for _ in range(20):
            if sql(host, query) == "1":
                break
            time.sleep(0.5)
        assert sql(host, query) == "1", host


def test_the_replica_address_serves_reads_only():
    read = through_haproxy("SELECT pg_is_in_recovery(), count(*) FROM grown", port=15433)
    assert read.stdout.strip() == "t|1000", read.stdout + read.stderr
    write = through_haproxy("INSERT INTO grown VALUES (0)", port=15433)
    assert write.returncode != 0 and "read-only" in write.stderr, write.stderr


def test_the_superuser_cannot_log_in_over_the_network():
    out = run(APP, "psql", f"postgresql://postgres@{GATEWAY}:15432/postgres?sslmode=require&connect_timeout=3",
              "-XAtc", "SELECT 1")
    assert out.returncode != 0 and "pg_hba.conf rejects" in out.stderr, out.stderr


def test_the_cluster_is_backed_up_on_the_repository_host_from_a_replica():
    info = run("cluster-backup", "runuser", "-u", "pgbackrest", "--", "pgbackrest", "--stanza=platform",
               "--output=json", "info")
    stanza = json.loads(info.stdout)[0]
    assert stanza["status"]["code"] == 0, stanza["status"]
    # The first is the install's full backup; the timers may have added one since (01:30).
    assert stanza["backup"] and stanza["backup"][0]["type"] == "full", stanza["backup"]
    log = run("cluster-backup", "cat", "/var/log/pgbackrest/platform-backup.log").stdout
    assert "backup-standby" in log or "standby" in log, log[-2000:]
    # WAL is archived from the leader: a switch reaches the repository.
    check = run(leader(), "runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=platform", "check", timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


WRITER = """
i=0
while [ $i -lt 600 ]; do
  i=$((i+1))
  reply=$(psql '{url}' -qXAtc "INSERT INTO drill VALUES ($i) RETURNING id" 2>&1 | tr '\\n' ' ')
  echo "$(date +%s.%N) $i $reply"
  sleep 0.2
done
"""


@pytest.fixture(scope="module")
def failover():
    """Stop the leader's host while a client inserts a row through HAProxy every 0.2 s until
    inserts succeed again, then start the host again; the old leader, the writer's log and the
    time of the stop."""
    old = leader()
    assert through_haproxy("DROP TABLE IF EXISTS drill; CREATE TABLE drill (id int PRIMARY KEY)").returncode == 0
    log = "/tmp/database-writer.log"  # noqa: S108 (in the app host)
    stopped, lines = stop_host_while_writing(
        old, WRITER.format(url=url(15432)), log,
        lambda lines, stopped: any(float(at) > stopped + 1 and reply == number for at, number, reply in lines), 90)
    run(APP, "pkill", "-f", "INSERT INTO drill")
    subprocess.run(["docker", "start", old], check=True, capture_output=True)
    return {"old": old, "lines": lines, "stopped": stopped}


def test_writes_resume_within_the_target_after_the_leaders_host_stops(failover):
    stopped = failover["stopped"]
    after = [float(at) for at, number, reply in failover["lines"] if float(at) > stopped and reply.strip() == number]
    assert after, failover["lines"][-5:]
    print(f"\nDATABASE FAILOVER: writes resumed {after[0] - stopped:.1f} s after the leader's host stopped")
    assert after[0] - stopped <= RESUME_TARGET_S


def test_no_committed_row_was_lost(failover):
    new = leader()
    assert new != failover["old"]
    committed = {int(number) for _, number, reply in failover["lines"] if reply.strip() == number}
    present = {int(row) for row in sql(new, "SELECT id FROM drill").split()}
    print(f"\nDATABASE FAILOVER: {len(committed - present)} of {len(committed)} committed rows lost")
    assert committed <= present


def test_the_stopped_host_comes_back_as_a_replica(failover):
    found = wait_for_members(all_streaming, seconds=240)
    assert all_streaming(found), found
    assert found[failover["old"]]["Role"] != "Leader"
    assert through_haproxy("INSERT INTO drill VALUES (100000)").returncode == 0
    result = health()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PostgreSQL cluster: leader" in result.stdout and "etcd has 3 healthy members" in result.stdout


def test_verify_finds_a_replica_that_cannot_follow_the_leader():
    """A replica whose server is stopped outside Patroni's control (Patroni paused on it
    would restart it otherwise): verify names it."""
    replica = next(name for name, member in members().items() if member["Role"] == "Replica")
    assert run("cluster-1", *PATRONI, "pause", "--wait").returncode == 0
    try:
        assert run(replica, "runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "stop",
                   "-D", "/var/lib/postgresql/15/main", "-m", "fast").returncode == 0
        result = health("--tags", "database")
        assert result.returncode != 0
        assert "The PostgreSQL cluster's members as Patroni sees them" in result.stdout, result.stdout
    finally:
        assert run("cluster-1", *PATRONI, "resume", "--wait").returncode == 0
    assert all_streaming(wait_for_members(all_streaming))


def test_a_restore_to_a_time_brings_the_whole_cluster_back_to_it():
    """Rows before and after a time; the cluster restored to that time: its leader holds the
    rows before only, on a new timeline, and the other hosts, copied from it anew, the same."""
    assert all_streaming(wait_for_members(all_streaming))
    timeline = int(next(iter(members().values()))["TL"])
    assert through_haproxy("DROP TABLE IF EXISTS marks; CREATE TABLE marks (mark text);"
                           " INSERT INTO marks VALUES ('before')").returncode == 0
    time.sleep(2)
    target = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00")
    time.sleep(2)
    assert through_haproxy("INSERT INTO marks VALUES ('after')").returncode == 0
    # installer.py restore's playbook, as it runs it.
    result = playbook(PROJECT / "playbooks" / "restore.yml", "-e", json.dumps({"restore_target_time": target}))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    found = wait_for_members(all_streaming)
    assert all_streaming(found), found
    # The restore's promotion, then Patroni's as it takes the restored data as leader.
    assert {int(member["TL"]) for member in found.values()} == {timeline + 2}, found
    for host in HOSTS:
        assert sql(host, "SELECT string_agg(mark, ',') FROM marks") == "before", host
    # The restored cluster takes writes through HAProxy and archives them.
    assert through_haproxy("INSERT INTO marks VALUES ('restored')").returncode == 0
    check = run(leader(), "runuser", "-u", "postgres", "--", "pgbackrest", "--stanza=platform", "check", timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
