"""inventories/prod as written, installed by installer.py on seven hosts (converge.yml), then
the loss of a host of each kind while a client writes through the app path: the edge's
nginx, the app container on an app host, HAProxy on that host, and the PostgreSQL leader and
the Redis master behind it (tests/demo_app's GET /work: an INSERT and a Redis SET and GET
per request). Each lost host is started again; a rerun then changes only the hosts that came
back, and `check` finds no drift. The app is the demo app and Ollama a STAND-IN release
(tests/ollama_standin), both from local archives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "platform-inventory"
EXAMPLE = PROJECT / "inventories" / "prod" / "hosts.yml"
SECRETS_DIR = EPHEMERAL / "secrets"
RUNS_DIR = EPHEMERAL / "runs"  # this scenario's own: other scenarios' runs rotate runs/
DOMAIN = "ai.example.com"  # the example's platform_domain
DATABASE_HOSTS = ["db-1", "db-2", "db-3"]
APP_HOSTS = ["gpu-1", "gpu-2"]
PATRONI = ["patronictl", "-c", "/etc/patroni/config.yml"]
SENTINEL_TLS = ["--tls", "--cacert", "/etc/redis/tls/ca.crt", "--cert", "/etc/redis/tls/server.crt",
                "--key", "/etc/redis/tls/server.key"]
# The targets: writes resume within 30 s of losing the database leader's host, and
# within 15 s of losing the Redis master's host.
DATABASE_RESUME_S, REDIS_RESUME_S = 30, 15
CAME_BACK: set[str] = set()  # the hosts the drills stopped and started again


def container(host: str) -> str:
    return f"prod-{host}"


def run_in(host: str, *argv: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container(host), *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def installer(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PLATFORMCTL_SECRETS_DIR=str(SECRETS_DIR), PLATFORMCTL_RUNS_DIR=str(RUNS_DIR))
    proc = subprocess.run([sys.executable, "installer.py", *args, "--inventory", str(INVENTORY)],
                          cwd=PROJECT, env=env, text=True, capture_output=True, check=False)
    print(proc.stdout, proc.stderr)
    return proc


@cache
def vault() -> dict[str, str]:
    """The inventory's secrets, decrypted with the installer's own password file."""
    sys.path.insert(0, str(PROJECT))
    os.environ["PLATFORMCTL_SECRETS_DIR"] = str(SECRETS_DIR)
    from platformctl.inventory import resolve
    from platformctl.secrets import SecretStore

    return SecretStore(resolve(str(INVENTORY))).load()


@cache
def app_environment() -> dict[str, str]:
    out = run_in("gpu-1", "docker", "inspect", "-f", "{{json .Config.Env}}", "api-1")
    assert out.returncode == 0, out.stderr
    return dict(item.split("=", 1) for item in json.loads(out.stdout))


def edge(path: str, timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", str(timeout), "--insecure", "--resolve",
         f"{DOMAIN}:443:{address('edge-1')}", f"https://{DOMAIN}{path}"],
        capture_output=True, text=True, check=False)


@cache
def address(host: str) -> str:
    return yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]["hosts"][host]["ansible_host"]


def sql(host: str, query: str) -> str:
    """A query as the superuser on that host's own server, in the app's database."""
    database = urlsplit(app_environment()["DATABASE_URL"]).path.lstrip("/")
    out = run_in(host, "runuser", "-u", "postgres", "--", "psql", "-d", database, "-XAtc", query)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def members() -> dict[str, dict]:
    for host in DATABASE_HOSTS:
        out = run_in(host, *PATRONI, "list", "-f", "json")
        if out.returncode == 0:
            return {member["Member"]: member for member in json.loads(out.stdout or "[]")}
    return {}


def leader() -> str:
    leaders = [name for name, member in members().items() if member["Role"] == "Leader"]
    assert len(leaders) == 1, members()
    return leaders[0]


def redis_roles() -> dict[str, dict[str, str]]:
    roles = {}
    for host in DATABASE_HOSTS:
        out = run_in(host, "redis-cli", "--no-auth-warning", "-a", vault()["redis_password"], "INFO", "replication")
        roles[host] = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    return roles


def redis_masters() -> list[str]:
    """The hosts whose Redis says it is a master: two for a moment during a failover."""
    return [host for host, fields in redis_roles().items() if fields.get("role") == "master"]


def redis_master() -> str:
    masters = redis_masters()
    assert len(masters) == 1, redis_roles()
    return masters[0]


def wait_until(predicate, seconds: int = 240) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(2)
    return False


def database_settled() -> bool:
    found = members()
    return (len(found) == 3 and sum(m["Role"] == "Leader" for m in found.values()) == 1
            and all(m["State"] in ("running", "streaming") for m in found.values())
            and len({m.get("TL") for m in found.values()}) == 1)


def redis_settled() -> bool:
    roles = redis_roles()
    return (sum(f.get("role") == "master" for f in roles.values()) == 1
            and all(f.get("master_link_status") == "up" for f in roles.values() if f.get("role") == "slave")
            and sum(f.get("role") == "slave" for f in roles.values()) == 2)


def settled() -> None:
    assert wait_until(database_settled), members()
    assert wait_until(redis_settled), redis_roles()


def apart() -> None:
    """The database leader and the Redis master on different hosts, so that each drill loses
    one of them: Sentinel moves the master to one of its replicas, never on the leader's host
    when the master was there."""
    if redis_master() == leader():
        old = redis_master()
        out = run_in(DATABASE_HOSTS[0], "redis-cli", *SENTINEL_TLS, "-h", "127.0.0.1", "-p", "26379",
                     "SENTINEL", "FAILOVER", "platform")
        assert out.stdout.strip() == "OK", out.stdout + out.stderr
        assert wait_until(lambda: redis_masters() not in ([old], []) and redis_settled(), 120), redis_roles()


@dataclass
class Write:
    started: float
    ended: float
    answered: bool  # nginx answered 200
    row: int | None  # the row the app committed, when its INSERT succeeded
    redis: bool  # the app's Redis SET and GET succeeded


class Writer:
    """A client of the app path: GET /work through the edge every 0.2 s, each request timed."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.write, daemon=True)

    def write(self) -> None:
        while not self.done.is_set():
            started = time.time()
            result = edge("/api/work", timeout=20)
            answer = json.loads(result.stdout) if result.returncode == 0 else {}
            database, redis = answer.get("DATABASE_URL", {}), answer.get("REDIS_URL", {})
            self.writes.append(Write(started, time.time(), result.returncode == 0,
                                     database.get("row") if database.get("ok") else None, bool(redis.get("ok"))))
            time.sleep(0.2)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def lose(host: str, resumed, seconds: int = 90) -> tuple[float, list[Write]]:
    """Stop `host` (docker stop -t 0: the host is lost) while the writer runs, until
    `resumed(writes after the stop)` or `seconds` pass and 5 s more; then start it again
    and wait for its boot. The time of the stop and every write."""
    with Writer() as writer:
        time.sleep(5)
        stopped = time.time()
        subprocess.run(["docker", "stop", "-t", "0", container(host)], check=True, capture_output=True)
        wait_until(lambda: resumed([w for w in writer.writes if w.started > stopped]), seconds)
        time.sleep(5)
    subprocess.run(["docker", "start", container(host)], check=True, capture_output=True)
    CAME_BACK.add(host)
    assert wait_until(lambda: run_in(host, "systemctl", "is-system-running").stdout.strip()
                      in ("running", "degraded"), 180)
    return stopped, writer.writes


