"""Finishes a package installation that an interrupted run left unfinished (dpkg's journal
in /var/lib/dpkg/updates, or packages half installed or half configured), which apt would
otherwise refuse to get past. An installation still running is waited for first: it holds
dpkg's frontend lock (an fcntl lock), which this holds while dpkg finishes the work.
Prints "finished" when it did something."""

import fcntl
import os
import subprocess

with open("/var/lib/dpkg/lock-frontend", "a") as lock:
    fcntl.lockf(lock, fcntl.LOCK_EX)
    audit = subprocess.run(["dpkg", "--audit"], capture_output=True, text=True, check=False).stdout
    pending = bool(os.listdir("/var/lib/dpkg/updates") or audit.strip())
    if pending:
        # The frontend lock is ours: dpkg takes only its database lock.
        subprocess.run(["dpkg", "--configure", "-a"], check=True, env=dict(os.environ, DPKG_FRONTEND_LOCKED="1"))
if pending:
    # Reinstalls what was half unpacked; waits for the lock, should anything take it meanwhile.
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "--fix-broken", "--yes"], check=True)
    print("finished")
