"""The firewall role, probed from outside: the test process connects to the test host's own
address, only on the ports under test and with short timeouts. The services behind those
ports are stand-ins started by prepare.yml (python3 -m http.server on 80, 443, 2345, 5432,
8080 and 9100), which also holds a connection from the controller to 2345 open."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from reach import address_of, blocked, blocked_from, connects, connects_from, outcome

TIMEOUT = 3
TAG = "platform-managed"
# Groups (molecule.yml): the database and monitoring host, and the app and Redis host.
DATA_HOST = "firewall-debian12"
APP_HOST = "firewall-debian13"
PLATFORM_SUBNET = "172.31.0.0/24"  # platform_network_subnet (roles/platform)
REPORT_TASK = "firewall : Report each firewall rule this role did not make"
UPDATE_TASK = "firewall : Bring the firewall rules up to date"


@pytest.fixture
def address(host) -> str:
    return address_of(host.backend.get_hostname())


def test_ssh_answers_from_outside(address):
    with socket.create_connection((address, 22), timeout=TIMEOUT) as connection:
        connection.settimeout(TIMEOUT)
        assert connection.recv(64).startswith(b"SSH-2.0-OpenSSH")


@pytest.mark.parametrize("port", [80, 443])
def test_edge_ports_answer_http_from_outside(address, port):
    # curl against the http.server stand-in for nginx (plain HTTP, also on 443).
    status = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(TIMEOUT),
         f"http://{address}:{port}/"],
        capture_output=True, text=True, timeout=30, check=False,
    ).stdout
    assert status == "200"


def test_port_in_use_is_kept_open_for_its_peer_only(host, address):
    # prepare.yml holds a connection from the controller (this machine) to 2345; the
    # settings do not name the port, so only the lockout protection lets new ones in.
    assert host.check_output("ss -Htn state established sport = :2345")
    assert connects(address, 2345)
    name = host.backend.get_hostname()
    other = next(n for n in ("firewall-debian12", "firewall-debian13") if n != name)
    assert blocked_from(other, address, 2345, control=(address, 80))


def test_private_port_is_blocked_although_it_listens(host, address):
    assert host.socket("tcp://0.0.0.0:8080").is_listening
    fetch = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/', timeout=3)"
    assert host.run(f'python3 -c "{fetch}"').rc == 0
    assert blocked(address, 8080, control=(address, 80))


def test_database_port_is_open_to_the_app_host_only(host):
    # 5432 listens on both hosts; only DATA_HOST is in group postgres.
    assert host.socket("tcp://0.0.0.0:5432").is_listening
    assert blocked(address_of(DATA_HOST), 5432, control=(address_of(DATA_HOST), 80))
    assert connects_from(APP_HOST, address_of(DATA_HOST), 5432)


def test_exporter_is_open_to_the_monitoring_host_only(host):
    # The node exporter's port (stand-in listener) on the host that is not the monitoring host.
    assert blocked(address_of(APP_HOST), 9100, control=(address_of(APP_HOST), 80))
    assert connects_from(DATA_HOST, address_of(APP_HOST), 9100)
    # The monitoring host scrapes itself over loopback: no rule opens its exporters.
    assert blocked_from(APP_HOST, address_of(DATA_HOST), 9100, control=(address_of(DATA_HOST), 80))


# The rules each host must hold besides SSH, by the groups it is in: (ufw target, comment).
def expected_rules(name: str) -> list[tuple[str, str]]:
    rules = [("80/tcp", "http"), ("443/tcp", "https")]
    if name == DATA_HOST:
        rules.append((f"from {address_of(APP_HOST)} to any port 5432 proto tcp", "postgresql from the app hosts"))
    else:
        monitoring = address_of(DATA_HOST)
        rules += [(f"from {monitoring} to any port 9100 proto tcp", "node exporter from the monitoring hosts"),
                  (f"from {monitoring} to any port 9113 proto tcp", "nginx exporter from the monitoring hosts"),
                  (f"from {monitoring} to any port 9121 proto tcp", "redis exporter from the monitoring hosts"),
                  (f"from {PLATFORM_SUBNET} to any port 6379 proto tcp", "redis from the app containers on this host")]
    return rules


def test_ufw_denies_by_default_and_tags_its_rules(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status
    added = [line for line in host.check_output("ufw show added").splitlines() if line.startswith("ufw ")]
    name = host.backend.get_hostname()
    assert f"ufw limit 22/tcp comment '{TAG}: ssh'" in added
    for target, comment in expected_rules(name):
        assert f"ufw allow {target} comment '{TAG}: {comment}'" in added
    # Nothing else but the port kept open for the connection in use.
    assert len(added) == 1 + len(expected_rules(name)) + 1, added
    assert any(" port 2345 proto tcp comment " in line and TAG in line for line in added)
    assert not any("8080" in line for line in added)
    # A host is never let in to itself (loopback is always open).
    assert not any(f"from {address_of(name)} " in line for line in added)


def test_sshd_runs_hardened(host):
    assert host.service("ssh").is_running
    settings = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines())
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["permitrootlogin"] == "without-password"  # sshd -T's name for prohibit-password
    assert settings["x11forwarding"] == "no"
    # dev-sec's ssh_hardening where it cannot lock anyone out: an agent with several keys
    # still gets in (6 tries), no forwarding past the firewall.
    assert settings["maxauthtries"] == "6"
    assert settings["logingracetime"] == "30"
    assert settings["allowtcpforwarding"] == "no"
    assert settings["allowagentforwarding"] == "no"
    assert settings["permittunnel"] == "no"
    assert (settings["clientaliveinterval"], settings["clientalivecountmax"]) == ("300", "2")
    assert (settings["loglevel"], settings["compression"], settings["tcpkeepalive"]) == ("VERBOSE", "no", "no")
    assert host.file("/etc/ssh/sshd_config.d/60-platform.conf").contains("^PasswordAuthentication no$")


def run_playbook(host, playbook: Path, *options: str) -> list[dict]:
    """Runs a playbook on this test host alone; returns the results of its tasks on it."""
    name = host.backend.get_hostname()
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"),
         "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent), "--limit", name, *options, str(playbook)],
        capture_output=True, text=True, timeout=600, check=False,
        env=dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"),
    )
    assert run.returncode == 0, run.stdout[-3000:]
    return [dict(task["hosts"][name], name=task["task"]["name"])
            for task in json.loads(run.stdout)["plays"][0]["tasks"] if name in task["hosts"]]


def test_rule_added_by_hand_is_reported_as_unmanaged(host, tmp_path):
    playbook = tmp_path / "verify.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: true\n  tasks:\n"
        "    - ansible.builtin.include_role: {name: firewall, tasks_from: verify}\n"
    )
    host.check_output("ufw allow 9999/tcp")
    try:
        results = run_playbook(host, playbook)
    finally:
        host.check_output("ufw delete allow 9999/tcp")
    report = next(result for result in results if result["name"] == REPORT_TASK)
    assert [item["msg"].split(";")[0] for item in report["results"]] == [
        "[WARNING] ufw allow 9999/tcp: allows 9999/tcp from anywhere"]
    assert not report["changed"]


def test_check_reports_a_rule_added_by_hand_as_drift_without_purging(host):
    """`ufw allow 5432/tcp` by hand opens PostgreSQL to everyone: check names it as drift
    (firewall_purge_unmanaged is off here), and leaves it."""
    converge = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
    host.check_output("ufw allow 5432/tcp")
    try:
        checked = run_playbook(host, converge, "--check")
        assert "ufw allow 5432/tcp" in host.check_output("ufw show added")
    finally:
        host.check_output("ufw delete allow 5432/tcp")
    report = next(result for result in checked if result["name"] == REPORT_TASK)
    assert report["changed"]
    assert [item["msg"].split(";")[0] for item in report["results"]] == [
        "ufw allow 5432/tcp: allows 5432/tcp from anywhere"]
    update = next(result for result in checked if result["name"] == UPDATE_TASK)
    assert not update.get("changed")


def test_rule_drift_shows_in_check_mode_and_a_run_repairs_it(host):
    converge = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
    # A managed rule deleted by hand, and a tagged rule the settings no longer ask for.
    host.check_output("ufw delete allow 80/tcp")
    host.check_output(f"ufw allow 7777/tcp comment '{TAG}: retired'")
    before = host.check_output("ufw show added")

    checked = run_playbook(host, converge, "--check")
    update = next(result for result in checked if result["name"] == UPDATE_TASK)
    assert update["changed"]
    assert {item["item"] for item in update["results"]} == {
        f"allow 80/tcp comment '{TAG}: http'", f"delete allow 7777/tcp comment '{TAG}: retired'"}
    assert host.check_output("ufw show added") == before

    run_playbook(host, converge)
    added = host.check_output("ufw show added").splitlines()
    assert f"ufw allow 80/tcp comment '{TAG}: http'" in added
    assert not any("7777" in line for line in added)


KEPT = f"allow 2346/tcp comment '{TAG}: kept open: in use when the firewall was set up'"
KEPT_TASK = "firewall : Name the rules kept open for connections in use at an earlier run"


def test_ssh_is_allowed_on_the_port_sshd_listens_on_and_a_kept_rule_stays(host):
    """sshd moved to another port by hand: the next run opens that port (read from `sshd -T`),
    so the admin is not locked out. A rule an earlier run kept open for a session stays,
    named in the run's warnings, although no connection uses it now."""
    converge = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
    host.check_output("printf 'Port 22\\nPort 2222\\n' > /etc/ssh/sshd_config.d/10-ports.conf && systemctl reload ssh")
    host.check_output(f"ufw {KEPT}")
    try:
        results = run_playbook(host, converge)
        added = host.check_output("ufw show added").splitlines()
        assert f"ufw limit 2222/tcp comment '{TAG}: ssh'" in added
        assert f"ufw limit 22/tcp comment '{TAG}: ssh'" in added
        assert f"ufw {KEPT}" in added
        kept = next(result for result in results if result["name"] == KEPT_TASK)
        assert [item["item"] for item in kept["results"]] == [KEPT]
        assert kept["results"][0]["msg"].startswith(f"[WARNING] ufw {KEPT}: kept open since a connection used")
    finally:
        host.check_output("rm -f /etc/ssh/sshd_config.d/10-ports.conf && systemctl reload ssh")
        host.check_output(f"ufw delete {KEPT}")
        run_playbook(host, converge)
    assert not any("2222" in line for line in host.check_output("ufw show added").splitlines())


def test_ssh_is_rate_limited(address):
    """ufw limit: the first connections from one address get through; past six within 30 s,
    new ones are refused."""
    outcomes = [outcome(address, 22) for _ in range(10)]
    assert outcomes[0] == "open", outcomes
    assert "refused" in outcomes[6:], outcomes
