"""Finishes a package installation that an interrupted run left unfinished (dpkg's journal
in /var/lib/dpkg/updates, or packages half installed or half configured), which apt would
otherwise refuse to get past. An installation still running is waited for first: it holds
dpkg's frontend lock (an fcntl lock), which this holds while dpkg finishes the work.
Prints "finished" when it did something."""

import fcntl
import os
import subprocess


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def packages_to_reinstall() -> list[str]:
    """Packages killed while being unpacked: dpkg cannot configure them, apt must unpack them again."""
    listing = subprocess.run(["dpkg-query", "-W", "-f", "${binary:Package} ${db:Status-Eflag}\\n"],
                             capture_output=True, text=True, check=True).stdout
    return [name for name, flag in (line.split() for line in listing.splitlines()) if flag == "reinstreq"]


with open("/var/lib/dpkg/lock-frontend", "a") as lock:
    fcntl.lockf(lock, fcntl.LOCK_EX)
    audit = subprocess.run(["dpkg", "--audit"], capture_output=True, text=True, check=False).stdout
    pending = bool(os.listdir("/var/lib/dpkg/updates") or audit.strip())
    if pending:
        # The frontend lock is ours: dpkg takes only its database lock. It configures all it
        # can; a package left half unpacked fails here and is reinstalled below.
        subprocess.run(["dpkg", "--configure", "-a"], check=False, env=dict(os.environ, DPKG_FRONTEND_LOCKED="1"))
if pending:
    # apt waits for the lock, should anything take it meanwhile.
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "--yes"]
    reinstall = packages_to_reinstall()
    if reinstall:
        run(*apt, "install", "--reinstall", *reinstall)
    run(*apt, "install", "--fix-broken")
    run("dpkg", "--configure", "-a")
    print("finished")
