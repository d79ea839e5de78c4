"""What the scenarios' tests read from an installer.py run: its end for an assertion's message
(the scenario's runner shows only the end of the output, which a later run pushes out) and
the tasks that changed something, from the run's log."""

from __future__ import annotations

import subprocess
from pathlib import Path


def outcome(proc: subprocess.CompletedProcess, summary: dict) -> str:
    """The run's exit, failed tasks, probes that did not pass and last lines."""
    failures = [(f["host"], f["task"], f["message"][:300]) for f in summary.get("failures", [])]
    probes = [(p["host"], p["probe"], p["result"][:300]) for p in summary.get("probes", []) if p["result"] != "pass"]
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return f"exit {proc.returncode}; failed tasks {failures}; probes not passing {probes}; last lines {tail}"


def changed_tasks(summary: dict) -> list[str]:
    """Each task that reported a change, with its host: `TASK [name]` then `changed: [host]`."""
    task, changed = "", []
    for line in Path(summary["run_log"]).read_text().splitlines():
        if line.startswith("TASK ["):
            task = line[6:line.rfind("]")]
        elif line.startswith("changed: ["):
            changed.append(f"{task} {line[9:line.index(']') + 1]}")
    return changed
