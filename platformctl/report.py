"""What the user reads at the end of a run, and the machine-readable summary (--json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from platformctl.events import RECAP_FIELDS, RunState
from platformctl.files import atomic_write
from platformctl.runner import RunOutcome

# Tasks of a verify run that only prepare the probes.
NOT_PROBES = {"gather_facts", "setup", "ansible.builtin.setup", "ansible.builtin.gather_facts",
              "include_role", "ansible.builtin.include_role", "include_tasks", "ansible.builtin.include_tasks",
              "include_vars", "ansible.builtin.include_vars", "validate_argument_spec",
              "ansible.builtin.validate_argument_spec", "set_fact", "ansible.builtin.set_fact"}
STYLES = {"changed": "yellow", "failed": "red", "unreachable": "red"}


def host_table(state: RunState, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("host")
    for name in RECAP_FIELDS:
        table.add_column(name, justify="right")
    for host, counts in state.stats.items():
        table.add_row(host, *(_count(name, counts[name]) for name in RECAP_FIELDS))
    return table


def _count(name: str, value: int) -> Text:
    return Text(str(value), style=STYLES.get(name, "") if value else "dim")


def drift_table(state: RunState) -> Table:
    table = Table(title="Drift: what a run would change", title_justify="left", show_lines=True)
    for column in ("host", "role", "task", "diff"):
        table.add_column(column, overflow="fold")
    for change in state.changes:
        table.add_row(change.host, change.role or "-", change.task, change.diff or "(no diff shown)")
    return table


def probes(state: RunState) -> list[dict[str, str]]:
    """The probes of a verify run with their results (the table, and the --json summary)."""
    return [{"host": r.host, "role": r.role, "probe": r.task,
             "result": "pass" if r.status in ("ok", "changed") else f"FAIL: {r.message}"}
            for r in state.task_results if r.status != "skipped" and r.action not in NOT_PROBES]


def verify_table(state: RunState) -> Table:
    table = Table(title="Verify: health probes", title_justify="left")
    for column in ("host", "role", "probe", "result"):
        table.add_column(column, overflow="fold")
    for p in probes(state):
        table.add_row(p["host"], p["role"] or "-", p["probe"],
                      Text(p["result"], style="green" if p["result"] == "pass" else "red"))
    return table


def timing_table(state: RunState) -> Table:
    """Where the run's time went, by role, longest first."""
    total = sum(state.role_seconds.values()) or 1.0
    table = Table(title="Time per role", title_justify="left")
    for column in ("role", "tasks", "seconds", "share"):
        table.add_column(column, justify="left" if column == "role" else "right")
    for role, seconds in sorted(state.role_seconds.items(), key=lambda item: -item[1]):
        table.add_row(role, str(state.role_tasks.get(role, 0)), f"{seconds:.1f}", f"{seconds / total:.0%}")
    return table


def problems_table(problems: list) -> Table:
    table = Table(title="Preflight: what to fix", title_justify="left", show_lines=True)
    for column in ("host", "check", "found", "what to do"):
        table.add_column(column, overflow="fold")
    for p in problems:
        table.add_row(p.host, Text(p.check, style="red" if p.fatal else "yellow"), p.found,
                      p.fix if p.fatal else f"(warning) {p.fix}")
    return table


def failure_lines(state: RunState) -> list[str]:
    return [f"{'unreachable' if f.unreachable else 'failed'}: {f.host}: "
            f"{f.role + ' : ' if f.role else ''}{f.task}: {f.message}" for f in state.failures]


def summary(command: str, inventory: str, outcome: RunOutcome, state: RunState, exit_code: int) -> dict[str, Any]:
    """The --json document: per-host counts as in ansible's recap, drift (check), failures."""
    document: dict[str, Any] = {
        "command": command,
        "inventory": inventory,
        "status": outcome.status,
        "exit_code": exit_code,
        "run_log": str(outcome.run_dir / "stdout"),
        "hosts": state.stats,
        "totals": state.totals,
        "failures": [vars(f) for f in state.failures],
        "roles": {role: {"seconds": round(seconds, 1), "tasks": state.role_tasks.get(role, 0)}
                  for role, seconds in state.role_seconds.items()},
    }
    if command == "check":
        document["drift"] = [vars(c) for c in state.changes]
    if command == "verify":
        document["probes"] = probes(state)
    return document


def write_json(file: Path, document: dict[str, Any]) -> None:
    atomic_write(file, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def print_end(console: Console, command: str, state: RunState, outcome: RunOutcome, next_steps: list[str]) -> None:
    if state.role_seconds:
        console.print(timing_table(state))
    if state.stats:
        console.print(host_table(state, f"{command}: per host"))
    if command == "check" and state.changes:
        console.print(drift_table(state))
    for warning in dict.fromkeys(state.notices):
        console.print(Text(f"warning: {warning}", style="yellow"))
    for line in failure_lines(state):
        console.print(Text(line, style="red"))
    console.print(f"Run log: {outcome.run_dir / 'stdout'}", highlight=False)
    for step in next_steps:
        console.print(step, highlight=False, markup=False)


def bundle_table(components: list) -> Table:
    """A bundle build's components: files, size and time, as the bench reads them too."""
    table = Table(title="Bundle: per component")
    for column in ("component", "files", "MB", "seconds"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for component in components:
        table.add_row(component.name, str(len(component.files)), f"{component.bytes / 1e6:.1f}",
                      f"{component.seconds:.0f}")
    return table
