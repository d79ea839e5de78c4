"""The docker role: engine, daemon.json, platform network, and published ports that stay
closed to the outside unless allowed (the DOCKER-USER block in ufw's after.rules)."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from reach import address_of, connects

TIMEOUT = 3
SCENARIO = Path(__file__).resolve().parents[1]


def outside_address(host) -> str:
    """The test host's own address, as the test process (outside the host) reaches it."""
    return address_of(host.backend.host)


def test_engine_runs(host):
    assert host.service("docker").is_running
    assert host.service("docker").is_enabled
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is True


def test_daemon_json_as_rendered(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-driver"] == "json-file"
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert daemon["live-restore"] is True
    assert daemon["ip"] == "127.0.0.1"
    assert daemon["default-address-pools"] == [{"base": "172.30.0.0/16", "size": 24}]
    assert daemon["no-new-privileges"] is True
    assert daemon["icc"] is False


def test_containers_cannot_gain_privileges(host):
    """The engine's no-new-privileges default reaches a container started without asking."""
    status = host.check_output("docker exec probe-loopback cat /proc/self/status")
    assert "NoNewPrivs:\t1" in status


def test_default_bridge_keeps_containers_apart(host):
    bridge = json.loads(host.check_output("docker network inspect bridge"))[0]
    assert bridge["Options"]["com.docker.network.bridge.enable_icc"] == "false"


def test_platform_network(host):
    network = json.loads(host.check_output("docker network inspect platform"))[0]
    assert network["IPAM"]["Config"][0]["Subnet"] == "172.31.0.0/24"
    assert network["IPAM"]["Config"][0]["Gateway"] == "172.31.0.1"


def test_docker_user_block_loaded_by_ufw(host):
    assert "Status: active" in host.check_output("ufw status")
    rules = host.check_output("iptables -S DOCKER-USER")
    assert "-A DOCKER-USER -o docker0 -j DROP" in rules
    assert "--dport 8001 -j RETURN" in rules


@pytest.mark.parametrize("port", [18000, 18001, 18002])
def test_published_port_answers_on_loopback(host, port):
    out = host.check_output(f"curl -fsS --max-time {TIMEOUT} http://127.0.0.1:{port}/health")
    assert json.loads(out)["status"] == "ok"


def test_default_publish_binds_loopback_only(host):
    bindings = json.loads(host.check_output(
        "docker inspect -f '{{json .NetworkSettings.Ports}}' probe-loopback"))["8000/tcp"]
    assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}


def test_loopback_published_port_closed_from_outside(host):
    assert not connects(outside_address(host), 18000)


def test_public_published_port_dropped_from_outside(host):
    """Published on every address and allowed by nothing in UFW: DOCKER-USER drops it."""
    assert not connects(outside_address(host), 18002)


def test_allowed_port_answers_from_outside(host):
    """The same kind of container with its port in docker_ufw_allowed_ports does answer,
    so the probe above fails for the firewall's reason, not the network's."""
    url = f"http://{outside_address(host)}:18001/health"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert json.loads(response.read())["status"] == "ok"


def test_docker_ce_source_renders(host, tmp_path):
    """Docker's repository is not reachable here: the docker-ce path runs in check mode
    with a stand-in signing key, and the test reads the files it would write."""
    key = tmp_path / "docker.asc"
    key.write_text("stand-in for Docker's signing key\n")
    root = SCENARIO.parents[1]
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(root / "roles"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    result = subprocess.run(
        ["ansible-playbook", "-i", f"{host.backend.host},", "-c", "community.docker.docker", "--check", "--diff",
         "-e", f"render_key_file={key}", str(SCENARIO / "render_docker_ce.yml")],
        env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    tasks = {task["task"]["name"]: next(iter(task["hosts"].values()))
             for task in json.loads(result.stdout)["plays"][0]["tasks"] if task["hosts"]}
    source = tasks["docker : Add Docker's apt source"]["diff"][0]["after"]
    release = host.system_info.codename
    for line in ("Types: deb", "URIs: https://download.docker.com/linux/debian", f"Suites: {release}",
                 "Components: stable", "Architectures: amd64", "Signed-By: /etc/apt/keyrings/docker.asc"):
        assert line in source.splitlines()
    assert tasks["docker : Copy Docker's signing key from the controller"]["diff"][0]["after"] == key.read_text()
    assert not host.file("/etc/apt/sources.list.d/docker.sources").exists
