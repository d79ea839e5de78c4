"""What the interrupted scenario's converge left (e2e's converge with e2e_interruptions):
check on the fresh host reported what an install would do, and the install after an install
stopped with Ctrl-C and one killed while dpkg ran finished what they left. converge.yml
itself asserts how each interruption ended (exit 130 and no process left; killed during the
package task, and a run beside the leftover refused)."""

from __future__ import annotations

import json
import os
from pathlib import Path

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def summary(name: str) -> dict:
    return json.loads((EPHEMERAL / name).read_text())


def test_check_on_the_fresh_host_reported_what_install_would_do():
    document = summary("check-fresh.json")
    assert document["exit_code"] == 2
    assert document["failures"] == []
    drifted_roles = {item["role"] for item in document["drift"]}
    assert {"common", "docker", "postgresql", "redis", "ollama", "nginx"} <= drifted_roles, drifted_roles


def test_the_install_after_the_interruptions_passed_and_verified_every_probe():
    document = summary("install.json")
    assert document["exit_code"] == 0
    assert document["failures"] == []
    assert document["probes"] and all(probe["result"] == "pass" for probe in document["probes"]), document["probes"]


def test_no_package_is_left_half_installed(host):
    """The install killed while dpkg ran left packages unpacked but not configured; the
    install after it finished them."""
    assert host.run_expect([0], "dpkg --audit").stdout.strip() == ""
    half = host.check_output("dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'")
    assert [line for line in half.splitlines() if not line.startswith("ii ")] == []
