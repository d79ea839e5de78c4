"""Systemd test containers made outside molecule (a benchmark's host, a host that replaces a
lost one), with the settings the scenarios' platforms give theirs: systemd without
--privileged (shared/CI-MACHINE.md)."""

from __future__ import annotations

import subprocess

IMAGE = "platform-test-debian12:latest"
CAPABILITIES = ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "IPC_LOCK", "SYS_NICE")


def start_systemd_container(name: str, *docker_options: str, image: str = IMAGE) -> None:
    """A fresh container `name` of the test image running systemd; any container of that name
    is removed first, with its anonymous volumes."""
    remove_container(name)
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", name,
                    *(f"--cap-add={cap}" for cap in CAPABILITIES), "--security-opt", "seccomp=unconfined",
                    "--security-opt", "apparmor=unconfined", "--cgroupns=host",
                    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",  # noqa: S108 (in the container)
                    *docker_options, image, "/lib/systemd/systemd"], check=True, stdout=subprocess.DEVNULL)


def remove_container(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", "-v", name], check=False, capture_output=True)
