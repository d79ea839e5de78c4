"""The monitoring stack on a host that also runs PostgreSQL, Redis and nginx: Prometheus's
own API (asked with curl inside the host), promtool, Redis stopped for real, and raw TCP
from outside the host against the exporter ports.

The exporters' PostgreSQL login and Redis user come from the postgresql and redis roles
themselves (the scenario's inventory sets nothing about them), and nginx's stub_status from
the nginx role, which purges every other file of conf.d here.

Grafana itself did not run here: its package comes from Grafana's apt repository, which
the CI machine cannot reach. Its provisioning files (data source, dashboards) are tested
against the running Prometheus instead, and nginx's /grafana/ location against a stand-in
HTTP server on Grafana's port."""

from __future__ import annotations

import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import testinfra.utils.ansible_runner
import yaml
from drill import DRILL_SERVICE, result, stale_heartbeat
from reach import blocked

INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
# The monitoring role's default monitoring_textfile_directory.
DRIFT_REPORT = "/var/lib/prometheus/node-exporter/platform_drift.prom"
SCENARIO = Path(__file__).resolve().parents[1]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
testinfra_hosts = RUNNER.get_hosts("monitoring")
assert testinfra_hosts, f"no host of group monitoring in {INVENTORY}: every test would be skipped"

SECRETS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["inventory"]["group_vars"]["all"][
    "platform_secrets"]

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
EXPORTER_PORTS = {"node": 9100, "postgres": 9187, "redis": 9121, "nginx": 9113}
STUB_STATUS_PORT = 8081
JOBS = {"prometheus", "alertmanager", *EXPORTER_PORTS}
# The apps' own metrics (prom-client / prometheus_client names the seeds use): no app
# container runs in this scenario, so Prometheus cannot have them.
APP_METRICS = {"http_requests_total", "http_request_duration_seconds_bucket"}
DASHBOARDS = "/var/lib/grafana/dashboards/platform"
# PromQL words that are not metric names.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "bool", "offset", "inf", "nan"}


def api(host, url: str):
    """GET a JSON API inside the test host with curl."""
    reply = json.loads(host.check_output("curl -fsS --max-time 10 %s", url))
    assert not isinstance(reply, dict) or reply.get("status", "success") == "success", reply
    return reply


def query(host, promql: str) -> list[dict]:
    return api(host, f"{PROMETHEUS}/api/v1/query?query={quote(promql)}")["data"]["result"]


