#!/usr/bin/env python3
"""Starts an installer.py install and interrupts it once a given task has started, the way
an operator's Ctrl-C (SIGINT) or a killed installer (SIGKILL of the installer and all its
ansible processes) does. Prints what happened as JSON and exits 0 when the interruption
came at that task; the converge then checks that the next install completes.

    interrupt.py --signal KILL --at 'postgresql:Install the' --container HOST -- --inventory DIR

--container also kills, inside the test host, the module processes the run had started
there (and their children, apt and dpkg among them), as a dropped SSH session does;
--host-process waits, once the task has started, until such a process runs on the host.
--rerun-while-left kills the installer alone first (the worker of the running task lives
on) and runs the same installer command, which must refuse to work beside it; then the
rest dies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))
from platformctl.paths import RUNS  # noqa: E402  (the package of the repository it tests)

SSH_SESSION = re.compile(r"sshd(-session)?: \S+@")


def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, found, todo = children_map(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def started_tasks(pid: int) -> list[tuple[str, str]]:
    """(role, task) of every task the installer's install run has started so far."""
    tasks = []
    for event_file in RUNS.glob(f"*-install-{pid}/job_events/*.json"):
        try:
            event = json.loads(event_file.read_text())
        except (OSError, ValueError):
            continue  # still being written
        if event.get("event") == "playbook_on_task_start":
            data = event.get("event_data") or {}
            tasks.append((data.get("role", ""), data.get("task", "")))
    return tasks


def host_processes(container: str) -> list[tuple[int, int, str]]:
    listing = subprocess.run(["docker", "exec", container, "ps", "-eo", "pid=,ppid=,args="],
                             capture_output=True, text=True, check=True).stdout
    return [(int(pid), int(ppid), args) for pid, ppid, args in (line.split(None, 2) for line in listing.splitlines())]


def host_command(container: str, command: str) -> str:
    return subprocess.run(["docker", "exec", container, "sh", "-c", command],
                          capture_output=True, text=True, check=False).stdout


def kill_on_host(container: str) -> list[int]:
    """SIGKILL the Ansible module processes on the test host and everything they started:
    the SSH sessions of the connection (sshd's per-user process, "sshd: USER@notty" or
    "sshd-session: USER@notty"), or what docker exec started (a parent outside the
    container: pid 0 inside it)."""
    parents, modules = {}, []
    for pid, ppid, args in host_processes(container):
        parents[pid] = ppid
        if ((ppid == 0 and pid != 1 and not args.startswith("ps ")) or "AnsiballZ_" in args
                or SSH_SESSION.match(args)):
            modules.append(pid)
    doomed = set(modules)
    changed = True
    while changed:
        extra = {pid for pid, ppid in parents.items() if ppid in doomed} - doomed
        doomed |= extra
        changed = bool(extra)
    if doomed:
        subprocess.run(["docker", "exec", container, "kill", "-9", *map(str, sorted(doomed))],
                       capture_output=True, check=False)
    return sorted(doomed)


def wait_for_host_process(args: argparse.Namespace, alive: Callable[[], bool], deadline: float) -> bool:
    while alive() and time.monotonic() < deadline:
        if any(args.host_process in command for _, _, command in host_processes(args.container)):
            return True
        time.sleep(0.5)
    return False


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signal", choices=["INT", "KILL"], required=True)
    parser.add_argument("--at", required=True, metavar="ROLE:TASK", help="role name and the start of a task name")
    parser.add_argument("--after", type=float, default=3.0, help="seconds to wait once the task has started")
    parser.add_argument("--container", help="test host whose module processes die too (KILL only)")
    parser.add_argument("--host-process", help="with --container: a string of the process command line to wait for")
    parser.add_argument("--rerun-while-left", action="store_true", help="KILL: see above")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("installer_args", nargs="+")
    return parser.parse_args()


def ansible_process_groups(inventory: str) -> set[int]:
    """ansible-playbook and each of its workers (Ansible gives every worker a session of its own)."""
    groups = set()
    for pid in (int(p.name) for p in Path("/proc").glob("[0-9]*")):
        line = command_line(pid)
        if "ansible-playbook" in line and inventory in line:
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
    return groups


def kill_all(installer: subprocess.Popen, inventory: str, container: str | None, report: dict) -> None:
    with contextlib.suppress(ProcessLookupError):
        installer.kill()
    for group in ansible_process_groups(inventory):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    if container:
        report["killed_on_host"] = kill_on_host(container)
        time.sleep(1)
        # What the next run finds: dpkg's journal of an unfinished installation.
        report["dpkg_after_kill"] = host_command(container, "ls -A /var/lib/dpkg/updates; dpkg --audit")


def main() -> int:
    args = parse_args()
    role, _, task = args.at.partition(":")
    command = [sys.executable, "installer.py", *args.installer_args]

    installer = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    report: dict[str, object] = {"signal": args.signal, "at": args.at, "reached": False}
    deadline = time.monotonic() + args.timeout
    while installer.poll() is None and time.monotonic() < deadline:
        if any(r == role and t.startswith(task) for r, t in started_tasks(installer.pid)):
            report["reached"] = True
            break
        time.sleep(1)
    time.sleep(args.after if report["reached"] else 0)
    watch_host = bool(report["reached"] and args.container and args.host_process)
    if watch_host:
        report["host_process_seen"] = wait_for_host_process(args, lambda: installer.poll() is None, deadline)

    tree = descendants(installer.pid)
    commands = {pid: command_line(pid) for pid in tree}
    report["processes"] = sorted(set(commands.values()) - {""})
    if installer.poll() is None and args.signal == "INT":
        installer.send_signal(signal.SIGINT)
    elif installer.poll() is None:
        if args.rerun_while_left:
            installer.kill()
            installer.wait()
            rerun = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False, timeout=600)
            report["rerun_rc"] = rerun.returncode
            report["rerun_output"] = (rerun.stdout + rerun.stderr).splitlines()[-5:]
        kill_all(installer, args.installer_args[args.installer_args.index("--inventory") + 1], args.container,
                 report)
    try:
        output, _ = installer.communicate(timeout=max(deadline - time.monotonic(), 60))
    except subprocess.TimeoutExpired:
        installer.kill()
        output, _ = installer.communicate()
    # Whatever the installer started must be gone with it: given up to 30 s to go (a process
    # ending its cleanup), what is still there then is left behind.
    gone_by = time.monotonic() + 30
    while True:
        left = [commands[pid] for pid in tree if command_line(pid) == commands[pid] != ""]
        if not left or time.monotonic() > gone_by:
            break
        time.sleep(0.5)
    report["left_running"] = left
    report["rc"] = installer.returncode
    report["output_tail"] = output.splitlines()[-15:]
    print(json.dumps(report, indent=2))
    return 0 if report["reached"] and report.get("host_process_seen", True) and not report["left_running"] else 1


if __name__ == "__main__":
    sys.exit(main())
