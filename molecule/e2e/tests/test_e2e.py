"""installer.py against a real test host in every group, with a seed platform's whole app
shape (converge.yml): after the first install (the interrupted scenario runs the same
install after a check of the fresh host and two interrupted installs), the front end, API,
WebSocket route, static files, worker, job and migration each answer or ran as declared; a
rerun changes nothing and its verify passes every probe; a failed release returns to the one
before by itself; check finds no drift; drift made by hand in five services is reported item
by item and then repaired; a rotated secret applies everywhere on the next install; and the
summary JSON agrees with ansible's own recap."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from slow import slow

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "platform-inventory"
RECAP = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.MULTILINE)
ROLES = ("common", "firewall", "docker", "postgresql", "redis", "ollama", "app", "nginx")
NGINX_SITE = "/etc/nginx/conf.d/platform.conf"
DOMAIN = "e2e.test"
# The platform's two host names (platform_domain and its alias).
NAMES = (DOMAIN, f"app.{DOMAIN}")
POSTGRESQL_CONF = "/etc/postgresql/15/main/postgresql.conf"
# Every test on the test host, so that pytest keeps this file's order (it groups tests by
# the host testinfra parametrizes them with): the drift test and the
# rotation after it must come last.
pytestmark = pytest.mark.usefixtures("host")


def installer(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PLATFORMCTL_SECRETS_DIR=str(EPHEMERAL / "secrets"),
               PLATFORMCTL_RUNS_DIR=str(EPHEMERAL / "runs"), COLUMNS="250")
    proc = subprocess.run([sys.executable, "installer.py", *args, "--inventory", str(INVENTORY)],
                          cwd=PROJECT, env=env, text=True, capture_output=True, check=False)
    print(proc.stdout, proc.stderr)
    return proc


def summary(name: str) -> dict:
    return json.loads((EPHEMERAL / name).read_text())


def printed_recap(document: dict) -> dict[str, dict[str, int]]:
    """PLAY RECAP as ansible wrote it in the run log."""
    text = Path(document["run_log"]).read_text()
    recap = {}
    for host, counts in RECAP.findall(text):
        recap[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return recap


def work_mem(host) -> str:
    return host.check_output("runuser -u postgres -- psql -Atc 'SHOW work_mem'")


def test_first_install_summary_agrees_with_ansible_recap():
    document = summary("install.json")
    assert document["exit_code"] == 0
    assert document["hosts"] == printed_recap(document)
    assert all(counts["changed"] > 0 for counts in document["hosts"].values())


@functools.cache
def rerun() -> subprocess.CompletedProcess:
    """The same install again: it changes nothing and ends with verify, as every install does."""
    return installer("--json", str(EPHEMERAL / "rerun.json"))


def test_the_install_verifies_every_role():
    proc = rerun()
    assert proc.returncode == 0
    assert "Verify: health probes" in proc.stdout
    probes = summary("rerun.json")["probes"]
    assert {p["role"] for p in probes} >= set(ROLES), probes
    assert all(p["result"] == "pass" for p in probes), probes
    for probe in probes:  # the table shows each one
        assert probe["probe"] in proc.stdout


def fetch(host, path: str, *options: str, name: str = DOMAIN) -> str:
    """What nginx answers for https://NAME/PATH, asked on the test host (curl -f: 2xx only)."""
    return host.check_output(f"curl -sfk --max-time 30 --resolve {name}:443:127.0.0.1 {' '.join(options)} "
                             f"https://{name}{path}")


def api_health(host) -> dict:
    return json.loads(fetch(host, "/api/health"))


@pytest.mark.parametrize("name", NAMES)
def test_the_front_end_and_the_api_answer_on_each_name(host, name):
    assert "<title>Prompt Card</title>" in fetch(host, "/", name=name)
    assert json.loads(fetch(host, "/api/health", name=name))["status"] == "ok"


def test_the_certificate_holds_each_name(host):
    text = host.check_output(f"openssl x509 -in /etc/nginx/tls/{DOMAIN}.crt -noout -ext subjectAltName")
    assert set(re.findall(r"DNS:([\w.-]+)", text)) == set(NAMES), text


