#!/usr/bin/env python3
"""Where a run's time went, from its own events: the slowest tasks, each with its role, its
seconds summed over hosts and loop items, and how many results it had; then the seconds and
results per role.

    .venv/bin/python bench/task_times.py runs/20261130-182258-install-10328 [--top 30]

The run folders are the installer's (runs/, or PLATFORMCTL_RUNS_DIR)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

RESULTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}


def task_seconds(run_dir: Path) -> tuple[Counter, Counter, float]:
    seconds: Counter = Counter()
    results: Counter = Counter()
    created = []
    for file in (run_dir / "job_events").glob("*.json"):
        event = json.loads(file.read_text())
        created.append(datetime.fromisoformat(event["created"]))
        data = event.get("event_data") or {}
        if event["event"] in RESULTS and data.get("start") and data.get("end"):
            key = (data.get("role") or "-", data.get("task", ""))
            spent = datetime.fromisoformat(data["end"]) - datetime.fromisoformat(data["start"])
            seconds[key] += spent.total_seconds()
            results[key] += 1
    wall = (max(created) - min(created)).total_seconds() if created else 0.0
    return seconds, results, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    seconds, results, wall = task_seconds(args.run_dir)
    print(f"{args.run_dir.name}: {wall:.1f} s from first to last event, {sum(results.values())} task results, "
          f"{sum(seconds.values()):.1f} s in tasks (summed over hosts)")
    print(f"\n{'seconds':>8} {'results':>7}  role / task")
    for (role, task), spent in seconds.most_common(args.top):
        print(f"{spent:8.1f} {results[role, task]:7d}  {role} / {task}")
    by_role: Counter = Counter()
    count: Counter = Counter()
    for (role, task), spent in seconds.items():
        by_role[role] += spent
        count[role] += results[role, task]
    print(f"\n{'seconds':>8} {'results':>7}  role")
    for role, spent in by_role.most_common():
        print(f"{spent:8.1f} {count[role]:7d}  {role}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
