#!/usr/bin/env python3
"""Benchmark (not a test): Lynis's hardening index of the installed e2e host against a bare
host of the same image.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/lynis_index.py [--installed EPHEMERAL_DIR]

Installs the e2e scenario's host with installer.py (as bench/installer_overhead.py makes it),
or takes one e2e already installed, and starts a bare systemd container of the same image
beside it. Installs Lynis from Debian's mirror in both, audits them one after the other
(`lynis audit system --quick`), and prints both hardening indexes, then every suggestion
left on the installed host with why it stays (SUGGESTIONS_LEFT); one without a reason there
is printed as such, to be fixed or explained. Not beside the e2e scenario: it uses that
scenario's host name and network.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import testhosts  # beside this script

BARE = "bench-lynis-bare"

# Why each suggestion Lynis still makes on an installed host stays, by test ID.
SUGGESTIONS_LEFT = {
    "LYNIS": "Debian's Lynis package is older than Lynis's own release; the platform installs no Lynis.",
    "DEB-0810": "apt-listbugs asks on every install and needs Debian's bug tracker online: no use offline.",
    "DEB-0811": "apt-listchanges mails changelogs on upgrades; unattended-upgrades already logs them.",
    "DEB-0831": "needrestart could restart PostgreSQL or Docker by itself after an update; restarts stay the "
                "operator's (unattended-upgrades reports when a reboot is needed).",
    "DEB-0880": "fail2ban bans addresses after failed logins and can ban an operator's shared NAT address; "
                "SSH takes keys only and MaxAuthTries limits guessing.",
    "BOOT-5180": "A container has no boot runlevel to read.",
    "BOOT-5264": "Lynis asks to review `systemd-analyze security` of every service, distribution units included.",
    "KRNL-5788": "A container has no kernel image of its own.",
    "KRNL-6000": "kernel.* settings belong to the host that runs the kernel; in a container only net.* apply "
                 "(the common role writes them all and applies them on a real host).",
    "FILE-6310": "Partitions (/home, /tmp, /var) are the host's build, before the installer runs.",
    "FILE-7524": "Lynis's list of files whose mode could be stricter includes distribution defaults.",
    "USB-1000": "USB storage stays: offline bundles arrive on USB drives. Add usb-storage to "
                "common_disabled_kernel_modules to disable it.",
    "NAME-4028": "The test host has no DNS domain; a site's hosts get theirs from the site.",
    "PKGS-7392": "The mirror's updates at the time of the run; unattended-upgrades installs security ones.",
    "LOGG-2130": "journald keeps the logs, persistent and size-limited (common role); no syslog daemon is added.",
    "ACCT-9628": "auditd needs rules chosen per site and cannot run in a container; left to the site's security team.",
    "FINT-4350": "AIDE's database of a host whose /var/lib/docker changes all day takes minutes to build and "
                 "alarms on every deploy; left to the site's file integrity tooling.",
    "HRDN-7230": "A malware scanner is the site's choice; none is added.",
    "TOOL-5002": "Ansible runs from the controller and leaves no agent on the host.",
    "AUTH-9284": "The locked accounts are the system users of the packages (postgres, redis, ...), locked by design.",
    "PKGS-7394": "apt-show-versions hooks every package list update to rebuild its cache, slowing each run; "
                 "`apt list --upgradable` tells the same.",
    "NETW-3200": "Should not stay: common_disabled_kernel_modules keeps these protocols from loading.",
    "FIRE-4513": "Rules with no packets yet: the ports they open have not been used since the firewall started.",
    "HTTP-6710": "ssl_prefer_server_ciphers off, as Mozilla's intermediate profile sets it: every cipher offered "
                 "is strong, so the client picks the one fastest for it.",
    "HTTP-6712": "Health and metrics locations are not logged (a probe every few seconds would drown the log).",
    "SSH-7408": "Kept where a stricter value can lock someone out: MaxAuthTries 6 (an agent with several keys), "
                "MaxSessions 10 (Ansible's multiplexed sessions), root login with a key, port 22 (the site's choice).",
    "DBS-1884": "Redis authenticates with ACL users (users.conf), which Lynis's requirepass check does not read.",
    "DBS-1886": "The ACL denies CONFIG to every user, which renaming the command would only hide.",
    "DBS-1888": "Redis listens on loopback and on the platform network's gateway for the app containers on the host.",
    "LOGG-2154": "Shipping logs to a central host is the site's choice (journald's upload or its own agent).",
    "ACCT-9622": "Process accounting (acct) needs CAP_SYS_PACCT, which a container lacks, and logs every process of "
                 "a host that runs containers all day; left to the site.",
    "HOME-9304": "The test's own admin user was made before the install, with Debian's default umask; accounts "
                 "made afterwards get private home folders (common_login_defs).",
}


def in_host(name: str, script: str) -> str:
    proc = subprocess.run(["docker", "exec", name, "bash", "-euo", "pipefail", "-c", script], check=False,
                          text=True, capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"{name}: `{script}` exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def audit(name: str) -> tuple[int, list[tuple[str, str]]]:
    """Install Lynis on `name`, audit it, and return its hardening index and suggestions."""
    in_host(name, "systemctl is-system-running --wait >/dev/null || true; apt-get -o Acquire::Retries=3 update -qq "
                  "&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lynis >/dev/null")
    in_host(name, "lynis audit system --quick --no-colors --auditor bench >/dev/null 2>&1 || true")
    report = in_host(name, "cat /var/log/lynis-report.dat")
    index = next(int(line.split("=", 1)[1]) for line in report.splitlines() if line.startswith("hardening_index="))
    suggestions = [tuple(line.split("=", 1)[1].split("|")[:2]) for line in report.splitlines()
                   if line.startswith("suggestion[]=")]
    return index, suggestions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installed", metavar="EPHEMERAL_DIR",
                        help="molecule folder of an e2e host already installed (kept afterwards)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lynis-") as scratch:
        ephemeral = args.installed or scratch
        env = dict(os.environ, PATH=f"{testhosts.BIN}{os.pathsep}{os.environ['PATH']}", PY_COLORS="0", NO_COLOR="1",
                   MOLECULE_EPHEMERAL_DIRECTORY=ephemeral, PLATFORMCTL_SECRETS_DIR=f"{ephemeral}/secrets")
        try:
            testhosts.start_systemd_container(BARE)
            if not args.installed:
                testhosts.fresh_e2e_host(env)
                install = subprocess.run([sys.executable, "installer.py", "--inventory",
                                          str(Path(ephemeral) / "platform-inventory")],
                                         cwd=testhosts.ROOT, env=env, capture_output=True, text=True, check=False)
                if install.returncode != 0:
                    sys.exit(f"installer.py exited {install.returncode}:\n{install.stdout[-3000:]}")
            bare, _ = audit(BARE)
            installed, suggestions = audit(testhosts.E2E_HOST)
        finally:
            testhosts.remove_container(BARE)
            if not args.installed:
                testhosts.destroy_e2e_host(env)
    print(f"Lynis hardening index: bare {testhosts.IMAGE} {bare}, installed e2e host {installed}")
    print(f"\nsuggestions left on the installed host ({len(suggestions)}):")
    for test, text in suggestions:
        print(f"  {test:<10} {text}\n             why it stays: {SUGGESTIONS_LEFT.get(test, 'NO REASON RECORDED')}")


if __name__ == "__main__":
    main()