def test_the_socket_route_answers_the_websocket_upgrade(host):
    # RFC 6455's example key, whose answer it gives. The demo app closes after the handshake.
    answer = host.run("curl -sk --http1.1 --max-time 5 --resolve e2e.test:443:127.0.0.1 -D - -o /dev/null "
                      "-H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' "
                      "-H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' https://e2e.test/socket.io/").stdout
    assert answer.startswith("HTTP/1.1 101"), answer
    assert "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer, answer


def test_static_files_are_served_by_nginx_with_their_cache_headers(host):
    """The migration wrote them into the folder nginx serves (static, expires 7d)."""
    answer = fetch(host, "/static/version.txt", "-D", "-")
    headers, _, body = answer.partition("\r\n\r\n")
    assert body == "1"
    assert "cache-control: max-age=604800" in headers.lower(), headers
    assert "expires: " in headers.lower(), headers


def test_the_worker_runs_once_without_ports(host):
    names = host.check_output("docker ps --filter label=platform.app=worker --format '{{.Names}}'")
    assert names.splitlines() == ["worker-1"], names
    assert host.run("docker port worker-1").stdout == ""


def test_the_scheduled_job_ran_on_its_schedule(host):
    """cleanup runs every 20 s in a one-shot container and leaves a mark in the api's volume."""
    marks = sorted(int(name.removeprefix("cleanup-")) for name in api_health(host)["data"]
                   if name.startswith("cleanup-"))
    assert len(marks) >= 3, marks
    gaps = sorted((later - earlier) / 1e9 for earlier, later in zip(marks[-7:], marks[-6:]))
    # The median: one late start on a loaded machine moves two gaps, not the schedule.
    assert 17 <= gaps[len(gaps) // 2] <= 24, gaps


def test_the_app_works_with_postgresql_redis_and_ollama(host):
    """From the platform network, as the app's traffic comes on a single node: its own
    clients (tests/demo_app /work) write and read PostgreSQL and Redis and list Ollama's
    models; a pg_hba line, firewall rule or ACL that rejects the app fails here."""
    work = json.loads(host.check_output(
        "curl -sfk --max-time 30 --resolve e2e.test:443:127.0.0.1 https://e2e.test/api/work"))
    assert work["DATABASE_URL"]["ok"] and work["DATABASE_URL"]["user"] == "platform", work
    assert work["REDIS_URL"]["ok"] and work["REDIS_URL"]["user"] == "platform", work
    assert work["OLLAMA_BASE_URL"]["ok"] and {"qwen2:0.5b", "standin-offline:1b"} <= set(
        work["OLLAMA_BASE_URL"]["models"]), work


def test_an_alert_reaches_the_operator_by_mail(host):
    """Alertmanager's email receiver, as the inventory sets it: an alert given to Alertmanager
    goes to the site's mail relay (a stand-in on the host, prepare.yml), from and to the
    addresses the inventory names."""
    name = f"E2eMailProbe{time.time_ns()}"
    alert = json.dumps([{"labels": {"alertname": name, "instance": "e2e", "severity": "warning"}}])
    host.check_output("curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' --data %s "
                      "http://127.0.0.1:9093/api/v2/alerts", alert)
    deadline = time.monotonic() + 90
    while True:
        sink = host.file("/var/log/smtp-sink.jsonl")
        mails = [json.loads(line) for line in (sink.content_string if sink.exists else "").splitlines()]
        mine = [mail for mail in mails if re.search(rf"^Subject: .*{name}", mail["message"], re.MULTILINE)]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert mine, f"no mail about {name} reached the relay in 90 s (it kept {len(mails)})"
    assert mine[0]["from"] == f"<alertmanager@{DOMAIN}>"
    assert mine[0]["to"] == [f"<ops@{DOMAIN}>"]
    assert re.search(rf"^To: ops@{re.escape(DOMAIN)}\r?$", mine[0]["message"], re.MULTILINE), mine[0]["message"][:500]


def test_rerun_changes_nothing():
    assert rerun().returncode == 0
    document = summary("rerun.json")
    assert document["hosts"] == printed_recap(document)
    assert {h: c["changed"] for h, c in document["hosts"].items()} == dict.fromkeys(document["hosts"], 0)


def test_the_migration_ran_once(host):
    """The install ran it, the rerun (same image) did not."""
    assert rerun().returncode == 0
    marks = [name for name in api_health(host)["data"] if name.startswith("migrated-")]
    assert len(marks) == 1 and re.fullmatch(r"migrated-1-[0-9]+", marks[0]), marks


def test_a_failed_release_returns_to_the_one_before_by_itself(host):
    """A release that exits at start (DEMO_FAIL): the run fails naming api-1; api-1 is back on
    what it ran before, api-2 was never touched, and the API keeps answering."""
    started = host.check_output("docker inspect --format '{{.State.StartedAt}}' api-2")
    proc = installer("--tags", "app", "-e", "e2e_demo_fail='cannot reach the license server'",
                     "-e", "app_health_timeout=10", "--json", str(EPHEMERAL / "failed-release.json"))
    assert proc.returncode == 1, proc.stdout[-3000:]
    failures = " ".join(" ".join(f["message"].split()) for f in summary("failed-release.json")["failures"])
    assert "api-1 (platform-demo-app:1) did not start or answer /health" in failures, failures
    assert "it is back on platform-demo-app:1, the release it ran before" in failures, failures
    assert "fatal: cannot reach the license server" in failures, failures
    assert host.docker("api-1").is_running
    assert "DEMO_FAIL=" in host.check_output("docker inspect --format '{{json .Config.Env}}' api-1")
    assert "license server" not in host.check_output("docker inspect --format '{{json .Config.Env}}' api-1")
    assert host.check_output("docker inspect --format '{{.State.StartedAt}}' api-2") == started
    assert {api_health(host)["status"] for _ in range(4)} == {"ok"}


# The drift test below runs check through the whole stack in CI; this one adds its exit 0.
@slow(6, "one more whole-stack check run; CI's clean check is newcomer's, on Debian 13")
def test_check_on_a_clean_install_exits_0():
    proc = installer("check", "--json", str(EPHEMERAL / "check.json"))
    assert proc.returncode == 0
    assert summary("check.json")["drift"] == []


def test_a_host_whose_key_is_not_the_known_one_is_not_touched(tmp_path):
    """Over SSH the installer checks host keys (ansible-runner alone would not): with another
    key in known_hosts, preflight stops at the connection."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    known = (EPHEMERAL / "ssh" / "known_hosts").read_text().split()
    (tmp_path / "known_hosts").write_text(f"{known[0]} {(tmp_path / 'other.pub').read_text().split()[0]} "
                                          f"{(tmp_path / 'other.pub').read_text().split()[1]}\n")
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    hosts = (INVENTORY / "hosts.yml").read_text().replace(str(EPHEMERAL / "ssh" / "known_hosts"),
                                                          str(tmp_path / "known_hosts"))
    (inventory / "hosts.yml").write_text(hosts)
    main = (INVENTORY / "group_vars" / "all" / "main.yml").read_text()
    (inventory / "group_vars" / "all" / "main.yml").write_text(main)
    # A connection of its own: the master connection the earlier runs left (ControlPersist)
    # checked the host's key when it was made, and would carry this run without a new check.
    env = dict(os.environ, PLATFORMCTL_SECRETS_DIR=str(tmp_path / "secrets"),
               PLATFORMCTL_RUNS_DIR=str(tmp_path / "runs"), ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp_path / "cp"),
               COLUMNS="250")
    proc = subprocess.run([sys.executable, "installer.py", "preflight", "--inventory", str(inventory)],
                          cwd=PROJECT, env=env, text=True, capture_output=True, check=False)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 3
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stdout + proc.stderr


def test_preflight_stops_on_a_download_source_that_answers_an_http_error(host):
    """The Ollama release taken from a path the host's Prometheus does not serve (it answers
    HEAD with 404: checked first) instead of the local archive: the real preflight stops with
    exit 3 before anything changes, naming the answer and the setting that replaces it."""
    missing = "http://127.0.0.1:9090/releases/ollama-linux-amd64.tgz"
    answer = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' --head --max-time 10 {missing}")
    assert answer.stdout == "404", answer.stdout + answer.stderr
    proc = installer("preflight", "--json", str(EPHEMERAL / "preflight-404.json"),
                     "-e", json.dumps({"ollama_archive_src": "", "ollama_archive_url": missing}))
    assert proc.returncode == 3
    [download] = [p for p in summary("preflight-404.json")["problems"] if p["check"] == "download source"]
    assert download["found"] == f"the Ollama release archive: {missing} answers HTTP 404"
    assert "ollama_archive_src" in download["fix"]


@pytest.fixture
def drifted_host(host):
    """Drift made by hand in five services of the test host, and in the database objects the
    postgresql role reads before it runs their modules."""
    wanted = {"work_mem": work_mem(host), "ufw": sorted(host.check_output("ufw status").splitlines()),
              "objects": database_objects(host)}
    host.run_expect([0], f"echo '# edited by hand' >> {NGINX_SITE}")
    host.run_expect([0], "systemctl stop redis-server")
    host.run_expect([0], f"sed -i 's/^work_mem = .*/work_mem = 77MB/' {POSTGRESQL_CONF} && "
                         "systemctl reload postgresql@15-main")
    assert work_mem(host) == "77MB"
    host.run_expect([0], "ufw delete allow 443/tcp")
    assert "443/tcp" not in host.check_output("ufw status")
    host.run_expect([0], "docker stop api-1")
    psql = "runuser -u postgres -- psql -d %s -qtAc %s"
    host.check_output(psql, "platform", "DROP EXTENSION pg_stat_statements; GRANT CREATE ON SCHEMA public TO PUBLIC")
    host.check_output(psql, "postgres", "REVOKE pg_monitor FROM monitoring; DROP TABLE platform_drill.heartbeat")
    assert database_objects(host) != wanted["objects"]
    return host, wanted


def database_objects(host) -> list[str]:
    """The platform database's extensions and whether PUBLIC may create in its public schema;
    whether the monitoring login is in pg_monitor, and the heartbeat table."""
    psql = "runuser -u postgres -- psql -d %s -qtAc %s"
    return [host.check_output(psql, "platform", "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension"),
            host.check_output(psql, "platform", "SELECT has_schema_privilege('public', 'public', 'CREATE')"),
            host.check_output(psql, "postgres", "SELECT pg_has_role('monitoring', 'pg_monitor', 'MEMBER'), "
                                                "to_regclass('platform_drill.heartbeat')")]


def drift_report(host) -> dict[str, str]:
    """What the last check published through node_exporter's textfile collector (the
    monitoring role's default folder), metric -> value."""
    text = host.file("/var/lib/prometheus/node-exporter/platform_drift.prom").content_string
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("platform_drift"))


