"""Runs a playbook through ansible-runner and turns its event stream into the run's state:
progress, per-host counts (the recap), failures and, in check mode, the drifted items."""

from __future__ import annotations

import contextlib
import difflib
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from platformctl import paths

RUNS_KEPT = 20
SET_FACT_ACTIONS = {"set_fact", "ansible.builtin.set_fact"}
ARGUMENT_SPEC_ACTIONS = {"validate_argument_spec", "ansible.builtin.validate_argument_spec"}
RECAP_FIELDS = ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")
# playbook_on_stats names some counts differently from the printed recap.
STATS_KEYS = {"ok": "ok", "changed": "changed", "failed": "failures", "unreachable": "dark",
              "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
DIFF_LIMIT = 4000


@dataclass
class RunOptions:
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    extra_vars: list[str] = field(default_factory=list)
    check: bool = False
    diff: bool = False
    verbosity: int = 0


@dataclass
class Failure:
    host: str
    role: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class TaskResult:
    host: str
    role: str
    task: str
    status: str
    message: str = ""
    action: str = ""


@dataclass
class Change:
    host: str
    role: str
    task: str
    diff: str


def _identity(text: str) -> str:
    return text


@dataclass
class RunState:
    """Everything the display and the report need, built from ansible-runner events only."""

    mask: Callable[[str], str] = _identity
    play: str = ""
    task: str = ""
    role: str = ""
    tasks_started: int = 0
    results: int = 0
    active_hosts: set[str] = field(default_factory=set)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    argument_errors: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_results: list[TaskResult] = field(default_factory=list)

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self.play = data.get("play", "")
        elif kind == "playbook_on_task_start":
            self.tasks_started += 1
            self.task = data.get("task", "")
            self.role = data.get("role", "")
            self.active_hosts.clear()
        elif kind == "runner_on_start":
            self.active_hosts.add(data.get("host", ""))
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"):
            self._result(kind, data, str(event.get("stdout") or ""))
        elif kind == "playbook_on_stats":
            self._stats(data)

    def _result(self, kind: str, data: dict[str, Any], printed: str) -> None:
        self.results += 1
        host = data.get("host", "")
        self.active_hosts.discard(host)
        res = data.get("res") or {}
        if "censored" in res and "changed" not in res:
            # A no_log result reaches events without its changed flag; ansible's own line has it.
            res = {**res, "changed": any(line.startswith("changed:") for line in printed.splitlines())}
        role, task = data.get("role", ""), data.get("task", "")
        status = {"runner_on_ok": "changed" if res.get("changed") else "ok", "runner_on_failed": "failed",
                  "runner_on_unreachable": "unreachable", "runner_on_skipped": "skipped"}[kind]
        message = self.mask(_message(res)) if status in ("failed", "unreachable") else ""
        self.task_results.append(TaskResult(host, role, task, status, message, data.get("task_action", "")))
        if kind == "runner_on_ok":
            if data.get("task_action") in SET_FACT_ACTIONS:
                self.facts.setdefault(host, {}).update(res.get("ansible_facts") or {})
            if res.get("changed"):
                self.changes.append(Change(host, role, task, self.mask(render_diff(res))))
            self.notices += [self.mask(str(w)) for w in res.get("warnings") or []]
        elif kind == "runner_on_unreachable":
            self.failures.append(Failure(host, role, task, self.mask(_message(res)), unreachable=True))
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            if data.get("task_action") in ARGUMENT_SPEC_ACTIONS:
                self.argument_errors += [f"{host}: role {role}: {self.mask(str(e))}"
                                         for e in res.get("argument_errors") or [_message(res)]]
            self.failures.append(Failure(host, role, task, self.mask(_message(res))))

    def _stats(self, data: dict[str, Any]) -> None:
        hosts = set()
        for key in STATS_KEYS.values():
            hosts |= set(data.get(key) or {})
        self.stats = {
            host: {name: int((data.get(key) or {}).get(host, 0)) for name, key in STATS_KEYS.items()}
            for host in sorted(hosts)
        }

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(h[name] for h in self.stats.values()) for name in RECAP_FIELDS}


def _message(res: dict[str, Any]) -> str:
    for module_result in (res.get("failed_modules") or {}).values():
        if isinstance(module_result, dict) and module_result.get("failed"):
            return _message(module_result)
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            lines = str(value).strip().splitlines()
            return lines[0] if len(lines) == 1 else " ".join(line.strip() for line in lines[:3])
    return "failed (no message; see the run log)"