def wait_for(condition, timeout: float, interval: float = 2.0):
    """Polls condition() until it returns something true; returns that, or the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def targets(host) -> list[dict]:
    return api(host, f"{PROMETHEUS}/api/v1/targets?state=active")["data"]["activeTargets"]


def test_every_target_is_up(host):
    scraped = wait_for(lambda: all(t["health"] != "unknown" for t in targets(host)) and targets(host), 60)
    assert scraped, "Prometheus has not scraped every target within 60 s"
    assert {t["labels"]["job"] for t in scraped} == JOBS
    down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in scraped if t["health"] != "up"]
    assert not down, down
    assert {t["labels"]["instance"] for t in scraped} == {host.backend.get_hostname()}


@pytest.mark.parametrize("metric", ["pg_up", "redis_up", "nginx_up"])
def test_exporters_reach_their_service(host, metric):
    result = wait_for(lambda: query(host, metric), 30)
    assert [sample["value"][1] for sample in result] == ["1"], result


def test_exporters_see_the_data(host):
    """The monitoring users have the rights the exporters need, not just a login."""
    databases = {sample["metric"]["datname"] for sample in query(host, "pg_database_size_bytes")}
    assert {"platform", "postgres"} <= databases
    assert query(host, "redis_memory_max_bytes > 0"), "the Redis exporter read no maxmemory"
    assert query(host, "nginx_connections_active >= 1"), "the nginx exporter read no connection"


def test_rule_files_pass_promtool(host):
    files = host.check_output("ls /etc/prometheus/rules/*.yml").split()
    assert files
    for path in files:
        result = host.run("promtool check rules %s", path)
        assert result.rc == 0, result.stdout + result.stderr
    config = host.run("promtool check config /etc/prometheus/prometheus.yml")
    assert config.rc == 0, config.stdout + config.stderr


DAY = 86400
# promtool's clock starts at 0: at 10 days, a backup at 0 is 10 days old.
DRILL_SERIES = {
    "fresh": {"oldest": 9 * DAY, "scheduled": 1},  # a new install: backups a day old, no drill yet
    "never": {"oldest": 0, "scheduled": 1},  # backups 10 days old, no drill ever passed
    "off": {"oldest": 0},  # postgresql_restore_drill_enabled: false
    "stale": {"oldest": 0, "scheduled": 1, "success": 1, "last_success": 1 * DAY},  # the last pass 9 days ago
    "failed": {"oldest": 0, "scheduled": 1, "success": 0, "last_success": 8 * DAY},
    "passed": {"oldest": 0, "scheduled": 1, "success": 1, "last_success": 9 * DAY},
}
DRILL_METRICS = {"oldest": "platform_pgbackrest_oldest_backup_timestamp_seconds",
                 "scheduled": "platform_restore_drill_scheduled",
                 "success": "platform_restore_drill_success",
                 "last_success": "platform_restore_drill_last_success_timestamp_seconds"}


# What each alert of the backups says (severity, summary, description), {instance} its host.
ALERT_TEXTS = {
    "RestoreDrillFailed": ("critical", "The last restore drill on {instance} failed",
                           "See journalctl -u platform-postgresql-restore-drill on {instance}; "
                           "installer.py restore --drill runs one now."),
    "RestoreDrillMissing": ("warning", "No restore drill has passed on {instance} for 8 days",
                            "Backups not restored lately are not known to restore: "
                            "see platform-postgresql-restore-drill.timer."),
    "RestoreDrillNeverPassed": ("warning", "No restore drill has ever passed on {instance}",
                                "Backups never restored are not known to restore: "
                                "see platform-postgresql-restore-drill.timer."),
    "FilesBackupFailed": ("warning", "The last backup of the files on {instance} failed",
                          "See journalctl -u platform-files-backup on {instance}; "
                          "installer.py backup --tags backup runs one now."),
    "FilesBackupMissing": ("warning", "No backup of the files has passed on {instance} for 26 hours",
                           "Configuration, Redis snapshots and app volumes changed since are not backed up: "
                           "see platform-files-backup.timer."),
    "RedisReplicaLinkDown": ("warning", "The Redis replica on {instance} has lost its master",
                             "See /var/log/redis/redis-server.log on {instance}; "
                             "installer.py verify names the set's master."),
}


def expected_alert(name: str, instance: str) -> dict:
    severity, summary, description = ALERT_TEXTS[name]
    return {"exp_labels": {"severity": severity, "instance": instance},
            "exp_annotations": {"summary": summary.format(instance=instance),
                                "description": description.format(instance=instance)}}


def test_restore_drill_alerts_fire_on_what_they_say(host):
    """promtool's rule tests on the installed rules: a drill that failed, none passed for 8 days,
    and none ever passed on backups older than that, each fires its own alert; a new install
    waiting for its first drill, a host without drills and a recent pass fire none."""
    expected = {"RestoreDrillFailed": ["failed"], "RestoreDrillMissing": ["stale"],
                "RestoreDrillNeverPassed": ["never"]}
    rule_test(host, "restore-drill", DRILL_SERIES, DRILL_METRICS, expected)


def test_redis_replica_alert_fires_on_a_replica_without_its_master(host):
    """promtool's rule test on the installed rules: a replica whose link to the master is down
    fires RedisReplicaLinkDown; one whose link is up, and a master (no such series), none."""
    rule_test(host, "redis-replica", {"lost": {"link": 0}, "following": {"link": 1}},
              {"link": "redis_master_link_up"}, {"RedisReplicaLinkDown": ["lost"]},
              step="1m", evaluation_interval="1m")


def rule_test(host, name: str, series: dict[str, dict], metrics: dict[str, str],
              expected: dict[str, list[str]], *, step: str = "1d", evaluation_interval: str = "1h") -> None:
    """promtool's rule test on the installed rules: each instance's series (metric key ->
    value, held for 10 steps of `step`), and after those 10 steps exactly the expected alerts
    (alert name -> instances), each with its labels and annotations (ALERT_TEXTS). A rule
    with a `for` window needs steps shorter than Prometheus's 5-minute lookback, so that its
    series is seen at every evaluation."""
    input_series = [{"series": f'{metrics[key]}{{instance="{instance}"}}', "values": f"{value}+0x10"}
                    for instance, values in series.items() for key, value in values.items()]
    end = f"{10 * int(step[:-1])}{step[-1]}"
    tests = {"rule_files": ["/etc/prometheus/rules/platform.yml"], "evaluation_interval": evaluation_interval,
             "tests": [{"interval": step, "input_series": input_series,
                        "alert_rule_test": [{"eval_time": end, "alertname": alertname,
                                             "exp_alerts": [expected_alert(alertname, i) for i in instances]}
                                            for alertname, instances in expected.items()]}]}
    path = f"/tmp/{name}-rules-test.yml"  # noqa: S108 (in the test host)
    host.check_output("printf %%s %s > %s", json.dumps(tests), path)
    result = host.run("promtool test rules %s", path)
    assert result.rc == 0, result.stdout + result.stderr


# At 10 days: the last backup of the files passed an hour ago, failed after passing an hour
# ago, or passed 2 days ago.
FILES_BACKUP_SERIES = {
    "passed": {"success": 1, "last_success": 10 * DAY - 3600},
    "failed": {"success": 0, "last_success": 10 * DAY - 3600},
    "stale": {"success": 1, "last_success": 8 * DAY},
}
FILES_BACKUP_METRICS = {"success": "platform_files_backup_success",
                        "last_success": "platform_files_backup_last_success_timestamp_seconds"}


def test_files_backup_alerts_fire_on_what_they_say(host):
    """promtool's rule tests on the installed rules: a failed backup of the files and none
    passed for 26 hours each fire their own alert; a recent pass fires none."""
    expected = {"FilesBackupFailed": ["failed"], "FilesBackupMissing": ["stale"]}
    rule_test(host, "files-backup", FILES_BACKUP_SERIES, FILES_BACKUP_METRICS, expected)


def test_prometheus_loaded_the_rules(host):
    groups = api(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"TargetDown", "PostgreSQLDown", "RedisDown", "NginxDown", "HighErrorRate", "HighLatencyP95",
            "HighMemoryUsage", "DiskAlmostFull", "BackupTooOld", "WalArchivingFailing",
            "CertificateExpiresSoon", "GpuTemperatureHigh", "GpuMemoryHigh", "PlatformDrift",
            "PlatformDriftCheckMissing", "PlatformDriftCheckFailed", "RestoreDrillFailed", "RestoreDrillMissing",
            "RestoreDrillNeverPassed", "FilesBackupFailed", "FilesBackupMissing", "RedisReplicaLinkDown"} <= alerts
    unhealthy = [(rule["name"], rule.get("lastError")) for group in groups for rule in group["rules"]
                 if rule.get("health") == "err"]
    assert not unhealthy, unhealthy


def test_host_metrics(host):
    """pgBackRest, WAL archiving, the served certificate, the GPU of the stand-in nvidia-smi,
    and the first backup of the files, which the install took."""
    assert [s["value"][1] for s in query(host, "platform_host_metrics_success")] == ["1"] * 6
    assert [s["value"][1] for s in query(host, "platform_files_backup_success")] == ["1"]
    assert query(host, "platform_files_backup_files > 0 and on(instance) "
                       "time() - platform_files_backup_last_success_timestamp_seconds < 86400"), \
        "no recent backup of the files reported"
    assert query(host, "platform_pgbackrest_backups >= 1"), "no pgBackRest backup reported"
    assert query(host, 'time() - platform_pgbackrest_last_backup_timestamp_seconds{type="full"} < 86400')
    assert query(host, "platform_pgbackrest_oldest_backup_timestamp_seconds "
                       '<= on(instance) platform_pgbackrest_last_backup_timestamp_seconds{type="full"}')
    assert query(host, "platform_postgresql_wal_last_archived_timestamp_seconds > 0"), "no WAL archived"
    expiry = query(host, 'platform_tls_certificate_expiry_timestamp_seconds{server_name="platform.test"}')
    served = host.check_output(
        "openssl s_client -connect 127.0.0.1:443 -servername platform.test </dev/null 2>/dev/null"
        " | openssl x509 -noout -enddate")
    assert expiry and served.startswith("notAfter="), (expiry, served)
    # The expiry of the certificate nginx serves, to the second.
    assert float(expiry[0]["value"][1]) == ssl.cert_time_to_seconds(served.removeprefix("notAfter="))
    # Memory and disk alerts depend on the machine the containers run on, not on the stack.
    alerts = query(host, 'ALERTS{alertname!~"HighMemoryUsage|DiskAlmostFull"}')
    assert not alerts, f"alerts pending or firing on the healthy stack: {alerts}"


GPU_LIST = "/etc/nvidia-smi-standin.json"  # what the stand-in nvidia-smi reports (prepare.yml)


def gpu(index: int, temperature: int, used_mib: int, utilization: int) -> dict:
    return {"index": index, "uuid": f"GPU-{index}{temperature}{used_mib}-test", "name": "Stand-in GPU",
            "temperature.gpu": temperature, "memory.used": used_mib, "memory.total": 24576,
            "utilization.gpu": utilization}


def report_gpus(host, gpus: list[dict]) -> None:
    """Has the stand-in nvidia-smi report these GPUs, and runs the collector now."""
    host.run_expect([0], f"printf '%s\\n' {shlex.quote(json.dumps(gpus))} > {GPU_LIST}")
    host.run_expect([0], "systemctl start platform-host-metrics.service")


def gpu_samples(host, metric: str) -> dict[str, tuple[dict, float]]:
    return {s["metric"]["gpu"]: (s["metric"], float(s["value"][1])) for s in query(host, metric)}


def gpu_alerts(host) -> set[tuple[str, str, str]]:
    return {(a["metric"]["alertname"], a["metric"]["gpu"], a["metric"]["alertstate"])
            for a in query(host, 'ALERTS{alertname=~"Gpu.*"}')}


def test_gpu_metrics_and_alerts_follow_what_nvidia_smi_reports(host):
    """Values this test chooses, through the collector (which asks nvidia-smi for its fields
    in CSV), node_exporter and Prometheus's rules: a hot GPU and a full one each raise
    their own alert, on their own GPU; cool values clear them."""
    hot, full = gpu(0, 91, 1000, 63), gpu(1, 52, 24000, 100)
    cool = gpu(0, 41, 1024, 7)
    try:
        report_gpus(host, [hot, full])
        wanted = {"0": 91.0, "1": 52.0}
        seen = wait_for(lambda: {k: v for k, (_, v) in gpu_samples(
            host, "platform_gpu_temperature_celsius").items()} == wanted, 75)
        assert seen, gpu_samples(host, "platform_gpu_temperature_celsius")
        temperatures = gpu_samples(host, "platform_gpu_temperature_celsius")
        assert {k: labels["uuid"] for k, (labels, _) in temperatures.items()} == {"0": hot["uuid"], "1": full["uuid"]}
        assert {k: v for k, (_, v) in gpu_samples(host, "platform_gpu_memory_used_bytes").items()} == {
            "0": 1000 * 2**20, "1": 24000 * 2**20}
        assert {k: v for k, (_, v) in gpu_samples(host, "platform_gpu_memory_total_bytes").items()} == {
            "0": 24576 * 2**20, "1": 24576 * 2**20}
        assert {k: v for k, (_, v) in gpu_samples(host, "platform_gpu_utilization_ratio").items()} == {
            "0": 0.63, "1": 1.0}
        # Pending at the next rule evaluation (each fires only after monitoring_alert_gpu_for).
        expected = {("GpuTemperatureHigh", "0", "pending"), ("GpuMemoryHigh", "1", "pending")}
        assert wait_for(lambda: gpu_alerts(host) == expected, 75), gpu_alerts(host)
    finally:
        report_gpus(host, [cool])
    assert wait_for(lambda: not gpu_alerts(host), 75), gpu_alerts(host)
    assert {k: v for k, (_, v) in gpu_samples(host, "platform_gpu_temperature_celsius").items()} == {"0": 41.0}


def test_exporters_not_reachable_from_outside(host):
    """Connects from the test process to the container's own address: exporter ports only."""
    address = host.interface("eth0").addresses[0]
    for port in [*EXPORTER_PORTS.values(), STUB_STATUS_PORT]:
        assert host.run("curl -fsS --max-time 5 -o /dev/null http://127.0.0.1:%s/", str(port)).rc in (0, 22)
        assert blocked(address, port, control=(address, 443)), port