def resumed_after(writes: list[Write], stopped: float, succeeded) -> float | None:
    """Seconds from the stop to the end of the first write that succeeded after one that failed
    (0 when none failed), or None when none succeeded after the stop."""
    after = [w for w in writes if w.started > stopped]
    failed = [w for w in after if not succeeded(w)]
    if not failed:
        return 0.0 if after else None
    recovered = [w for w in after if succeeded(w) and w.started > failed[0].started]
    return recovered[0].ended - stopped if recovered else None


def recovered(after: list[Write], succeeded) -> bool:
    """Writes after a stop succeeded again after failing, or never failed in 20 tries."""
    if len(after) > 20 and all(succeeded(w) for w in after):
        return True
    return resumed_after(after, 0, succeeded) not in (None, 0.0)


def test_the_inventory_is_the_example_as_written():
    example = yaml.safe_load(EXAMPLE.read_text())["all"]
    written = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]
    assert written["children"] == example["children"]
    assert set(written["hosts"]) == set(example["hosts"])
    assert {k: v for k, v in written["vars"].items() if k != "ansible_connection"} == {
        k: v for k, v in example["vars"].items() if k != "ansible_user"}


def test_install_succeeded():
    assert json.loads((EPHEMERAL / "install.json").read_text())["exit_code"] == 0


def test_the_app_reaches_every_service_through_haproxy_on_its_host():
    env = app_environment()
    for name, port in (("DATABASE_URL", 15432), ("DATABASE_REPLICA_URL", 15433)):
        assert urlsplit(env[name]).port == port, name
    assert "sslmode=verify-ca" in env["DATABASE_URL"]
    result = edge("/api/work")
    assert result.returncode == 0, result.stderr
    work = json.loads(result.stdout)
    assert work["DATABASE_URL"]["ok"], work
    assert work["REDIS_URL"]["ok"], work
    assert work["OLLAMA_BASE_URL"]["ok"], work


def test_one_leader_two_replicas_and_a_redis_master_with_two_replicas():
    settled()