def render_diff(res: dict[str, Any]) -> str:
    """The change a task made or would make, as unified diff text."""
    parts = []
    diffs = res.get("diff") or []
    for diff in diffs if isinstance(diffs, list) else [diffs]:
        if not isinstance(diff, dict):
            continue
        if "prepared" in diff:
            parts.append(str(diff["prepared"]))
        elif "before" in diff or "after" in diff:
            before, after = diff.get("before", ""), diff.get("after", "")
            if not isinstance(before, str) or not isinstance(after, str):
                before, after = _as_text(before), _as_text(after)
            parts.append("".join(difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True),
                fromfile=str(diff.get("before_header", "before")), tofile=str(diff.get("after_header", "after")),
            )))
    text = "\n".join(p for p in parts if p).strip()
    return text if len(text) <= DIFF_LIMIT else text[:DIFF_LIMIT] + "\n... (diff cut; see the run log)"


def _as_text(value: Any) -> str:
    if isinstance(value, dict):
        return "".join(f"{k}: {v}\n" for k, v in sorted(value.items()))
    return "" if value is None else f"{value}\n"


@dataclass
class RunOutcome:
    status: str
    rc: int
    run_dir: Path
    interrupted: bool


def new_run_id(command: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{command}-{os.getpid()}"


def run_playbook(
    playbook: Path, inventory_file: Path, options: RunOptions, state: RunState, *,
    run_id: str, on_event: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None, vault_password_file: Path | None = None,
) -> RunOutcome:
    """Run one playbook; every event goes to `state`, then to `on_event` (the display)."""
    import ansible_runner

    args = ["-i", str(inventory_file)]
    for item in options.extra_vars:
        args += ["-e", item]
    if options.limit:
        args += ["--limit", options.limit]
    if options.tags:
        args += ["--tags", options.tags]
    if options.skip_tags:
        args += ["--skip-tags", options.skip_tags]
    if options.check:
        args.append("--check")
    if options.diff:
        args.append("--diff")
    if vault_password_file and vault_password_file.is_file():
        args += ["--vault-password-file", str(vault_password_file)]
    if options.verbosity:
        args.append("-" + "v" * options.verbosity)

    def handle(event: dict) -> bool:
        state.handle(event)
        if on_event:
            on_event(event)
        return True

    paths.RUNS.mkdir(exist_ok=True)
    # ansible-playbook is beside the Python that runs us (the venv), active or not.
    bin_dir = str(Path(sys.executable).parent)
    envvars = {"PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
               "ANSIBLE_CONFIG": str(paths.ANSIBLE_CFG), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "ANSIBLE_ROLES_PATH": str(paths.ROLES)}
    cancel = cancel or threading.Event()
    with tempfile.TemporaryDirectory(prefix="platformctl-") as private, stopped_when_interrupted(inventory_file):
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(paths.ROOT),
            playbook=str(playbook),
            cmdline=shlex.join(args),
            artifact_dir=str(paths.RUNS),
            ident=run_id,
            rotate_artifacts=RUNS_KEPT,
            envvars=envvars,
            event_handler=handle,
            cancel_callback=cancel.is_set,
            quiet=True,
            suppress_env_files=True,
            json_mode=False,
            timeout=None,
            settings={"suppress_ansible_output": True},
        )
    interrupted = cancel.is_set() or result.status == "canceled"
    if interrupted:
        stop_left_playbooks(inventory_file)
    return RunOutcome(status=result.status, rc=result.rc, run_dir=paths.RUNS / run_id, interrupted=interrupted)


@contextlib.contextmanager
def stopped_when_interrupted(inventory_file: Path) -> Iterator[None]:
    """A second Ctrl-C leaves ansible-runner at once: its ansible-playbook must end too."""
    try:
        yield
    except KeyboardInterrupt:
        stop_left_playbooks(inventory_file)
        raise


def stop_left_playbooks(inventory_file: Path, grace: float = 10.0) -> None:
    """After a cancel, ansible-runner kills ansible-playbook's process group; but Ansible runs
    each worker in a session of its own, so a worker in the middle of a task lives on and goes
    on changing the host. Stop each as ansible-playbook would (SIGTERM: the worker ends its
    module's processes too), and for good after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        left = playbooks_left_running(inventory_file)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = playbooks_left_running(inventory_file)
        if not left:
            return


def playbooks_left_running(inventory_file: Path) -> list[int]:
    """ansible-playbook processes still working on this inventory although no installer.py
    holds it: a killed installer leaves its ansible-playbook running (ansible-runner starts it
    in a session of its own). Their main processes, not their workers; Linux only (/proc)."""
    wanted = str(inventory_file).encode()
    found: dict[int, int] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if wanted in args and any(arg.endswith(b"ansible-playbook") for arg in args):
            found[int(proc.name)] = parent
    return sorted(pid for pid, parent in found.items() if parent not in found)


def output_tail(run_dir: Path, lines: int = 8) -> str:
    """The last lines ansible printed: the reason when a run failed before any task did."""
    text = ""
    for name in ("stdout", "stderr"):
        file = run_dir / name
        if file.is_file():
            text += file.read_text(encoding="utf-8", errors="replace")
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