def test_drift_is_reported_item_by_item_then_repaired(drifted_host):
    host, wanted = drifted_host
    name = host.backend.get_hostname()
    proc = installer("check", "--json", str(EPHEMERAL / "drift.json"))
    assert proc.returncode == 2
    drift = [item for item in summary("drift.json")["drift"] if item["host"] == name]
    expected = {
        "the hand-edited nginx site": lambda i: i["role"] == "nginx" and "edited by hand" in i["diff"],
        "the stopped Redis": lambda i: i["role"] == "redis" and "start" in i["task"].lower(),
        "the PostgreSQL setting": lambda i: i["role"] == "postgresql" and "work_mem = 77MB" in i["diff"],
        "the deleted UFW rule": lambda i: i["role"] == "firewall" and "rule" in i["task"].lower(),
        "the stopped app container": lambda i: i["role"] == "app" and "api-1" in i["task"],
        "the dropped extension": lambda i: i["role"] == "postgresql" and i["task"] == "Create the extensions",
        "PUBLIC's CREATE on the public schema": lambda i: i["role"] == "postgresql" and "public schema" in i["task"],
        "the revoked pg_monitor": lambda i: i["role"] == "postgresql" and "pg_monitor" in i["task"],
        "the dropped heartbeat table": lambda i: i["task"] == "Create the heartbeat table",
    }
    missing = [what for what, found in expected.items() if not any(found(item) for item in drift)]
    assert not missing, (missing, drift)
    published = drift_report(host)
    assert all(int(published[f'platform_drift_items{{role="{role}"}}']) >= 1
               for role in ("nginx", "redis", "postgresql", "firewall", "app")), published

    assert installer().returncode == 0
    repaired = drift_report(host)
    assert {key: value for key, value in repaired.items() if key.startswith("platform_drift_items")
            and value != "0"} == {}, "the whole install must clear the drift it repaired"
    assert repaired["platform_drift_check_timestamp_seconds"] == published["platform_drift_check_timestamp_seconds"]
    assert not host.file(NGINX_SITE).contains("edited by hand")
    assert host.service("redis-server").is_running
    assert work_mem(host) == wanted["work_mem"]
    assert sorted(host.check_output("ufw status").splitlines()) == wanted["ufw"]
    assert host.docker("api-1").is_running
    assert database_objects(host) == wanted["objects"]


