"""The install from an offline bundle (converge.yml) on a host with no network at all, then
what an operator does next with bundles: a rerun, a check, a bundle that lacks something,
and a newer bundle that carries one more package. Every test takes the host so that they run
in this file's order (testinfra runs the host's tests first): the last one changes the
inventory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
from bundle_standins import copy_checkout
from installer_runs import changed_tasks, outcome

ROOT = Path(__file__).resolve().parents[3]
INVENTORY = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
OPERATOR_INVENTORY = EPHEMERAL / "platform-inventory"
FIRST_BUNDLE = EPHEMERAL / "platform-1.bundle"
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
assert testinfra_hosts, f"no host in {INVENTORY}: every test would be skipped"
# What a task that reached for the network leaves in the run's log (apt, curl, Python, Docker).
NETWORK_ERRORS = re.compile(r"Temporary failure in name resolution|Temporary failure resolving|"
                            r"Network is unreachable|Could not resolve|Failed to fetch|Name or service not known|"
                            r"dial tcp|Cannot initiate the connection")


def fingerprint(archive: Path) -> str:
    return json.loads(Path(f"{archive}.json").read_text())["fingerprint"]


def installer(*args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """installer.py COMMAND ... --inventory (the operator's) --yes --json: the process and its summary."""
    summary = EPHEMERAL / f"{args[0]}-{uuid.uuid4().hex[:8]}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "installer.py"), *args, "--inventory", str(OPERATOR_INVENTORY),
                           "--yes", "--json", str(summary)], cwd=ROOT, text=True, capture_output=True, check=False,
                          timeout=1800)
    sys.stdout.write(proc.stdout + proc.stderr)
    return proc, json.loads(summary.read_text()) if summary.is_file() else {}


def test_the_host_has_no_network(host):
    assert host.run("ip route show default").stdout.strip() == ""
    assert host.run("getent ahosts deb.debian.org").rc != 0
    reach = host.run("python3 -c \"import socket; socket.create_connection(('151.101.2.132', 80), timeout=5)\"")
    assert reach.rc != 0 and "Network is unreachable" in reach.stderr, reach.stderr


def test_the_install_from_the_bundle_passed_every_probe(host):
    summary = json.loads((EPHEMERAL / "install-1.json").read_text())
    assert summary["exit_code"] == 0
    failing = [(p["probe"], p["result"]) for p in summary["probes"] if p["result"] != "pass"]
    assert summary["probes"] and not failing, failing


def test_no_task_reached_for_the_network(host):
    """With no route anywhere, a fetch fails at once: none may have been tried, even by a task
    whose failure is tolerated."""
    tried = [f"{log.parent.name}: {match.group(0)}" for log in sorted((EPHEMERAL / "runs").glob("*/stdout"))
             for match in NETWORK_ERRORS.finditer(log.read_text())]
    assert not tried, tried


def test_the_app_runs_its_image_from_the_bundle_and_answers_through_nginx(host):
    assert "platform-demo-app:1" in host.check_output("docker image ls --format '{{.Repository}}:{{.Tag}}'")
    answer = host.run("curl -sk --resolve offline.test:443:127.0.0.1 -o /dev/null -w '%{http_code}' "
                      "https://offline.test/health")
    assert answer.stdout == "200", answer.stdout + answer.stderr


def test_the_gpu_hosts_container_toolkit_came_from_the_bundle(host):
    """NVIDIA's packages (STAND-IN repository) at the pinned version, from the bundle's
    repository: NVIDIA's source and key were never added to the host."""
    listed = host.check_output("dpkg-query -W -f '${Package}=${Version} ${db:Status-Status}\\n' "
                               "nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools "
                               "libnvidia-container1")
    assert sorted(listed.splitlines()) == sorted(f"{name}=1.17.8-1 installed" for name in (
        "nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
        "libnvidia-container1"))
    assert not host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").exists
    assert not host.file("/etc/apt/keyrings/nvidia-container-toolkit.asc").exists
    assert host.file("/usr/bin/nvidia-ctk").is_file
    # The GPU check's image (STAND-IN), loaded from the bundle: `docker run` cannot pull here.
    assert "platform-gpu-check:1" in host.check_output("docker image ls --format '{{.Repository}}:{{.Tag}}'")


def test_apt_has_the_hosts_own_sources_back_and_trusts_the_bundle_key_for_its_source_only(host):
    assert not host.file("/etc/apt/apt.conf.d/00platform-bundle").exists
    unchanged = host.run("sha256sum --check --quiet /root/apt-sources.sha256")
    assert unchanged.rc == 0, unchanged.stdout + unchanged.stderr
    assert not host.file("/etc/apt/trusted.gpg.d/platform-bundle.asc").exists
    source = host.file("/var/lib/platform/bundle/sources/platform-bundle.sources").content_string
    assert "Signed-By: /etc/apt/keyrings/platform-bundle.asc" in source and "trusted" not in source
    assert fingerprint(FIRST_BUNDLE) in host.check_output(
        "gpg --batch --show-keys --with-colons /etc/apt/keyrings/platform-bundle.asc")


