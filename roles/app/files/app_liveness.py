#!/usr/bin/python3
"""The liveness watcher of one host: restarts an app replica whose liveness path fails
`failures` times in a row, as Kubernetes' liveness probe does. Docker restarts a container
that exits; this one catches a process that still runs but no longer answers.

It reads its checks from a JSON file (the app role writes it), a list of {container, url,
interval, failures, start_period}, and reads it again when the file changes. A replica that
is not running, or that started less than start_period seconds ago, is not judged (a
rollout is replacing it, or it is still starting). Each failure and restart is logged.

    app_liveness.py /etc/platform/app-liveness.json
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# Docker's StartedAt carries nanoseconds; datetime takes microseconds.
_FRACTION = re.compile(r"(\.\d{6})\d*")


@dataclass
class Replica:
    due: float = 0.0
    failures: int = 0


def log(message: str) -> None:
    print(message, flush=True)


def seconds_running(container: str) -> float | None:
    """How long the container has run, None when it does not run (or does not exist)."""
    inspected = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Running}} {{.State.StartedAt}}", container],
        capture_output=True, text=True, check=False)
    running, _, started = inspected.stdout.strip().partition(" ")
    if inspected.returncode != 0 or running != "true":
        return None
    started_at = datetime.fromisoformat(_FRACTION.sub(r"\1", started.replace("Z", "+00:00")))
    return (datetime.now(timezone.utc) - started_at).total_seconds()


def probe(url: str, timeout: float) -> str | None:
    """None when the URL answers 2xx in time, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (the replica's own URL)
            return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


def judge(check: dict, replica: Replica) -> None:
    """Probe one replica; restart it at its `failures`-th failure in a row."""
    container = check["container"]
    running_for = seconds_running(container)
    if running_for is None or running_for < check["start_period"]:
        replica.failures = 0
        return
    problem = probe(check["url"], timeout=min(5, check["interval"]))
    if problem is None:
        replica.failures = 0
        return
    replica.failures += 1
    log(f"{container}: liveness probe {check['url']} failed ({problem}), {replica.failures} of {check['failures']}")
    if replica.failures >= check["failures"]:
        restarted = subprocess.run(["docker", "restart", container], capture_output=True, text=True, check=False)
        outcome = "restarted" if restarted.returncode == 0 else f"restart failed: {restarted.stderr.strip()}"
        log(f"{container}: {outcome} after {replica.failures} failed liveness probes")
        replica.failures = 0


def main(config: Path) -> None:
    checks: list[dict] = []
    replicas: dict[str, Replica] = {}
    read_version = None
    while True:
        version = config.stat().st_mtime_ns if config.exists() else None
        if version != read_version:
            checks = json.loads(config.read_text()) if version is not None else []
            replicas = {check["container"]: replicas.get(check["container"], Replica()) for check in checks}
            read_version = version
            log(f"watching {len(checks)} replica(s): {', '.join(replicas) or 'none'}")
        now = time.monotonic()
        for check in checks:
            replica = replicas[check["container"]]
            if now >= replica.due:
                replica.due = now + check["interval"]
                judge(check, replica)
        time.sleep(1)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
