"""Folds ansible-runner's event stream into the run's state: progress, per-host counts (the
recap), failures, the facts the plays report and, in check mode, the drifted items."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SET_FACT_ACTIONS = {"set_fact", "ansible.builtin.set_fact"}
ARGUMENT_SPEC_ACTIONS = {"validate_argument_spec", "ansible.builtin.validate_argument_spec"}
# A role's own warning: a debug message that begins with it (the firewall's rules made by hand).
DEBUG_ACTIONS = {"debug", "ansible.builtin.debug"}
WARNING_PREFIX = "[WARNING] "
RECAP_FIELDS = ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")
# playbook_on_stats names some counts differently from the printed recap.
STATS_KEYS = {"ok": "ok", "changed": "changed", "failed": "failures", "unreachable": "dark",
              "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
DIFF_LIMIT = 4000
# Events that end the task before them: its time is counted up to here.
TASK_BOUNDARIES = {"playbook_on_task_start", "playbook_on_handler_task_start", "playbook_on_play_start",
                   "playbook_on_stats"}
OUTSIDE_ROLES = "(plays)"  # fact gathering and the plays' own tasks


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


def identity(text: str) -> str:
    return text


@dataclass
class RunState:
    """Everything the display and the report need, built from ansible-runner events only."""

    mask: Callable[[str], str] = identity
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
    # Wall-clock seconds and tasks per role (a task on several hosts at once counts once).
    role_seconds: dict[str, float] = field(default_factory=dict)
    role_tasks: dict[str, int] = field(default_factory=dict)
    _timed_task: tuple[str, datetime] | None = None

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind in TASK_BOUNDARIES:
            self._time_task(kind, data, event.get("created"))
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

    def _time_task(self, kind: str, data: dict[str, Any], created: str | None) -> None:
        try:
            now = datetime.fromisoformat(str(created))
        except ValueError:
            return
        if self._timed_task is not None:
            role, started = self._timed_task
            self.role_seconds[role] = self.role_seconds.get(role, 0.0) + max((now - started).total_seconds(), 0.0)
        self._timed_task = None
        if kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            role = data.get("role") or OUTSIDE_ROLES
            self.role_tasks[role] = self.role_tasks.get(role, 0) + 1
            self._timed_task = (role, now)

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
            said = _debug_messages(res) if data.get("task_action") in DEBUG_ACTIONS else []
            if res.get("changed"):
                # A debug task that reports drift says what it found in its message.
                text = render_diff(res) or "\n".join(m.removeprefix(WARNING_PREFIX) for m in said)
                self.changes.append(Change(host, role, task, self.mask(text)))
            self.notices += [self.mask(str(w)) for w in res.get("warnings") or []]
            self.notices += [f"{host}: {self.mask(m.removeprefix(WARNING_PREFIX))}"
                             for m in said if m.startswith(WARNING_PREFIX)]
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

    def reports(self, fact: str) -> dict[str, Any]:
        """A fact the plays set on each host to report what they did, by host, where set."""
        return {host: facts[fact] for host, facts in self.facts.items() if fact in facts}

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(h[name] for h in self.stats.values()) for name in RECAP_FIELDS}


def _debug_messages(res: dict[str, Any]) -> list[str]:
    """What a debug task printed: its message, or each of its loop items' messages."""
    items = [item for item in res.get("results") or [] if isinstance(item, dict)]
    return [str(item["msg"]) for item in items or [res] if item.get("msg")]


def _message(res: dict[str, Any]) -> str:
    for module_result in (res.get("failed_modules") or {}).values():
        if isinstance(module_result, dict) and module_result.get("failed"):
            return _message(module_result)
    # A looped task's own message is only "One or more items failed": its items say what.
    failed_items = [item for item in res.get("results") or [] if isinstance(item, dict) and item.get("failed")]
    if failed_items:
        return "; ".join(_message(item) for item in failed_items)
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            lines = str(value).strip().splitlines()
            return lines[0] if len(lines) == 1 else " ".join(line.strip() for line in lines[:3])
    if res.get("censored"):
        return "failed; its output is hidden because it can hold a secret (no_log)"
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


def masked(value: Any, mask: Callable[[str], str]) -> Any:
    """`value` with every secret in its strings masked, however deep."""
    if mask is identity:
        return value
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {key: masked(item, mask) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, mask) for item in value]
    return value
