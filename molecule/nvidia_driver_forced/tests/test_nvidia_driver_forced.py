"""The nvidia_driver role forced (nvidia_driver_force) on Debian 12 without a GPU: Debian's
real driver packages from the mirror, the DKMS module really built, for the Debian
kernel installed on the host (prepare.yml installs linux-image-amd64, as a server has),
not for the running kernel, which in a container is the CI machine's. Nothing may load
the module or reboot the host."""

from __future__ import annotations

import os
import re

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

DKMS_MODULE = "nvidia-current"  # the name Debian's nvidia-kernel-dkms registers
HELD = ["nvidia-driver", "nvidia-kernel-dkms", "nvidia-persistenced", "nvidia-smi", "libcuda1"]
HOLD_PATTERN = re.compile(r"^(lib)?nvidia-|^libcuda|^firmware-nvidia|^xserver-xorg-video-nvidia")  # the role's


@pytest.fixture
def kernel(host) -> str:
    """The Debian kernel installed on the host: the one the module must be built for."""
    kernels = host.check_output("ls /lib/modules/*/modules.order | cut -d/ -f4").split()
    assert len(kernels) == 1, kernels
    return kernels[0]


def installed_packages(host) -> list[str]:
    listing = host.check_output("dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'")
    # Status "ii", or "hi" once held: the second letter says installed.
    return [line.split()[-1] for line in listing.splitlines() if line[1:2] == "i"]


def test_the_host_has_no_gpu_and_runs_another_kernel(host, kernel):
    """The premises: no NVIDIA device, and the running kernel is not the installed one."""
    assert "0x10de" not in host.run("cat /sys/bus/pci/devices/*/vendor").stdout.split()
    assert host.check_output("uname -r") != kernel


def test_driver_packages_installed_and_held(host, kernel):
    for name in [*HELD, "firmware-misc-nonfree", "dkms", f"linux-headers-{kernel}"]:
        assert host.package(name).is_installed, name
    held = set(host.check_output("apt-mark showhold").split())
    assert set(HELD) <= held
    assert held == {name for name in installed_packages(host) if HOLD_PATTERN.match(name)}
    assert host.file("/etc/apt/sources.list.d/nvidia-driver-nonfree.sources").contains(
        "^Components: contrib non-free non-free-firmware$")


def test_module_built_for_the_installed_kernel(host, kernel):
    status = host.check_output(f"dkms status -m {DKMS_MODULE} -k {kernel}")
    assert re.search(rf", {re.escape(kernel)}, x86_64: installed$", status), status
    # The module file exists for that kernel and is the packaged driver's version.
    module_version = host.check_output(f"modinfo -k {kernel} -F version {DKMS_MODULE}")
    assert host.package("nvidia-kernel-dkms").version.startswith(module_version + "-")
    assert host.check_output(f"modinfo -k {kernel} -F vermagic {DKMS_MODULE}").startswith(kernel + " ")
    # Not built for the running kernel, whose headers no Debian package has.
    assert "installed" not in host.check_output(f"dkms status -m {DKMS_MODULE} -k $(uname -r)")


def test_nouveau_blacklisted_in_the_system_and_the_initramfs(host, kernel):
    blacklist = "etc/modprobe.d/nvidia-driver-blacklist-nouveau.conf"
    assert host.file(f"/{blacklist}").contains("^blacklist nouveau$")
    assert "blacklist nouveau" in host.check_output("modprobe --showconfig")
    # The role's handler rebuilt the initramfs after writing the file (the packages'
    # own rebuild ran before it).
    assert blacklist in host.check_output(f"lsinitramfs /boot/initrd.img-{kernel}").splitlines()


def test_nothing_loaded_or_rebooted(host):
    pid1_start = host.check_output("cut -d' ' -f22 /proc/1/stat")
    assert pid1_start == host.file("/root/pid1-start-at-prepare").content_string.strip()
    assert not host.file("/run/systemd/shutdown/scheduled").exists
    assert not host.file("/sys/module/nvidia").exists
    assert not host.service("nvidia-persistenced").is_running
