"""The nvidia_container_toolkit role, checked from outside the test hosts.

STAND-IN: NVIDIA's apt repository cannot be reached on the CI machine, and it has no GPU.
prepare.yml builds packages named like NVIDIA's (standin/build_repo.py) whose nvidia-ctk
and nvidia-container-runtime are stand-ins, served as a signed flat repository like
NVIDIA's; the role installs them through its repository path (forced on debian12).
debian13 takes the skip path of a host without a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import testinfra.utils.ansible_runner
import yaml
from apt_probe import apt_update_through, check_that_a_wrong_pinned_key_stops_the_run, converge, refused

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

VERSION = "1.17.8-1"
PACKAGES = ["nvidia-container-toolkit", "nvidia-container-toolkit-base",
            "libnvidia-container-tools", "libnvidia-container1"]
LOCAL_REPOSITORY = "/var/lib/nvidia-container-toolkit/repository"
KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
# The tests' converges run the role under test alone: the docker role is in place already.
ROLE_ONLY = ("--tags", "nvidia_container_toolkit")


def forced(host) -> bool:
    return host.backend.host.endswith("debian12")


def daemon_json(host) -> dict:
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


@pytest.fixture
def installed_host(host):
    if not forced(host):
        pytest.skip("skip-path host")
    return host


@pytest.fixture
def skipped_host(host):
    if forced(host):
        pytest.skip("host with the toolkit installed")
    return host


def test_packages_of_the_pinned_version_from_the_repository(installed_host):
    host = installed_host
    for name in PACKAGES:
        package = host.package(name)
        assert package.is_installed, name
        assert package.version == VERSION
    policy = host.check_output("apt-cache policy nvidia-container-toolkit")
    assert f"file:{LOCAL_REPOSITORY}" in policy


def test_repository_source_is_signed(installed_host):
    source = installed_host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources")
    assert source.contains(f"^URIs: file:{LOCAL_REPOSITORY}$")
    assert source.contains("^Suites: /$")
    assert source.contains("^Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc$")


@pytest.mark.parametrize(("keyring", "trusted"), [
    ("/etc/apt/keyrings/nvidia-container-toolkit.asc", True),
    ("/usr/share/keyrings/debian-archive-keyring.gpg", False),
])
def test_apt_trusts_the_repository_only_through_its_key(installed_host, keyring, trusted):
    """The repository's signature is checked: with another key apt refuses it and reads no index."""
    update, indexes = apt_update_through(installed_host, uri=f"file:{LOCAL_REPOSITORY}", suite="/", component="",
                                         keyring=keyring)
    assert refused(update) != trusted, update.stderr
    assert (update.rc == 0) == trusted, update.stderr
    assert any(name.endswith("_Packages") for name in indexes) == trusted, indexes


def test_daemon_json_keeps_docker_settings_and_adds_the_runtime(installed_host):
    settings = daemon_json(installed_host)
    assert settings["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    # The docker role's own settings survive the merge.
    assert settings["log-driver"] == "json-file"
    assert settings["ip"] == "127.0.0.1"
    assert "default-runtime" not in settings


def test_docker_engine_loaded_the_runtime(installed_host):
    runtimes = json.loads(installed_host.check_output("docker info --format '{{json .Runtimes}}'"))
    assert "nvidia" in runtimes
    assert "runc" in runtimes


def test_udev_rule_makes_the_device_links(installed_host):
    rule = installed_host.file("/etc/udev/rules.d/71-nvidia-dev-char.rules")
    assert rule.contains("create-dev-char-symlinks --create-all")


def test_skip_path_installs_nothing(skipped_host):
    host = skipped_host
    for name in PACKAGES:
        assert not host.package(name).is_installed
    assert not host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").exists
    assert not host.file("/etc/cdi/nvidia.yaml").exists
    assert "runtimes" not in daemon_json(host)
    assert "nvidia" not in host.check_output("docker info --format '{{json .Runtimes}}'")


def test_a_signing_key_that_is_not_the_pinned_one_stops_the_run(installed_host):
    """The repository's key is trusted only with its pinned fingerprint: another key is
    removed and the run stops, saying what it found."""
    check_that_a_wrong_pinned_key_stops_the_run(
        installed_host, "nvidia_container_toolkit_repo_key_fingerprint", KEYRING, *ROLE_ONLY)


CDI_SPEC = "/etc/cdi/nvidia.yaml"
STANDIN_GPUS = "/etc/nvidia-ctk-standin.gpus"  # the GPUs the stand-in nvidia-ctk finds (default: 0)


def cdi_devices(host) -> list[str]:
    return [device["name"] for device in yaml.safe_load(host.file(CDI_SPEC).content_string)["devices"]]


def task_changed(run: subprocess.CompletedProcess, task: str) -> bool:
    """Whether the converge's output reports `task` changed."""
    section = run.stdout.split(f"TASK [nvidia_container_toolkit : {task}]", 1)[1].split("TASK [", 1)[0]
    return "changed:" in section


def generated(host) -> str:
    return host.run_expect([0], "nvidia-ctk cdi generate").stdout


def test_the_cdi_specification_follows_the_gpus_nvidia_ctk_finds(installed_host):
    """The role installs what `nvidia-ctk cdi generate` makes of the host's GPUs at each run:
    a GPU more changes the specification, and a hand edit is put back."""
    host = installed_host
    install_task = "Install the CDI specification when it differs"
    assert host.file(CDI_SPEC).content_string == generated(host)
    assert cdi_devices(host) == ["0", "all"]
    assert (host.file(CDI_SPEC).user, host.file(CDI_SPEC).mode) == ("root", 0o644)
    try:
        host.run_expect([0], f"echo '0 1' > {STANDIN_GPUS}")
        grown = converge(host, *ROLE_ONLY)
        assert grown.returncode == 0, grown.stdout[-3000:]
        assert task_changed(grown, install_task)
        assert cdi_devices(host) == ["0", "1", "all"]
    finally:
        host.run_expect([0], f"rm -f {STANDIN_GPUS} && echo '# edited by hand' >> {CDI_SPEC}")
        repaired = converge(host, *ROLE_ONLY)
    assert repaired.returncode == 0, repaired.stdout[-3000:]
    assert task_changed(repaired, install_task)
    assert host.file(CDI_SPEC).content_string == generated(host)
    assert cdi_devices(host) == ["0", "all"]
