"""The docker role: engine, daemon.json, platform network, and published ports that stay
closed to the outside unless allowed (the DOCKER-USER block in ufw's after.rules).

docker-debian12 installs Debian's docker.io; docker-debian13 takes the docker-ce path, from
a STAND-IN of Docker's apt repository: Docker's cannot be reached on the CI machine.
prepare.yml builds it (standin/build_repo.py: packages named and numbered like Docker's,
signed by a throwaway key, laid out like download.docker.com/linux/debian) and serves it
over HTTP on the host's loopback; the role installs from it through its real repository
path (key download, fingerprint pin, deb822 source, apt's signature check, pinned version).
Docker's engine cannot be fetched either: the stand-in docker-ce and docker-ce-cli are
Debian's docker.io and docker-cli under Docker's names and versions (Debian's packages
conflict with Docker's, so they cannot just depend on them), containerd.io and
docker-buildx-plugin bring in Debian's containerd and docker-buildx. The engine that runs
on both hosts is Debian's: what the docker-ce path is tested for is how the role gets and
pins the packages, and that its daemon settings apply there as well.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
from apt_probe import apt_update_through, check_that_a_wrong_pinned_key_stops_the_run, refused
from reach import address_of, blocked, blocked_from

TIMEOUT = 3

# The docker-ce host, and the stand-in's versions of docker-ce and docker-ce-cli that
# prepare.yml builds: molecule.yml pins the older one.
DOCKER_CE_HOST = "docker-debian13"
PINNED = "5:27.5.1-1~debian.13~trixie"
NEWER = "5:28.0.1-1~debian.13~trixie"
KEYRING = "/etc/apt/keyrings/docker.asc"
SOURCE = "/etc/apt/sources.list.d/docker.sources"


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
    """icc off: a container on the default bridge cannot open another's port there, which the
    host itself reaches; the source's own port, reached from inside it, is the control."""
    bridge = json.loads(host.check_output("docker network inspect bridge"))[0]
    assert bridge["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    source, target = (host.check_output("docker inspect -f '{{.NetworkSettings.IPAddress}}' %s", name)
                      for name in ("probe-loopback", "probe-public"))
    health = host.check_output(f"curl -fsS --max-time {TIMEOUT} http://{target}:8002/health")
    assert json.loads(health)["status"] == "ok"
    assert blocked_from(host.backend.host, target, 8002, control=(source, 8000), inner="probe-loopback")


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
    """Published on loopback only; the allowed port beside it answers in the same test, so a
    slow machine's timeout is not taken for a closed port."""
    address = outside_address(host)
    assert blocked(address, 18000, control=(address, 18001))


def test_public_published_port_dropped_from_outside(host):
    """Published on every address and allowed by nothing in UFW: DOCKER-USER drops it."""
    address = outside_address(host)
    assert blocked(address, 18002, control=(address, 18001))


def test_allowed_port_answers_from_outside(host):
    """The same kind of container with its port in docker_ufw_allowed_ports does answer,
    so the probe above fails for the firewall's reason, not the network's."""
    url = f"http://{outside_address(host)}:18001/health"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert json.loads(response.read())["status"] == "ok"


def standin() -> Path:
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def standin_url() -> str:
    """Where prepare.yml serves the stand-in, inside the docker-ce host."""
    port = (standin() / "docker-ce-standin.port").read_text().strip()
    return f"http://127.0.0.1:{port}/linux/debian"


@pytest.fixture
def docker_ce_host(host):
    if host.backend.host != DOCKER_CE_HOST:
        pytest.skip("docker.io host")
    return host


@pytest.fixture
def docker_io_host(host):
    if host.backend.host == DOCKER_CE_HOST:
        pytest.skip("docker-ce host")
    return host


def test_docker_ce_packages_of_the_pinned_version_from_the_repository(docker_ce_host):
    """docker_ce_version pins docker-ce and docker-ce-cli although the repository offers a
    newer version, and apt took them from the repository the role added."""
    host = docker_ce_host
    for name in ("docker-ce", "docker-ce-cli"):
        assert host.package(name).version == PINNED, name
    for name in ("containerd.io", "docker-buildx-plugin", "python3-docker"):
        assert host.package(name).is_installed, name
    policy = host.check_output("apt-cache policy docker-ce").splitlines()
    assert f"  Candidate: {NEWER}" in policy
    installed = policy.index(next(line for line in policy if line.startswith(f" *** {PINNED} ")))
    assert policy[installed + 1].split()[1:3] == [standin_url(), f"{host.system_info.codename}/stable"]


def test_docker_ce_source_and_key(docker_ce_host):
    host = docker_ce_host
    lines = host.file(SOURCE).content_string.splitlines()
    for line in ("Types: deb", f"URIs: {standin_url()}", f"Suites: {host.system_info.codename}",
                 "Components: stable", "Architectures: amd64", f"Signed-By: {KEYRING}"):
        assert line in lines
    key = host.file(KEYRING)
    assert (key.user, key.group, key.mode) == ("root", "root", 0o644)
    listing = host.check_output(f"gpg --batch --show-keys --with-colons {KEYRING}")
    fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    pinned = (standin() / "docker-ce-standin" / "linux" / "debian" / "gpgkey.fingerprint").read_text().strip()
    assert fingerprints == [pinned]


@pytest.mark.parametrize(("keyring", "trusted"), [
    (KEYRING, True),
    ("/usr/share/keyrings/debian-archive-keyring.gpg", False),
])
def test_apt_trusts_the_docker_ce_repository_only_through_its_key(docker_ce_host, keyring, trusted):
    """The repository's signature is checked: with another key (Debian's archive key) apt
    refuses its index."""
    update, indexes = apt_update_through(docker_ce_host, uri=standin_url(), suite=docker_ce_host.system_info.codename,
                                         component="stable", keyring=keyring)
    assert refused(update) != trusted, update.stderr
    assert (update.rc == 0) == trusted, update.stderr
    assert any(name.endswith("_stable_binary-amd64_Packages") for name in indexes) == trusted, indexes


def test_docker_io_host_has_no_docker_repository(docker_io_host):
    host = docker_io_host
    assert host.package("docker.io").is_installed
    assert not host.package("docker-ce").is_installed
    assert not host.file(SOURCE).exists
    assert not host.file(KEYRING).exists


# Last of the docker-ce tests: it removes the key, and puts it back with another converge.
def test_a_docker_key_that_is_not_the_pinned_one_stops_the_run(docker_ce_host):
    """Docker's key is trusted only with its pinned fingerprint: another key is removed and
    the run stops, naming the key it wanted."""
    check_that_a_wrong_pinned_key_stops_the_run(docker_ce_host, "docker_ce_key_fingerprint", KEYRING)
