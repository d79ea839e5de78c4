"""What pipelining saves on a connection other than SSH (ansible.cfg [connection]).

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/pipelining.py [--rounds 3]

Installs the common role on a fresh systemd container of the test image over the docker
connection (as the molecule scenarios reach their hosts), then reruns it (nothing to change)
with pipelining off and on in turn, `--rounds` times each, and prints every run with the
machine's load, the medians and their ratio. Without pipelining each task is four execs in
the container (make a folder, put the module, run it, remove the folder); with it, one.
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

from testhosts import ROOT, remove_container, start_systemd_container

HOST = "bench-pipelining"
PLAYBOOK = """\
- name: The common role
  hosts: all
  roles:
    - role: common
"""


def load() -> str:
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def converge(folder: Path, pipelining: bool, playbook: Path | None = None) -> float:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_PIPELINING=str(pipelining))
    started = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(folder / "hosts.ini"),
                           str(playbook or folder / "site.yml")], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{playbook or 'the converge'} exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    print(f"{os.cpu_count()} cores, load before the run {load()}", flush=True)
    start_systemd_container(HOST)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "hosts.ini").write_text(f"{HOST} ansible_connection=community.docker.docker\n")
            (folder / "site.yml").write_text(PLAYBOOK)
            converge(folder, True, ROOT / "molecule" / "resources" / "prepare.yml")  # as the scenarios ready a host
            print(f"first install       {converge(folder, True):6.1f} s   (load {load()})", flush=True)
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(rounds):
                for pipelining in (False, True):
                    seconds = converge(folder, pipelining)
                    times[pipelining].append(seconds)
                    print(f"rerun, pipelining {'on ' if pipelining else 'off'} {seconds:6.1f} s   (load {load()})",
                          flush=True)
    finally:
        remove_container(HOST)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"\nmedians: pipelining off {off:.1f} s, on {on:.1f} s; on/off {on / off:.2f} (load after {load()})")


if __name__ == "__main__":
    main()
