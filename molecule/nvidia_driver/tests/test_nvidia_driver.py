"""The nvidia_driver role on hosts without an NVIDIA GPU (the CI machine has none): the
role must find no GPU on the PCI bus and leave the host exactly as it was."""

from __future__ import annotations

import os

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
