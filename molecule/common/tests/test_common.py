"""The common role, checked on the converged test host with the host's own tools."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# The values molecule.yml gives the role (not its defaults).
TIMEZONE = "Europe/Berlin"
SYSCTL_FILE = "/etc/sysctl.d/60-platform.conf"
JOURNALD_DROPIN = "/etc/systemd/journald.conf.d/60-platform.conf"

# Reads the origins the way unattended-upgrade itself does: its own code, apt's config.
ALLOWED_ORIGINS = """
import importlib.machinery, importlib.util, apt_pkg
loader = importlib.machinery.SourceFileLoader("uu", "/usr/bin/unattended-upgrade")
uu = importlib.util.module_from_spec(importlib.util.spec_from_loader("uu", loader))
loader.exec_module(uu)
apt_pkg.init_config()
print("\\n".join(uu.get_allowed_origins()))
"""


@pytest.mark.parametrize("package", [
    "procps", "chrony", "unattended-upgrades", "ca-certificates", "curl", "gnupg", "python3-apt",
    "kmod", "libpam-tmpdir", "libpam-pwquality", "debsums", "sysstat",
])
def test_base_package_is_installed(host, package):
    assert host.package(package).is_installed


def test_new_accounts_get_password_ageing_and_a_private_home(host):
    """useradd reads /etc/login.defs: a user made now gets the role's password ageing, and a
    home folder that UMASK 027 keeps from other users (Debian's own 022 left it readable)."""
    host.run("userdel -r platform-test-user")
    assert host.run("useradd -m -s /bin/bash platform-test-user").rc == 0
    try:
        ageing = host.check_output("chage -l platform-test-user")
        assert "Maximum number of days between password change\t\t: 365" in ageing, ageing
        assert "Minimum number of days between password change\t\t: 1" in ageing, ageing
        # No access for other users (Debian 13's HOME_MODE 0700 is stricter still).
        assert host.file("/home/platform-test-user").mode & 0o007 == 0
    finally:
        host.run("userdel -r platform-test-user")


@pytest.mark.parametrize("module", ["dccp", "sctp", "firewire-core", "cramfs"])
def test_unused_kernel_modules_never_load(host, module):
    """modprobe's own reading of its configuration: loading the module runs /bin/true instead."""
    assert f"install {module.replace('-', '_')} /bin/true" in host.check_output("modprobe --showconfig")


def test_usb_storage_stays_loadable_for_offline_bundles(host):
    """In modprobe's merged reading (names with underscores), nothing blocks usb_storage,
    while the modules the role does block show there (the positive control)."""
    config = host.check_output("modprobe --showconfig").splitlines()
    assert "install cramfs /bin/true" in config
    assert not [line for line in config if line in ("install usb_storage /bin/true", "blacklist usb_storage")]


def test_passwords_are_checked_for_strength_and_sessions_get_their_own_temporary_folder(host):
    """libpam-pwquality and libpam-tmpdir are in the PAM stack, not only installed."""
    # Read here, not with grep: its basic regular expressions have no `\s+`.
    password = host.file("/etc/pam.d/common-password").content_string
    assert re.search(r"^password\s+requisite\s+pam_pwquality\.so\b", password, re.MULTILINE), password
    session = host.file("/etc/pam.d/common-session").content_string
    assert re.search(r"^session\s+\S+\s+pam_tmpdir\.so\b", session, re.MULTILINE), session
    host.run("userdel -r platform-test-user")
    assert host.run("useradd -m -s /bin/bash platform-test-user").rc == 0
    try:
        uid = host.check_output("id -u platform-test-user")
        # pam_tmpdir's folder for the user, made private to them.
        assert host.check_output("su - platform-test-user -c 'echo $TMPDIR'") == f"/tmp/user/{uid}"  # noqa: S108
    finally:
        host.run("userdel -r platform-test-user")


def test_login_sessions_dump_no_core(host):
    """pam_limits gives a login session the hard limit of 0."""
    assert host.check_output("su - root -c 'ulimit -H -c'") == "0"


def test_logins_show_the_banner(host):
    for path in ("/etc/issue", "/etc/issue.net"):
        assert host.file(path).content_string.startswith("Authorized access only."), path


def test_sysstat_collects(host):
    assert 'ENABLED="true"' in host.file("/etc/default/sysstat").content_string
    assert host.service("sysstat").is_enabled


def test_time_zone_is_set(host):
    assert host.check_output("timedatectl show --property=Timezone --value") == TIMEZONE
    assert host.check_output("env -u TZ date +%Z") in {"CET", "CEST"}
    legacy = host.file("/etc/timezone")
    if legacy.exists:
        assert legacy.content_string.strip() == TIMEZONE


def test_kernel_settings_file_holds_defaults_and_extras(host):
    settings = host.file(SYSCTL_FILE)
    assert settings.mode == 0o644
    lines = settings.content_string.splitlines()
    assert lines[1] == "# Ansible managed"
    for line in ("net.ipv4.tcp_syncookies = 1", "kernel.kptr_restrict = 2", "fs.protected_regular = 2",
                 "net.ipv4.tcp_fin_timeout = 30", "net.ipv4.ip_local_port_range = 20000 60999"):
        assert line in lines


@pytest.mark.parametrize(("key", "value"), [
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv4.conf.all.accept_redirects", "0"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv6.conf.all.accept_redirects", "0"),
    # From common_sysctl_extra, which the image's defaults do not have.
    ("net.ipv4.tcp_fin_timeout", "30"),
    ("net.ipv4.ip_local_port_range", "20000\t60999"),
])
def test_network_kernel_setting_is_in_effect(host, key, value):
    assert host.check_output(f"sysctl -n {key}") == value