def started_at(host, container: str) -> str:
    return host.check_output("docker inspect -f '{{.State.StartedAt}}' %s", container)


def test_a_restore_stops_the_apps_that_use_the_database_and_starts_them_again(host):
    """installer.py restore --latest: a row committed and archived before it is back, the api
    replicas (which use postgres) were stopped and started again and work, and the front end
    and the worker (which do not) were left running."""
    psql = "runuser -u postgres -- psql -d platform -qtAc %s"
    host.check_output(psql, "CREATE TABLE IF NOT EXISTS e2e_restore (mark text); "
                            "INSERT INTO e2e_restore SELECT md5(random()::text)")
    host.check_output(psql, "SELECT pg_switch_wal()")  # archive the WAL that holds the row
    rows = "SELECT string_agg(mark, ',' ORDER BY mark) FROM e2e_restore"
    committed = host.check_output(psql, rows)
    before = {name: started_at(host, name) for name in ("api-1", "api-2", "frontend-1", "worker-1")}
    timeline = "SELECT timeline_id FROM pg_control_checkpoint()"
    timeline_before = int(host.check_output(psql, timeline))
    proc = installer("restore", "--latest", "--yes")
    assert proc.returncode == 0, "installer.py restore failed (output above)"
    assert committed and host.check_output(psql, rows) == committed
    # The row never left: the restore itself shows in the timeline its recovery ended on.
    assert int(host.check_output(psql, timeline)) > timeline_before
    after = {name: started_at(host, name) for name in before}
    assert after["api-1"] != before["api-1"] and after["api-2"] != before["api-2"], (before, after)
    assert (after["frontend-1"], after["worker-1"]) == (before["frontend-1"], before["worker-1"])
    work = json.loads(fetch(host, "/api/work"))
    assert work["DATABASE_URL"]["ok"], work