def test_servers_listen_on_loopback_only(host):
    listening = host.check_output("ss -ltnH").splitlines()
    local = {line.split()[3] for line in listening}
    for port in (9090, 9093):
        assert f"127.0.0.1:{port}" in local
        assert not any(addr.endswith(f":{port}") and not addr.startswith("127.0.0.1:") for addr in local)
    assert not any(addr.endswith(":9094") for addr in local), "Alertmanager's cluster port is open"


def metric_names(promql: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are no function, keyword or label."""
    text = re.sub(r'"[^"]*"', "", promql)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    return set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*\b(?!\s*\()", text)) - PROMQL_WORDS


def test_grafana_data_source(host):
    """Grafana itself did not run (no package here): its data source file points at the running Prometheus."""
    source = yaml.safe_load(host.file("/etc/grafana/provisioning/datasources/platform.yml").content_string)
    (prometheus,) = source["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["uid"] == "prometheus"
    assert api(host, f"{prometheus['url']}/api/v1/status/buildinfo")["data"]["version"]
    provider = yaml.safe_load(host.file("/etc/grafana/provisioning/dashboards/platform.yml").content_string)
    assert provider["providers"][0]["options"]["path"] == DASHBOARDS


def test_grafana_dashboards_query_existing_metrics(host):
    """Grafana itself did not run (no package here): every dashboard parses as JSON and every
    metric it queries exists in the running Prometheus (or is an app metric, see APP_METRICS)."""
    existing = set(api(host, f"{PROMETHEUS}/api/v1/label/__name__/values")["data"])
    files = host.check_output("ls %s", DASHBOARDS).split()
    assert {"platform-hosts.json", "platform-postgresql.json", "platform-redis.json", "platform-nginx.json",
            "platform-gpus.json", "platform-apps.json"} <= set(files)
    missing = {}
    for name in files:
        dashboard = json.loads(host.file(f"{DASHBOARDS}/{name}").content_string)
        exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
        assert exprs, f"{name} queries nothing"
        for expr in exprs:
            assert all(p["datasource"]["uid"] == "prometheus" for p in dashboard["panels"])
            unknown = metric_names(expr) - existing - APP_METRICS
            if unknown:
                missing[f"{name}: {expr}"] = sorted(unknown)
    assert not missing, missing


def test_metric_name_extraction():
    """The helper above finds names and skips functions, labels and keywords."""
    assert metric_names('sum by (job) (rate(http_requests_total{status=~"5.."}[5m])) / up') == {
        "http_requests_total", "up"}
    assert metric_names("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes") == {
        "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"}


def alert_states(host, name: str) -> set[str]:
    return {a["state"] for a in api(host, f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
            if a["labels"]["alertname"] == name}


def notified(host, alert: str, status: str) -> bool:
    """Whether the webhook receiver (a stand-in endpoint, prepare.yml) got `alert` in `status`."""
    sink = host.file("/var/log/webhook-sink.jsonl")
    if not sink.exists:
        return False
    posts = [json.loads(line) for line in sink.content_string.splitlines() if line]
    return any(a["labels"]["alertname"] == alert and a["status"] == status for post in posts for a in post["alerts"])


def fires_and_notifies(host, alert: str) -> None:
    assert wait_for(lambda: "firing" in alert_states(host, alert), 90), f"{alert} did not fire"
    assert wait_for(lambda: notified(host, alert, "firing"), 60), \
        f"Alertmanager did not notify the webhook receiver of {alert}"


def verify_playbook(tags: str) -> str:
    """playbooks/verify.yml (what installer.py verify runs) for these roles, its output on one
    line; a failed probe does not fail the play."""
    project = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(project / "ansible.cfg"),
               ANSIBLE_ROLES_PATH=str(project / "roles"))
    probes = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY,
         str(project / "playbooks" / "verify.yml"), "--tags", tags],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    assert probes.returncode == 0, probes.stdout
    return " ".join(probes.stdout.split())


def test_redis_down_alert_fires_and_verify_reports_it(host):
    """Stops Redis for real: RedisDown turns pending, then firing within its 15 s window,
    reaches Alertmanager, which notifies the webhook receiver (and again when it resolves),
    and two probes of playbooks/verify.yml (installer.py verify) fail naming it."""
    assert not alert_states(host, "RedisDown")
    host.check_output("systemctl stop redis-server")
    try:
        started = time.monotonic()
        assert wait_for(lambda: alert_states(host, "RedisDown") & {"pending", "firing"}, 30, 1), \
            "RedisDown did not turn pending within 30 s of Redis stopping"
        assert wait_for(lambda: "firing" in alert_states(host, "RedisDown"), 60, 1), \
            "RedisDown did not fire within 60 s"
        assert time.monotonic() - started >= 15, "RedisDown fired before its 15 s window"
        in_alertmanager = wait_for(lambda: [a for a in api(host, f"{ALERTMANAGER}/api/v2/alerts")
                                            if a["labels"]["alertname"] == "RedisDown"], 30)
        assert in_alertmanager, "Alertmanager did not receive RedisDown"
        assert wait_for(lambda: notified(host, "RedisDown", "firing"), 30), \
            "Alertmanager did not notify the webhook receiver of RedisDown"

        # installer.py verify runs playbooks/verify.yml and lists each failed probe's message.
        report = verify_playbook("monitoring")
        assert "Exporters that cannot reach their service: redis" in report, report
        assert "Firing alerts: RedisDown" in report, report
        assert re.search(r"failed=0 .*ignored=2", report), report
    finally:
        host.check_output("systemctl start redis-server")
    assert wait_for(lambda: not alert_states(host, "RedisDown"), 60), "RedisDown did not clear after Redis came back"
    assert wait_for(lambda: notified(host, "RedisDown", "resolved"), 60), \
        "Alertmanager did not tell the webhook receiver that RedisDown was resolved"


def drill_published(host, status: str) -> None:
    """The drill's result as the host collector publishes it, collected now and not a minute later."""
    host.check_output("systemctl start platform-host-metrics.service")
    expected = "1" if status == "ok" else "0"
    assert wait_for(lambda: [s["value"][1] for s in query(host, "platform_restore_drill_success")] == [expected], 90), \
        f"platform_restore_drill_success is not {expected} after a drill that ended {status}"


def test_a_failed_restore_drill_fires_its_alert_and_a_passing_one_clears_it(host):
    """The postgresql role's drill, run through its unit: made to fail by an hour-old heartbeat
    in the archived WAL, RestoreDrillFailed fires and reaches the receiver; the next drill,
    with a fresh heartbeat, passes and clears it."""
    assert not alert_states(host, "RestoreDrillFailed")
    with stale_heartbeat(host):
        failed = host.run("systemctl start %s", DRILL_SERVICE)
    assert failed.rc != 0 and result(host)["status"] == "failed", result(host)
    drill_published(host, "failed")
    fires_and_notifies(host, "RestoreDrillFailed")

    host.check_output("systemctl start %s", DRILL_SERVICE)
    passed = result(host)
    assert passed["status"] == "ok" and passed["last_success"] == passed["finished"], passed
    drill_published(host, "ok")
    assert query(host, f"platform_restore_drill_last_success_timestamp_seconds == {passed['last_success']}")
    assert query(host, f"platform_restore_drill_recovery_point_seconds == {passed['recovery_point_seconds']}")
    assert wait_for(lambda: not alert_states(host, "RestoreDrillFailed"), 90), "RestoreDrillFailed did not clear"
    assert not alert_states(host, "RestoreDrillMissing") and not alert_states(host, "RestoreDrillNeverPassed")


FILES_BACKUP_KEY_FILE = "/etc/platform/backup/password"  # the backup role's


def files_backup_published(host, expected: str) -> None:
    host.check_output("systemctl start platform-host-metrics.service")
    assert wait_for(lambda: [s["value"][1] for s in query(host, "platform_files_backup_success")] == [expected], 90), \
        f"platform_files_backup_success is not {expected}"


def test_a_failed_backup_of_the_files_fires_its_alert_fails_verify_and_the_next_one_clears_it(host):
    """The backup role's unit, made to fail by a wrong repository password: FilesBackupFailed
    fires and reaches the receiver, and verify's probe names the failure; with the password
    back, the next backup passes and clears the alert."""
    assert not alert_states(host, "FilesBackupFailed")
    host.check_output("cp -p %s %s.kept && echo not-the-password > %s",
                      FILES_BACKUP_KEY_FILE, FILES_BACKUP_KEY_FILE, FILES_BACKUP_KEY_FILE)
    try:
        failed = host.run("systemctl start platform-files-backup.service")
        assert failed.rc != 0, "the backup passed with a wrong password"
        files_backup_published(host, "0")
        fires_and_notifies(host, "FilesBackupFailed")
        report = verify_playbook("backup")
        assert ("The last backup of the files failed: cannot open the repository /var/lib/platform-backup/repository: "
                "Fatal: wrong password or no key found") in report, report
    finally:
        host.check_output("mv %s.kept %s", FILES_BACKUP_KEY_FILE, FILES_BACKUP_KEY_FILE)
    host.check_output("systemctl start platform-files-backup.service")
    files_backup_published(host, "1")
    assert wait_for(lambda: not alert_states(host, "FilesBackupFailed"), 90), "FilesBackupFailed did not clear"


def psql_as_monitoring(host, sql: str, database: str = "postgres"):
    return host.run("PGPASSWORD=%s psql -h 127.0.0.1 -U monitoring -d %s -XtAc %s",
                    SECRETS["postgresql_monitoring_password"], database, sql)


def test_postgresql_role_made_the_monitoring_login(host):
    """No postgresql_users entry here: the postgresql role created the login (pg_monitor
    only) because group monitoring has a host, and pg_hba admits it to `postgres` only."""
    roles = psql_as_monitoring(host, "SELECT pg_has_role('pg_monitor', 'MEMBER'), rolsuper, rolcreaterole, "
                                     "rolcreatedb, rolreplication FROM pg_roles WHERE rolname = current_user")
    assert roles.rc == 0, roles.stderr
    assert roles.stdout.strip() == "t|f|f|f|f"
    other_database = psql_as_monitoring(host, "SELECT 1", database="platform")
    assert other_database.rc != 0 and "no pg_hba.conf entry" in other_database.stderr, other_database.stderr
    write = psql_as_monitoring(host, "CREATE TABLE monitoring_may_not (id int)")
    assert write.rc != 0 and "permission denied" in write.stderr, write.stderr


def redis_as_monitoring(host, *command: str):
    return host.run("redis-cli --no-auth-warning --user monitoring --pass %s" + " %s" * len(command),
                    SECRETS["redis_monitoring_password"], *command)


def test_redis_role_made_the_monitoring_user(host):
    """No redis_extra_users here: the redis role wrote the user, which may run INFO and no
    command that reads or writes data or configuration."""
    info = redis_as_monitoring(host, "INFO", "server")
    assert info.rc == 0 and "redis_version:" in info.stdout, info.stdout + info.stderr
    for command in (["GET", "session"], ["SET", "session", "1"], ["KEYS", "*"], ["CONFIG", "GET", "maxmemory"],
                    ["ACL", "LIST"]):
        denied = redis_as_monitoring(host, *command)
        assert "NOPERM" in denied.stdout + denied.stderr, (command, denied.stdout, denied.stderr)


def test_stub_status_survives_the_purge(host):
    """nginx_purge_unmanaged removed the stray file prepare.yml left in conf.d; the
    stub_status server is in the nginx role's own site file, so it stayed."""
    assert not host.file("/etc/nginx/conf.d/stray.conf").exists
    assert host.file("/etc/nginx/conf.d").listdir() == ["platform.conf"]
    page = host.check_output("curl -fsS --max-time 5 http://127.0.0.1:%s/stub_status", str(STUB_STATUS_PORT))
    assert page.startswith("Active connections:"), page


def grafana_through_nginx(host, path: str) -> str:
    return host.check_output(
        "curl -sk --max-time 10 --resolve platform.test:443:127.0.0.1 -w ' %%{http_code}' https://platform.test%s",
        path)


def grafana_header(host, path: str, name: str) -> str:
    headers = host.check_output(
        "curl -sk --max-time 10 --resolve platform.test:443:127.0.0.1 -D - -o /dev/null https://platform.test%s", path)
    return next((line.split(":", 1)[1].strip() for line in headers.splitlines()
                 if line.lower().startswith(name + ":")), "")


def test_grafana_is_served_at_its_sub_path(host):
    """Grafana itself did not run (no package here). The nginx role's /grafana/ location is
    rendered without an nginx login (Grafana has its own), nginx -t accepts it, and nginx
    passes requests with their path to Grafana's port, where a stand-in HTTP server answers."""
    site = host.file("/etc/nginx/conf.d/platform.conf").content_string
    grafana = re.search(r"location /grafana/ \{\s*limit_req zone=grafana burst=100 nodelay;(.*?)"
                        r"\s*proxy_pass http://127\.0\.0\.1:3000;\s*\}", site, re.DOTALL)
    assert grafana, site
    # Grafana Live's WebSocket: the upgrade, with every proxy header the location replaces.
    for header in ("Upgrade $http_upgrade", "Connection $connection_upgrade", "Host $host"):
        assert f"proxy_set_header {header};" in grafana.group(1), grafana.group(1)
    assert "auth_basic" not in site
    check = host.run("nginx -t")
    assert check.rc == 0, check.stderr
    assert grafana_through_nginx(host, "/grafana/standin.txt").endswith(" 502"), "nothing listens on 3000 yet"
    host.check_output("mkdir -p /run/grafana-standin/grafana && echo stand-in-grafana"
                      " > /run/grafana-standin/grafana/standin.txt")
    host.check_output("systemd-run --unit=grafana-standin python3 -m http.server 3000 --bind 127.0.0.1"
                      " --directory /run/grafana-standin")
    try:
        answer = wait_for(lambda: (reply := grafana_through_nginx(host, "/grafana/standin.txt")).endswith(" 200")
                          and reply, 20, 1)
        assert answer == "stand-in-grafana\n 200", answer
        # Grafana's pages run inline scripts: the looser policy is theirs alone.
        assert "'unsafe-inline'" in grafana_header(host, "/grafana/standin.txt", "content-security-policy")
        assert "'unsafe-inline'" not in grafana_header(host, "/", "content-security-policy")
        # A login-guessing loop from one address runs into the rate limit (10 r/s, burst 100).
        requests = " ".join(["-o /dev/null https://platform.test/grafana/standin.txt"] * 150)
        codes = host.check_output("curl -sk --max-time 30 --resolve platform.test:443:127.0.0.1"
                                  " -w '%{http_code}\\n' " + requests).split()
        assert len(codes) == 150 and codes[0] == "200" and "429" in codes, codes
    finally:
        host.run("systemctl stop grafana-standin")


def site(options) -> object:
    """site.yml through the installer's own runner, as installer.py runs it."""
    project = str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]))
    if project not in sys.path:
        sys.path.insert(0, project)
    from platformctl import paths
    from platformctl.events import RunState
    from platformctl.runner import new_run_id, run_playbook

    state = RunState()
    outcome = run_playbook(paths.PLAYBOOKS / "site.yml", Path(INVENTORY), options, state,
                           run_id=new_run_id("monitoring-test"))
    assert outcome.rc in (0, 2) and not state.failures, (outcome, state.failures)
    return state


