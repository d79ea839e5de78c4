"""installer.py against real test hosts: after the first install (converge), a rerun
changes nothing, check finds no drift, hand-made drift is reported and then repaired,
and the summary JSON agrees with ansible's own recap."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "inventory"
RECAP = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.MULTILINE)


def installer(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PLATFORMCTL_SECRETS_DIR=str(EPHEMERAL / "secrets"))
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


def test_first_install_summary_agrees_with_ansible_recap():
    document = summary("install.json")
    assert document["exit_code"] == 0
    assert document["hosts"] == printed_recap(document)
    assert all(counts["changed"] > 0 for counts in document["hosts"].values())


def test_rerun_changes_nothing():
    proc = installer("--json", str(EPHEMERAL / "rerun.json"))
    assert proc.returncode == 0
    document = summary("rerun.json")
    assert document["hosts"] == printed_recap(document)
    assert {h: c["changed"] for h, c in document["hosts"].items()} == dict.fromkeys(document["hosts"], 0)


def test_check_on_a_clean_install_exits_0():
    proc = installer("check", "--json", str(EPHEMERAL / "check.json"))
    assert proc.returncode == 0
    assert summary("check.json")["drift"] == []


@pytest.fixture
def drifted_host(host):
    """Edit a managed file by hand on one test host."""
    host.run_expect([0], "sed -i 's/^net.ipv4.tcp_syncookies.*/net.ipv4.tcp_syncookies = 0/' "
                         "/etc/sysctl.d/60-platform.conf")
    return host.backend.get_hostname()


def test_drift_is_reported_then_repaired(host, drifted_host):
    proc = installer("check", "--json", str(EPHEMERAL / "drift.json"))
    assert proc.returncode == 2
    drift = summary("drift.json")["drift"]
    assert any(item["host"] == drifted_host and item["role"] == "common" for item in drift), drift
    assert any("tcp_syncookies" in item["diff"] for item in drift), drift

    assert installer().returncode == 0
    assert host.file("/etc/sysctl.d/60-platform.conf").contains("^net.ipv4.tcp_syncookies = 1")
    assert installer("check").returncode == 0