def test_rerun_changes_nothing():
    proc = installer("--json", str(EPHEMERAL / "rerun.json"))
    assert proc.returncode == 0
    hosts = json.loads((EPHEMERAL / "rerun.json").read_text())["hosts"]
    assert set(hosts) == set(yaml.safe_load(EXAMPLE.read_text())["all"]["hosts"])
    assert {host: counts["changed"] for host, counts in hosts.items()} == dict.fromkeys(hosts, 0)


def test_check_after_the_rerun_finds_no_drift():
    proc = installer("check", "--json", str(EPHEMERAL / "check.json"))
    report = json.loads((EPHEMERAL / "check.json").read_text())
    assert proc.returncode == 0, [(d["host"], d["role"], d["task"]) for d in report["drift"]]
    assert report["drift"] == [] and report["failures"] == []
    assert {"etcd", "postgresql", "redis", "haproxy", "ollama", "app", "nginx", "monitoring",
            "backup_repository"} <= set(report["roles"])


@pytest.fixture(scope="module")
def database_drill():
    settled()
    apart()
    old = leader()
    stopped, writes = lose(old, lambda after: recovered(after, lambda w: w.row))
    return {"old": old, "stopped": stopped, "writes": writes}


def test_database_writes_resume_within_30_s_of_losing_the_leaders_host(database_drill):
    seconds = resumed_after(database_drill["writes"], database_drill["stopped"], lambda w: w.row)
    assert seconds is not None, database_drill["writes"][-5:]
    print(f"\nDATABASE FAILOVER (installer.py's inventories/prod): writes through the edge resumed "
          f"{seconds:.1f} s after the leader's host {database_drill['old']} stopped")
    assert seconds <= DATABASE_RESUME_S


def test_no_committed_row_was_lost(database_drill):
    settled()
    committed = [w.row for w in database_drill["writes"] if w.row]
    assert committed
    rows = ",".join(str(int(row)) for row in committed)
    found = sql(leader(), f"SELECT count(*) FROM demo_work WHERE id IN ({rows})")  # noqa: S608 (integers)
    print(f"\nDATABASE FAILOVER: {found} of {len(committed)} committed rows on the new leader")
    assert int(found) == len(committed)


@pytest.fixture(scope="module")
def redis_drill(database_drill):
    settled()
    apart()
    old = redis_master()
    stopped, writes = lose(old, lambda after: recovered(after, lambda w: w.redis))
    return {"old": old, "stopped": stopped, "writes": writes}


def test_redis_writes_resume_within_15_s_of_losing_the_masters_host(redis_drill):
    seconds = resumed_after(redis_drill["writes"], redis_drill["stopped"], lambda w: w.redis)
    assert seconds is not None, redis_drill["writes"][-5:]
    print(f"\nREDIS FAILOVER (installer.py's inventories/prod): writes through the edge resumed "
          f"{seconds:.1f} s after the master's host {redis_drill['old']} stopped")
    assert seconds <= REDIS_RESUME_S
    # The database's leader was elsewhere; a replica was lost with the host.
    paused = resumed_after(redis_drill["writes"], redis_drill["stopped"], lambda w: w.row)
    print(f"REDIS FAILOVER: database writes paused {paused} s meanwhile (a replica lost)")


@pytest.fixture(scope="module")
def app_drill(redis_drill):
    settled()
    stopped, writes = lose("gpu-1", lambda after: len(after) >= 40, seconds=120)
    return {"stopped": stopped, "writes": writes}


def test_the_edge_keeps_answering_when_an_app_host_is_lost(app_drill):
    after = [w for w in app_drill["writes"] if w.started > app_drill["stopped"]]
    failed = [w for w in after if not w.answered]
    slowest = max(w.ended - w.started for w in after)
    print(f"\nAPP HOST LOST: {len(after) - len(failed)} of {len(after)} requests answered through the edge "
          f"(slowest {slowest:.1f} s)")
    assert len(after) >= 40
    # A request the lost host had already taken is lost with it; every other one is answered,
    # nginx retrying it on the other app host.
    assert len(failed) <= 1, failed


def test_a_rerun_after_the_hosts_came_back_changes_only_those_hosts(app_drill):
    settled()
    proc = installer("--json", str(EPHEMERAL / "rerun-after-drills.json"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    hosts = json.loads((EPHEMERAL / "rerun-after-drills.json").read_text())["hosts"]
    changed = {host for host, counts in hosts.items() if counts["changed"]}
    print(f"\nRERUN AFTER THE DRILLS: changes on {sorted(changed)}; hosts that came back {sorted(CAME_BACK)}")
    assert changed <= CAME_BACK


def test_check_after_the_drills_finds_no_drift(app_drill):
    proc = installer("check", "--json", str(EPHEMERAL / "check-after-drills.json"))
    report = json.loads((EPHEMERAL / "check-after-drills.json").read_text())
    assert proc.returncode == 0, [(d["host"], d["role"], d["task"]) for d in report["drift"]]
    assert report["drift"] == [] and report["failures"] == []