def test_journald_uses_the_limits(host):
    dropin = host.file(JOURNALD_DROPIN)
    assert "SystemMaxUse=300M" in dropin.content_string.splitlines()
    assert "MaxRetentionSec=2weeks" in dropin.content_string.splitlines()
    assert "SystemMaxUse=300M" in host.check_output("systemd-analyze cat-config systemd/journald.conf")
    journald = host.service("systemd-journald")
    assert journald.is_running
    # The handler restarted journald after the drop-in was written, so it runs with it.
    started = host.check_output("systemctl show systemd-journald --property=ExecMainStartTimestamp --timestamp=unix")
    assert int(started.split("@")[1]) >= dropin.mtime.timestamp() - 1


def test_unattended_upgrades_take_security_updates_only(host):
    assert host.check_output("apt-config shell ON APT::Periodic::Unattended-Upgrade") == "ON='1'"
    origins = host.check_output(f"python3 -c '{ALLOWED_ORIGINS}'").splitlines()
    codename = host.system_info.codename
    assert origins
    for origin in origins:
        assert "label=Debian-Security" in origin
        assert f"codename={codename}" in origin
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.service(timer).is_enabled


def test_chrony_uses_the_configured_servers_but_is_not_started_in_a_container(host):
    sources = host.file("/etc/chrony/sources.d/platform.sources").content_string.splitlines()
    assert "server ntp1.example.internal iburst" in sources
    assert "server ntp2.example.internal iburst" in sources
    # chrony's unit needs CAP_SYS_TIME, which a container lacks: the role leaves it stopped.
    assert not host.service("chrony").is_running


def test_argument_spec_rejects_a_wrong_type(host, tmp_path):
    playbook = tmp_path / "wrong_type.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  roles: [common]\n")
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
         "--limit", host.backend.get_hostname(), "--check", "-e", "common_sysctl=notadict", str(playbook)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode != 0
    assert "Validating arguments against arg spec" in run.stdout
    assert "common_sysctl" in run.stdout
    assert "unable to convert to dict" in run.stdout


def test_a_package_left_half_unpacked_is_reinstalled(host, tmp_path):
    """The dpkg state a run killed while apt unpacked a package leaves (seen in e2e: dpkg cannot
    configure it, and apt refuses to go on): made here by hand in dpkg's status file, for curl."""
    host.run_expect([0], "sed -i '/^Package: curl$/,/^$/ s/^Status: install ok installed$/"
                         "Status: install reinstreq unpacked/' /var/lib/dpkg/status")
    assert "curl" in host.check_output("dpkg --audit")

    playbook = tmp_path / "common.yml"
    playbook.write_text("- hosts: all\n  roles: [common]\n")
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
         "--limit", host.backend.get_hostname(), str(playbook)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert host.check_output("dpkg --audit") == ""
    assert host.check_output("dpkg-query -W -f '${Status}' curl") == "install ok installed"
