"""The nvidia_driver role on hosts without an NVIDIA GPU (the CI machine has none): the
role must find no GPU on the PCI bus and leave the host exactly as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")


def test_the_host_has_no_nvidia_gpu(host):
    """The premise of the skip path: no PCI device of NVIDIA's vendor id on this host."""
    vendors = host.run("cat /sys/bus/pci/devices/*/vendor").stdout.split()
    assert "0x10de" not in vendors


def test_nothing_was_installed(host):
    assert not host.package("nvidia-driver").is_installed
    assert not host.package("dkms").is_installed
    assert host.run("dpkg-query -W 'nvidia-*' 'libnvidia-*'").rc != 0


def test_nothing_was_configured(host):
    assert not host.file("/etc/apt/sources.list.d/nvidia-driver-nonfree.sources").exists
    assert not host.file("/etc/modprobe.d/nvidia-driver-blacklist-nouveau.conf").exists
    assert host.check_output("dpkg --get-selections | awk '$2 == \"hold\"'") == ""


def test_the_role_says_why_it_installs_nothing(host):
    """The skip is the role's decision, said in the run: it looked at the PCI bus and found
    no NVIDIA device, and it names the setting that installs the driver anyway."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    playbook = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                          "--limit", host.backend.host, str(playbook)],
                         capture_output=True, text=True, timeout=600, check=False)
    printed = " ".join(run.stdout.split())
    assert run.returncode == 0, printed[-2000:]
    assert (f"No NVIDIA GPU on the PCI bus of {host.backend.host} (vendor 0x10de): the NVIDIA driver is not "
            "installed. Set nvidia_driver_force=true to install it anyway.") in printed, printed[-2000:]
    assert "changed=0" in printed
