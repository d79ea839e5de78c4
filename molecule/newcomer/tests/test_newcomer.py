"""After the README's first command (converge.yml): on Debian 13, as the admin user, the same
command again changes nothing and passes its verify, the repository stays theirs (a run under
sudo's become left no root-owned file they cannot replace), nginx answers over TLS with the
certificate the install made, the demo app works, `check` finds no drift and monitoring
scrapes every target and keeps alerts in Alertmanager; on Debian 12, root's run installed
python3-venv itself and built the installer's venv. Commands run inside the test hosts
(docker exec) as the newcomer: root on Debian 12, the admin user on Debian 13."""

from __future__ import annotations

import json
import subprocess
from functools import cache

NEWCOMERS = {"newcomer-debian12": ("root", "/root"), "newcomer-debian13": ("admin", "/home/admin")}
# The machine the README's command installed (root's ran `validate`: converge.yml).
INSTALLED = "newcomer-debian13"


def as_newcomer(host: str, *argv: str, timeout: int = 60) -> subprocess.CompletedProcess:
    user, home = NEWCOMERS[host]
    return subprocess.run(["docker", "exec", "-u", user, "-e", f"HOME={home}", "-w", f"{home}/platform", host, *argv],
                          capture_output=True, text=True, timeout=timeout, check=False)


def rerun(host: str) -> tuple[subprocess.CompletedProcess, dict]:
    home = NEWCOMERS[host][1]
    proc = as_newcomer(host, "python3", "installer.py", "--inventory", "local", "--json", f"{home}/rerun.json",
                       timeout=3600)
    report = as_newcomer(host, "cat", f"{home}/rerun.json")
    return proc, json.loads(report.stdout) if report.returncode == 0 else {}


def run_on_installed(program: str, timeout: int) -> str:
    """A Python program run as root on the installed machine; what it printed."""
    probe = subprocess.run(["docker", "exec", INSTALLED, "python3", "-c", program],
                           capture_output=True, text=True, timeout=timeout, check=False)
    assert probe.returncode == 0, probe.stderr
    return probe.stdout


@cache
def reruns() -> tuple[subprocess.CompletedProcess, dict]:
    return rerun(INSTALLED)


def test_root_s_first_run_installed_python3_venv_itself_and_built_the_venv():
    """Root on a machine without python3-venv: the installer installs it (Debian's package)
    and builds its venv, with no step asked of the newcomer (converge.yml required exit 0)."""
    venv = as_newcomer("newcomer-debian12", "dpkg-query", "-W", "-f", "${Status}", "python3-venv")
    assert venv.stdout == "install ok installed", venv.stdout + venv.stderr
    ansible = as_newcomer("newcomer-debian12", ".venv/bin/python", "-c", "import ansible_runner, ansible; print('ok')")
    assert ansible.stdout.strip() == "ok", ansible.stderr