def replica_env(host, replica: str) -> dict[str, str]:
    listed = json.loads(host.check_output(f"docker inspect --format '{{{{json .Config.Env}}}}' {replica}"))
    return dict(item.split("=", 1) for item in listed)


def opens_database(host, url: str) -> subprocess.CompletedProcess:
    """Whether `url` opens PostgreSQL from inside api-1, as the app connects (psycopg2)."""
    script = "import sys, psycopg2; psycopg2.connect(sys.argv[1], connect_timeout=5).close()"
    return host.run(f"docker exec api-1 python3 -c {shlex.quote(script)} {shlex.quote(url)}")


@slow(9, "one more whole install")
def test_a_rotated_secret_applies_everywhere_on_the_next_install(host):
    """secrets --rotate, then an install: PostgreSQL's role, both api replicas and the job's
    environment get the new password, the API works with it, and the old one no longer opens
    the database. (After the drift test, which leaves the host repaired.)"""
    old_url = replica_env(host, "api-1")["DATABASE_URL"]
    assert installer("secrets", "--rotate", "postgresql_app_password", "--yes").returncode == 0
    assert installer().returncode == 0
    new_url = replica_env(host, "api-1")["DATABASE_URL"]
    assert urlsplit(new_url).password != urlsplit(old_url).password
    assert replica_env(host, "api-2")["DATABASE_URL"] == new_url
    assert f"DATABASE_URL={new_url}" in host.file("/etc/platform/jobs/cleanup.env").content_string
    assert opens_database(host, new_url).rc == 0
    refused = opens_database(host, old_url)
    assert refused.rc != 0 and "password authentication failed" in refused.stderr, refused.stderr
    work = json.loads(fetch(host, "/api/work"))
    assert work["DATABASE_URL"]["ok"], work