def test_a_rerun_with_the_same_bundle_changes_nothing(host):
    proc, summary = installer("--bundle", str(FIRST_BUNDLE), "--fingerprint", fingerprint(FIRST_BUNDLE))
    assert proc.returncode == 0, outcome(proc, summary)
    assert summary["totals"]["changed"] == 0, changed_tasks(summary)


def test_check_with_the_bundle_finds_no_drift(host):
    proc, summary = installer("check", "--bundle", str(FIRST_BUNDLE), "--fingerprint", fingerprint(FIRST_BUNDLE))
    assert proc.returncode == 0, outcome(proc, summary) + f"; drift {summary.get('drift')}"


def test_a_bundle_that_lacks_what_the_inventory_wants_stops_before_any_host_is_touched(host):
    wanted = json.dumps({"ollama_models": ["standin-offline:1b", "qwen2:0.5b"]})
    proc, _ = installer("preflight", "-e", wanted, "--bundle", str(FIRST_BUNDLE), "--fingerprint",
                        fingerprint(FIRST_BUNDLE))
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"--bundle {FIRST_BUNDLE} lacks the model qwen2:0.5b" in proc.stderr


def test_a_bundle_under_another_fingerprint_is_refused(host):
    other = "0123456789ABCDEF0123456789ABCDEF01234567"
    proc, _ = installer("--bundle", str(FIRST_BUNDLE), "--fingerprint", other)
    assert proc.returncode == 4
    assert f"the bundle is signed by {fingerprint(FIRST_BUNDLE)}, not the pinned key {other}" in proc.stderr


def test_a_controller_without_a_package_index_builds_its_venv_from_the_bundle(host, tmp_path):
    """This checkout's files copied as a site receives them (no .venv/), then installer.py
    started there with the system's Python and a package index that cannot answer: it builds
    its virtual environment from the bundle's wheels and verifies the host."""
    copy = copy_checkout(tmp_path / "controller")
    python = Path(sys.base_prefix) / "bin" / "python3"
    env = dict(os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple")
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run([str(python), "installer.py", "verify", "--inventory", str(OPERATOR_INVENTORY),
                           "--bundle", str(FIRST_BUNDLE), "--fingerprint", fingerprint(FIRST_BUNDLE)],
                          cwd=copy, env=env, capture_output=True, text=True, check=False, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"from the wheels of {FIRST_BUNDLE}" in proc.stderr
    assert (copy / ".venv" / "bin" / "ansible-playbook").is_file()


def test_a_newer_bundle_applies_only_its_difference(host):
    """The inventory now wants one more package: a bundle built from it, then the install from
    that bundle changes the host's repository and installs that package, and nothing else."""
    settings = OPERATOR_INVENTORY / "group_vars" / "all" / "main.yml"
    settings.write_text(settings.read_text() + "common_packages_extra: [tree]\n")
    second = EPHEMERAL / "platform-2.bundle"
    built = subprocess.run([sys.executable, str(ROOT / "installer.py"), "bundle", "--inventory",
                            str(OPERATOR_INVENTORY), "--release", "12", "--build-image",
                            "12=platform-test-debian12:latest", "--output", str(second), "--json", f"{second}.json"],
                           cwd=ROOT, capture_output=True, text=True, check=False, timeout=1200)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    assert host.run("dpkg-query -W tree").rc != 0
    proc, summary = installer("--bundle", str(second), "--fingerprint", fingerprint(second))
    assert proc.returncode == 0, outcome(proc, summary)
    # The same key signs both bundles (the build machine's), so the host's trust is unchanged;
    # the backup role's copy of the inventory follows the inventory's change.
    assert {task.rpartition(" [")[0] for task in changed_tasks(summary)} == {
        "offline_bundle : Copy this release's repository", "offline_bundle : Unpack the repository",
        "common : Install the base packages", "backup : Copy the inventory"}
    assert fingerprint(second) == fingerprint(FIRST_BUNDLE)
    assert host.run("dpkg-query -W tree").rc == 0
    again, summary = installer("--bundle", str(second), "--fingerprint", fingerprint(second))
    assert again.returncode == 0 and summary["totals"]["changed"] == 0, changed_tasks(summary)


@pytest.fixture(autouse=True, scope="module")
def _first_install_done():
    if not (EPHEMERAL / "install-1.json").is_file():
        pytest.fail("converge wrote no install-1.json: the install from the bundle did not run")
