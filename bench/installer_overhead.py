#!/usr/bin/env python3
"""Benchmark (not a test): how long installer.py takes on a fresh test host, and what it
adds over ansible-playbook with the same inventory and playbook.

    .venv/bin/python bench/installer_overhead.py [--rounds 3]

Uses the e2e scenario's Debian 12 systemd container (molecule create + prepare), installs it
once (first install), then times a no-op rerun and `check`, then alternates
`ansible-playbook --check --diff playbooks/site.yml` with `installer.py check` (the same
playbook in the same mode: the difference is the installer's own work) and prints the ratio."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "e2e-debian12"


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    elapsed = time.monotonic() - started
    if proc.returncode not in (0, 2):
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PY_COLORS="0", NO_COLOR="1")
    molecule = [str(BIN / "molecule")]
    subprocess.run([*molecule, "destroy", "-s", "e2e"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([*molecule, "create", "-s", "e2e"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([*molecule, "prepare", "-s", "e2e"], cwd=ROOT, env=env, check=True, capture_output=True)
    try:
        with tempfile.TemporaryDirectory() as work:
            inventory = Path(work) / "inventory"
            (inventory / "group_vars" / "all").mkdir(parents=True)
            (inventory / "hosts.yml").write_text(
                f"all:\n  vars:\n    ansible_connection: community.docker.docker\n  hosts:\n    {HOST}:\n"
                f"  children:\n    edge:\n      hosts:\n        {HOST}:\n")
            env["PLATFORMCTL_SECRETS_DIR"] = str(Path(work) / "secrets")
            installer = [sys.executable, "installer.py", "--inventory", str(inventory)]
            playbook_check = [str(BIN / "ansible-playbook"), "-i", str(inventory / "hosts.yml"),
                              "--check", "--diff", "playbooks/site.yml"]
            figures = {
                "first install": timed(installer, env),
                "no-op rerun": timed(installer, env),
                "check": timed([*installer, "check"], env),
            }
            plain, ours = [], []
            for _ in range(rounds):
                plain.append(timed(playbook_check, env))
                ours.append(timed([*installer, "check"], env))
    finally:
        subprocess.run([*molecule, "destroy", "-s", "e2e"], cwd=ROOT, env=env, check=False, capture_output=True)

    print(f"host: {HOST} (Debian 12 systemd container), machine: {os.cpu_count()} cores")
    for name, seconds in figures.items():
        print(f"{name:<16} {seconds:7.1f} s")
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"ansible-playbook --check site.yml  median {p:6.1f} s over {rounds} rounds")
    print(f"installer.py check                 median {o:6.1f} s over {rounds} rounds")
    print(f"installer overhead ratio           {o / p:6.2f}x")


if __name__ == "__main__":
    main()
