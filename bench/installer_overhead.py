#!/usr/bin/env python3
"""Benchmark (not a test): how long installer.py takes on the e2e test host (one Debian 12
systemd container in every group, reached over SSH as a sudo user, as operators reach
theirs), and what it adds over ansible-playbook with the same inventory and playbook.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/installer_overhead.py [--rounds 3]
        [--first-installs 3]          # each on a freshly created host
        [--installed EPHEMERAL_DIR]   # a host e2e already installed: no first install
        [--baseline CHECKOUT]         # also: no-op reruns by another checkout, alternated
        [--baseline-rounds 3]         # (--rounds 0 --baseline ...: only those)
        [--overhead-rounds 0]         # no ansible-playbook/installer.py check pairs

Creates and prepares the e2e scenario's host in a molecule folder of its own and writes the
scenario's inventory (its converge, tag e2e_inventory only). Times first installs (each on a
fresh host), then no-op reruns (preflight, site.yml and verify) and `check`, `--rounds`
each, and prints every run with the machine's load, each of its playbook runs' span from
its events (preflight, install or check, verify) and the median of each. Then it
alternates `ansible-playbook --check --diff playbooks/site.yml` with `installer.py check`
(the same playbook in the same mode, with the same configuration, roles and vault
password: the difference is the installer's own work) and prints the ratio. With
--baseline (a checkout of another revision, with its own .venv or this one's), it then
alternates no-op reruns by that checkout's installer.py and by this one on the same host and
inventory, and prints the ratio of their medians. Not beside the e2e scenario: it uses that
scenario's host name and network.
"""

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
sys.path.insert(0, str(ROOT))

import testhosts  # noqa: E402  (beside this script)
from task_times import task_seconds  # noqa: E402  (beside this script)

from platformctl import inventory, paths, secrets  # noqa: E402  (the package beside bench/)

BIN = Path(sys.executable).parent
HOST = testhosts.E2E_HOST


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed


def load() -> str:
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def phases(run_dirs: list[Path]) -> str:
    """Each playbook run's span, first to last event, from the run folders an installer.py
    command left (preflight, install or check, verify): what the rest of the time is not."""
    spans = []
    for run_dir in sorted(run_dirs):
        _, results, wall = task_seconds(run_dir)
        phase = run_dir.name.split("-")[2] if run_dir.name.count("-") >= 3 else run_dir.name
        spans.append(f"{phase} {wall:.0f} s/{sum(results.values())} results")
    return ", ".join(spans)


def measured(name: str, argv: list[str], env: dict[str, str], times: dict[str, list[float]],
             checkout: Path = ROOT) -> None:
    runs = Path(env.get("PLATFORMCTL_RUNS_DIR") or checkout / "runs")
    before = set(runs.glob("*")) if runs.is_dir() else set()
    seconds = timed(argv, env)
    times.setdefault(name, []).append(seconds)
    new = [path for path in runs.glob("*") if path not in before and (path / "job_events").is_dir()]
    print(f"{name:<16} {seconds:7.1f} s   (load {load()}; {phases(new) or 'no run folders'})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first-installs", type=int, default=1)
    parser.add_argument("--installed", metavar="EPHEMERAL_DIR",
                        help="molecule folder of an e2e host already installed (kept afterwards)")
    parser.add_argument("--baseline", metavar="CHECKOUT", type=Path,
                        help="another revision's checkout whose no-op reruns are alternated with this one's")
    parser.add_argument("--baseline-rounds", type=int, default=3, help="no-op reruns of each checkout (--baseline)")
    parser.add_argument("--overhead-rounds", type=int,
                        help="ansible-playbook/installer.py check pairs (default: --rounds)")
    args = parser.parse_args()
    rounds = args.rounds
    times: dict[str, list[float]] = {}
    print(f"host: {HOST} (Debian 12 systemd container, every group, SSH as a sudo user); controller: "
          f"{os.cpu_count()} cores, load before the run {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as scratch:
        ephemeral = args.installed or scratch
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PY_COLORS="0", NO_COLOR="1",
                   MOLECULE_EPHEMERAL_DIRECTORY=ephemeral, PLATFORMCTL_SECRETS_DIR=f"{ephemeral}/secrets")
        folder = str(Path(ephemeral) / "platform-inventory")
        installer = [sys.executable, "installer.py", "--inventory", folder]
        try:
            for _ in range(0 if args.installed else args.first_installs):
                testhosts.fresh_e2e_host(env)
                measured("first install", installer, env, times)
            for _ in range(rounds):
                measured("no-op rerun", installer, env, times)
            for _ in range(rounds):
                measured("check", [*installer, "check"], env, times)
            os.environ["PLATFORMCTL_SECRETS_DIR"] = env["PLATFORMCTL_SECRETS_DIR"]
            resolved = inventory.resolve(folder)
            playbook_env = dict(env, ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_ROLES_PATH=str(paths.ROLES))
            playbook_check = [str(BIN / "ansible-playbook"), "-i", str(resolved.hosts_file), "--check", "--diff",
                              "--vault-password-file", str(secrets.vault_password_file(resolved)),
                              str(paths.PLAYBOOKS / "site.yml")]
            for _ in range(rounds if args.overhead_rounds is None else args.overhead_rounds):
                measured("playbook check", playbook_check, playbook_env, times)
                measured("installer check", [*installer, "check"], env, times)
            baseline = [sys.executable, str(args.baseline / "installer.py"), "--inventory", folder]
            for _ in range(args.baseline_rounds if args.baseline else 0):
                measured("baseline rerun", baseline, env, times, args.baseline)
                measured("this rerun", installer, env, times)
        finally:
            if not args.installed:
                testhosts.destroy_e2e_host(env)

    print(f"\nmedians (load after the run {load()}):")
    for name, values in times.items():
        print(f"{name:<16} {statistics.median(values):7.1f} s   median of {len(values)}")
    if times.get("playbook check"):
        ratio = statistics.median(times["installer check"]) / statistics.median(times["playbook check"])
        print(f"installer overhead ratio (installer check / playbook check) {ratio:.2f}x")
    if args.baseline:
        ratio = statistics.median(times["this rerun"]) / statistics.median(times["baseline rerun"])
        print(f"no-op rerun, this checkout / {args.baseline}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