def test_first_install_passed_its_verify():
    report = as_newcomer(INSTALLED, "cat", f"{NEWCOMERS[INSTALLED][1]}/install.json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["exit_code"] == 0


def test_the_same_command_again_changes_nothing_and_verifies():
    proc, report = reruns()
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0, f"rerun on {INSTALLED} exited {proc.returncode}"
    assert report["totals"]["changed"] == 0, [(h, s["changed"]) for h, s in report["hosts"].items()]


def test_check_after_the_rerun_finds_no_drift():
    """The README's drift check, as the admin user: every role run in check mode, nothing to
    change (exit 0, not 2), on the machine the same command just left as it was."""
    reruns()
    home = NEWCOMERS[INSTALLED][1]
    proc = as_newcomer(INSTALLED, "python3", "installer.py", "check", "--inventory", "local", "--json",
                       f"{home}/check.json", timeout=3600)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    report = json.loads(as_newcomer(INSTALLED, "cat", f"{home}/check.json").stdout or "{}")
    assert proc.returncode == 0, f"check on {INSTALLED} exited {proc.returncode}"
    assert report["exit_code"] == 0 and report["drift"] == [], report.get("drift")


def test_the_admin_users_repository_stays_theirs():
    reruns()
    foreign = as_newcomer("newcomer-debian13", "find", ".", "!", "-user", "admin", "-print")
    assert foreign.returncode == 0, foreign.stderr
    assert foreign.stdout.split() == []


# Python's own client, as a program on the host would use it: the handshake must verify
# against the certificate the nginx role generated for platform_domain (localhost).
TLS_PROBE = """
import ssl, urllib.error, urllib.request
context = ssl.create_default_context(cafile="/etc/nginx/tls/localhost.crt")
try:
    print(urllib.request.urlopen("https://localhost/no-route-here", context=context, timeout=10).status)
except urllib.error.HTTPError as answer:
    print(answer.code)
"""


def test_nginx_answers_over_tls_with_the_installed_certificate():
    output = run_on_installed(TLS_PROBE, timeout=60)
    # Verified, and nginx itself answered: no route holds that path.
    assert output.strip() == "404", output


WORK_PROBE = """
import ssl, urllib.request
context = ssl.create_default_context(cafile="/etc/nginx/tls/localhost.crt")
print(urllib.request.urlopen("https://localhost/api/work", context=context, timeout=60).read().decode())
"""


def test_the_app_works_on_debian_13():
    """The demo app the Debian 13 machine's inventory adds, through nginx: its own clients
    (psycopg2, redis-py, Ollama's API) do what an app does with the URLs it was given."""
    output = run_on_installed(WORK_PROBE, timeout=120)
    work = json.loads(output)
    assert work["DATABASE_URL"]["ok"] and work["DATABASE_URL"]["user"] == "platform", work
    assert work["REDIS_URL"]["ok"] and work["REDIS_URL"]["user"] == "platform", work
    assert work["OLLAMA_BASE_URL"]["ok"], work


# Prometheus and Alertmanager, asked on the machine by a plain Python program. Targets are
# read until none is down, for at most 90 s: a scrape that timed out during the check just
# before, or one not made yet, counts as down until the next.
MONITORING_PROBE = """
import json, time, urllib.request
def get(url):
    return json.load(urllib.request.urlopen(url, timeout=10))
deadline = time.monotonic() + 90
while True:
    targets = get("http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
    down = [(t["scrapePool"], t["scrapeUrl"], t["health"], t["lastError"]) for t in targets if t["health"] != "up"]
    if not down or time.monotonic() > deadline:
        break
    time.sleep(5)
name = "NewcomerProbe%d" % time.time_ns()
alert = json.dumps([{"labels": {"alertname": name, "severity": "warning"}}]).encode()
urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:9093/api/v2/alerts", data=alert,
                       headers={"Content-Type": "application/json"}), timeout=10)
held = [a["labels"]["alertname"] for a in get("http://127.0.0.1:9093/api/v2/alerts")]
print(json.dumps({"jobs": sorted({t["scrapePool"] for t in targets}), "down": down, "held": name in held,
                  "config": get("http://127.0.0.1:9093/api/v2/status")["config"]["original"]}))
"""
# The scrape jobs of a single machine in every group; the demo app serves no metrics.
SCRAPE_JOBS = ["alertmanager", "nginx", "node", "postgres", "prometheus", "redis"]


def test_monitoring_on_debian_13_scrapes_every_target_and_keeps_alerts_in_alertmanager():
    """Monitoring on the Debian 13 machine: each component's scrape job, every target up, and
    with the default receiver (none) an alert is held in Alertmanager and sent nowhere (no
    receiver has a webhook or mail configuration)."""
    output = run_on_installed(MONITORING_PROBE, timeout=180)
    found = json.loads(output)
    assert found["jobs"] == SCRAPE_JOBS and found["down"] == [], found
    assert found["held"], found
    assert "webhook_configs" not in found["config"] and "email_configs" not in found["config"], found["config"]
