"""Preflight's host checks, judged from a probe recorded on a real host
(tests/unit/events/preflight_probe.json, from playbooks/preflight.yml) and variations of it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from platformctl.preflight import judge_host, minimums_for

RECORDED = json.loads((Path(__file__).parent / "events" / "preflight_probe.json").read_text())
GIB = 1024**3


def probe(**changes) -> dict:
    data = copy.deepcopy(RECORDED)
    data.update(changes)
    return data


def checks(found: dict, host_vars: dict | None = None) -> dict[str, tuple[str, bool]]:
    return {p.check: (p.found, p.fatal) for p in judge_host("db-1", found, host_vars or {})}


def test_the_recorded_host_passes_with_only_the_gpu_notice():
    assert checks(probe()) == {"GPU": ("no NVIDIA GPU on the PCI bus", False)}


@pytest.mark.parametrize(("changes", "check", "found"), [
    ({"os": "CentOS 7", "os_version": "7.9"}, "operating system", "CentOS 7 (7.9)"),
    ({"python": "3.6.8"}, "python3", "3.6.8"),
    ({"uid": "1000"}, "privilege escalation", "uid 1000"),
    ({"cpus": 1}, "CPU", "1 cores"),
    ({"memory_mb": 2000}, "memory", "2000 MB"),
    ({"mounts": {"/": 5 * GIB}}, "free disk", "5.0 GB free for /var/lib"),
    ({"listening": ['LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("apache2",pid=7,fd=4))']},
     "port", "443/tcp held by apache2"),
    ({"downloads": {"http://mirror.example/debian": -1}}, "download source",
     "http://mirror.example/debian does not answer"),
])
def test_each_check_fails_with_what_was_found(changes, check, found):
    assert checks(probe(**changes))[check] == (found, True)


def test_a_port_held_by_our_own_service_is_fine():
    found = probe(listening=['LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=7,fd=4),("nginx",pid=8,fd=4))'])
    assert "port" not in checks(found)


def test_every_port_of_an_installed_host_in_every_group_is_ours():
    """ss -Hltnp as recorded on the e2e host after an install (its Redis line from the redis
    scenario's host): ss shows process names cut at 15 characters ("prometheus-aler")."""
    listening = (Path(__file__).parent / "events" / "listening_after_install.txt").read_text().splitlines()
    groups = ["edge", "app", "postgres", "redis", "ollama", "gpu", "monitoring"]
    assert "port" not in checks(probe(listening=listening, groups=groups))


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
