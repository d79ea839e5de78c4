"""Preflight's host checks, judged from a probe recorded on a real host
(tests/unit/events/preflight_probe.json, from playbooks/preflight.yml) and variations of it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from platformctl import manifests
from platformctl.hostchecks import Context, judge_host

RECORDED = json.loads((Path(__file__).parent / "events" / "preflight_probe.json").read_text())
GIB = 1024**3


def probe(**changes) -> dict:
    data = copy.deepcopy(RECORDED)
    data.update(changes)
    return data


EVERY_GROUP = {group: ["db-1"] for group in ("all", "edge", "app", "postgres", "redis", "ollama", "gpu", "monitoring")}


def checks(found: dict, host_vars: dict | None = None, groups: dict | None = None) -> dict[str, tuple[str, bool]]:
    context = Context(host_vars or {}, manifests.load_all(), groups or EVERY_GROUP)
    return {p.check: (p.found, p.fatal) for p in judge_host("db-1", found, context)}


def minimums_for(groups: list[str], overrides: dict | None) -> dict[str, int]:
    return manifests.minimums_of(manifests.load_all(), groups, overrides)


def test_the_recorded_host_passes_with_only_the_gpu_notice():
    assert checks(probe()) == {"GPU": ("no NVIDIA GPU on the PCI bus", False)}


@pytest.mark.parametrize(("changes", "check", "found"), [
    ({"os": "CentOS 7", "os_version": "7.9"}, "operating system", "CentOS 7 (7.9)"),
    ({"python": "3.6.8"}, "python3", "3.6.8"),
    ({"uid": "1000"}, "privilege escalation", "uid 1000"),
    ({"cpus": 1}, "CPU", "1 cores"),
    ({"memory_mb": 2000}, "memory", "2000 MB"),
    ({"mounts": {"/": 5 * GIB}}, "free disk", "5.0 GB free for /var/lib"),
    ({"listening": ["443 apache2.service apache2"]}, "port", "443/tcp held by apache2 (apache2.service)"),
    ({"listening": ["11434 - python3"]}, "port", "11434/tcp held by python3"),
    ({"downloads": [{"url": "http://mirror.example/debian/dists/bookworm/InRelease", "status": -1,
                     "what": "package repository"}]}, "download source",
     "package repository: http://mirror.example/debian/dists/bookworm/InRelease does not answer"),
    ({"downloads": [{"url": "http://mirror.example/debian/dists/bookworm/InRelease", "status": 404,
                     "what": "package repository"}]}, "download source",
     "package repository: http://mirror.example/debian/dists/bookworm/InRelease answers HTTP 404"),
])
def test_each_check_fails_with_what_was_found(changes, check, found):
    assert checks(probe(**changes))[check] == (found, True)


def test_an_untested_release_is_a_warning_that_says_so():
    found, fatal = checks(probe(os="Ubuntu 24", os_version="24.04"))["operating system"]
    assert (found, fatal) == ("Ubuntu 24 (24.04)", False)


# An installed host's addresses: loopback, its LAN, Docker's bridge and the platform network's.
INSTALLED_ADDRESSES = [{"address": "127.0.0.1", "prefix": "8"}, {"address": "10.20.0.5", "prefix": "16"},
                       {"address": "172.17.0.1", "prefix": "16"}, {"address": "172.31.0.1", "prefix": "24"}]


def test_a_host_address_in_the_platform_network_stops_the_install():
    found = probe(addresses=[*INSTALLED_ADDRESSES[:1], {"address": "172.31.0.2", "prefix": "16"}])
    assert checks(found)["platform network"] == (
        "172.31.0.2/16 on this host overlaps platform_network_subnet 172.31.0.0/24", True)


def test_the_platform_networks_own_bridge_is_not_an_overlap():
    assert "platform network" not in checks(probe(addresses=INSTALLED_ADDRESSES))


def test_a_moved_platform_network_is_checked_where_it_moved():
    moved = {"platform_network_subnet": "10.20.8.0/24", "platform_network_gateway": "10.20.8.1"}
    assert checks(probe(addresses=INSTALLED_ADDRESSES), moved)["platform network"] == (
        "10.20.0.5/16 on this host overlaps platform_network_subnet 10.20.8.0/24", True)


def test_a_port_held_by_our_own_unit_is_fine_whatever_its_process_is_called():
    """A stand-in or wrapper run by python3 on Ollama's port is Ollama's when its unit is."""
    assert "port" not in checks(probe(listening=["443 nginx.service nginx", "11434 ollama.service python3"]))


def test_a_port_systemd_listens_on_for_our_socket_unit_is_ours():
    """Ollama beyond loopback: systemd (PID 1) holds the socket of ollama-proxy.socket, and
    the proxy service holds it too once a connection came."""
    held = ["11434 ollama.service ollama", "11434 ollama-proxy.socket systemd",
            "11434 ollama-proxy.service systemd-socket-"]
    assert "port" not in checks(probe(listening=held))
    assert checks(probe(listening=["11434 - systemd"]))["port"] == ("11434/tcp held by systemd", True)


def test_a_port_moved_by_its_setting_is_checked_where_it_moved():
    found = probe(listening=["5433 apache2.service apache2"])
    assert "port" not in checks(found)
    assert checks(found, {"postgresql_port": 5433})["port"] == ("5433/tcp held by apache2 (apache2.service)", True)


def test_ports_of_roles_the_host_does_not_get_are_not_checked():
    # The PostgreSQL exporter's port: a monitoring port, on postgres hosts while monitoring runs.
    found = probe(listening=["9187 apache2.service apache2"], groups=["postgres"])
    assert "port" in checks(found, groups={**EVERY_GROUP, "monitoring": ["db-1"]})
    assert "port" not in checks(found, groups={"all": ["db-1"], "postgres": ["db-1"]})


def test_every_port_of_an_installed_host_in_every_group_is_ours():
    """The e2e host's listeners after an install (ss -Hltnp, its Redis line from the redis
    scenario's host), each with the unit its process runs in, as the probe prints them:
    ss cuts process names at 15 characters ("prometheus-aler"); the unit tells them apart."""
    listening = (Path(__file__).parent / "events" / "listening_after_install.txt").read_text().splitlines()
    groups = ["edge", "app", "postgres", "redis", "ollama", "gpu", "monitoring"]
    assert "port" not in checks(probe(listening=listening, groups=groups))


def test_an_http_error_from_a_download_source_names_the_setting_that_replaces_it():
    source = {"url": "https://github.com/ollama/ollama/releases/download/v0.12.6/ollama-linux-amd64.tgz",
              "status": 503, "what": "the Ollama release archive", "role": "ollama",
              "local_source": "ollama_archive_src"}

    def download_problems(status: int) -> list:
        found = probe(downloads=[{**source, "status": status}])
        return [p for p in judge_host("db-1", found, Context({}, [], EVERY_GROUP)) if p.check == "download source"]

    problem = download_problems(503)
    assert problem[0].found.endswith("answers HTTP 503")
    assert "ollama_archive_src (role ollama)" in problem[0].fix
    assert [p.found.split(" answers ")[1] for p in download_problems(404) + download_problems(410)] == [
        "HTTP 404", "HTTP 410"]
    # A redirect, a HEAD the server does not take, and a 403: the HEAD carries no credentials,
    # and a mirror behind a login (apt's auth.conf.d) refuses it while apt's own GET works.
    assert not any(download_problems(status) for status in (302, 401, 403, 405))


def test_disk_is_measured_on_the_mount_that_holds_the_data():
    found = probe(mounts={"/": 100 * GIB, "/var/lib": 3 * GIB})
    assert checks(found)["free disk"] == ("3.0 GB free for /var/lib", True)


def test_unsynchronised_clock_is_a_warning_outside_containers_only():
    assert "time" not in checks(probe(clock_synchronised="no", virtualization="docker/guest"))
    assert checks(probe(clock_synchronised="no", virtualization="kvm/guest"))["time"] == (
        "clock not synchronised", False)


def test_missing_gpu_stops_the_run_only_when_required():
    assert checks(probe(), {"preflight_gpu_required": True})["GPU"] == ("no NVIDIA GPU on the PCI bus", True)
    assert "GPU" not in checks(probe(pci_vendors=["0x8086", "0x10de"]))
    assert "GPU" not in checks(probe(groups=["postgres"]))


def test_minimums_take_the_largest_of_the_host_groups_and_overrides():
    assert minimums_for(["postgres", "ollama"], None) == {"cpus": 2, "memory_mb": 7200, "disk_free_gb": 30}
    assert minimums_for(["edge"], {"edge": {"cpus": 4}}) == {"cpus": 4, "memory_mb": 1800, "disk_free_gb": 10}
    found = probe(groups=["postgres"], memory_mb=3000)
    assert checks(found)["memory"] == ("3000 MB", True)
    assert "memory" not in checks(found, {"preflight_minimums": {"postgres": {"memory_mb": 2048}}})


def test_turning_password_login_off_for_a_user_without_a_key_stops_the_install():
    found = probe(ssh_login={"user": "admin", "password": "yes", "keys": 0})
    assert checks(found)["SSH login"] == (
        "admin has no key in ~admin/.ssh/authorized_keys, and the install turns password login off", True)


@pytest.mark.parametrize(("login", "host_vars"), [
    ({"user": "admin", "password": "yes", "keys": 1}, {}),  # logs in with a key
    ({"user": "admin", "password": "no", "keys": 0}, {}),  # password login is off already
    ({"user": "admin", "password": "yes", "keys": 0}, {"firewall_sshd_password_authentication": True}),
    ({}, {}),  # no login user: root, or a container engine's connection
])
def test_password_login_off_is_fine_when_it_locks_no_one_out(login, host_vars):
    assert "SSH login" not in checks(probe(ssh_login=login), host_vars)