def checked_and_published(host) -> dict:
    """What installer.py check does (platformctl/cli.py): site.yml in check and diff mode, the
    per-host drift report from its events, then the drift action that leaves it on each host."""
    from platformctl.cli import drift_report
    from platformctl.runner import RunOptions

    report = drift_report(site(RunOptions(check=True, diff=True, tags="monitoring")), time.time())
    site(RunOptions(extra_vars=["platform_action=drift", json.dumps({"platform_drift_report": report})]))
    return report[host.backend.get_hostname()]


def drift_metrics(host) -> dict[str, str]:
    """The drift report as the node exporter reads it, by metric (with its labels)."""
    text = host.file(DRIFT_REPORT).content_string
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("platform_drift"))


def test_a_check_that_finds_drift_fires_the_drift_alert_and_the_install_that_repairs_it_clears_it(host):
    """The hand edit stays until the install repairs it: the repair is the install's."""
    config = "/etc/prometheus/prometheus.yml"
    host.check_output("cp -p %s %s.before-test", config, config)
    host.check_output("echo '# edited by hand' >> %s", config)
    try:
        drifted = checked_and_published(host)
        assert drifted["roles"]["monitoring"] >= 1 and drifted["success"]
        assert wait_for(lambda: "firing" in alert_states(host, "PlatformDrift"), 60), "PlatformDrift did not fire"
        assert query(host, 'platform_drift_items{role="monitoring"} >= 1')
        assert query(host, "time() - platform_drift_check_timestamp_seconds < 300")

        from platformctl.runner import RunOptions

        published = drift_metrics(host)
        site(RunOptions(tags="monitoring"))  # the install that repairs the monitoring role
        assert "# edited by hand" not in host.file(config).content_string
    finally:
        # Only where the test stopped before the repair.
        if "# edited by hand" in host.file(config).content_string:
            host.check_output("mv %s.before-test %s", config, config)
        host.run("rm -f %s.before-test", config)
    repaired = drift_metrics(host)
    assert repaired['platform_drift_items{role="monitoring"}'] == "0", repaired
    assert repaired["platform_drift_check_timestamp_seconds"] == published["platform_drift_check_timestamp_seconds"]
    assert wait_for(lambda: not alert_states(host, "PlatformDrift"), 60), "PlatformDrift did not clear"

    clean = checked_and_published(host)
    assert clean["roles"]["monitoring"] == 0
    assert not alert_states(host, "PlatformDrift")
    assert not alert_states(host, "PlatformDriftCheckMissing") and not alert_states(host, "PlatformDriftCheckFailed")
