"""Runs every molecule scenario: its test sequence (converge, idempotence, verify), then a
check-mode pass that must report no change, then destroy. Whole-stack scenarios, whose
sequence has no idempotence step, check reruns and check mode through installer.py in
their own tests instead.

    pytest tests/molecule -k firewall        # one scenario

Scenarios in SLOW run only with PLATFORM_TEST_SLOW=1: they would not fit CI's 90 minutes
beside the others.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from slow import RUN_SLOW

ROOT = Path(__file__).resolve().parents[2]
# Minutes each scenario took on the 2-core machine with four scenarios running, its check-mode
# pass and destroy included (tests/run.sh on 2026-12-03, pytest --durations, 60 min in all):
# the order the scenarios start in. The slow ones from earlier runs.
MINUTES = {"e2e": 43, "newcomer": 34, "monitoring": 26, "edge": 22, "postgresql": 14, "nvidia_container_toolkit": 13,
           # cluster: 18 min alone on 2026-12-04 with the database cluster and its backup host;
           # 37 min beside prod and pitr with the cluster's restore.
           "ollama": 12, "cluster": 25, "docker": 10, "redis": 10, "firewall": 9, "common": 8, "offline_bundle": 3,
           "nvidia_driver": 2,
           "interrupted": 47, "multinode": 44, "nvidia_driver_forced": 77,
           # inventories/prod on seven hosts with its failover drills: 52 min on 2026-12-04.
           "prod": 52,
           # 18 min on 2026-12-03 beside a benchmark; 54 min in a whole run of 2026-12-02.
           "pitr": 54,
           # 18 min alone on 2026-12-03 (converge 6.5, tests 11.7); 52 min in CI's run of 2026-12-03,
           # which it pushed past 90 minutes.
           "offline": 52}
# Too slow for CI's budget beside the rest (README, "Tests"): the NVIDIA driver's DKMS build
# (an hour), the multi-node example's four hosts and inventories/prod's seven, the whole installs beside e2e's and
# newcomer's (over SSH after interruptions, from an offline bundle), and the loss of a
# database host with its backup and store hosts (pitr: 54 min of the 2-core machine's run of
# 2026-12-03, which took it past 80 minutes).
SLOW = {"nvidia_driver_forced", "multinode", "interrupted", "offline", "pitr", "prod"}


def scheduled(names: list[str], workers: int) -> list[str]:
    """Longest first, one per worker at the start: pytest-xdist (--dist load
    --maxschedchunk 1) hands each worker two tests at first, and the second waits for the
    first. So the `workers` longest each go with one of the shortest (the longest with the
    shortest), and the rest follow, longest first, to whichever worker is free."""
    skipped = set() if RUN_SLOW else SLOW
    longest = sorted(names, key=lambda name: (name in skipped, -MINUTES.get(name, 20), name))
    first = longest[:workers]
    second = list(reversed(longest[workers:]))[:workers]
    pairs = [name for pair in zip(first, second + [None] * len(first)) for name in pair if name]
    return pairs + [name for name in longest if name not in pairs]


SCENARIOS = scheduled([p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml")],
                      int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                   r"\s+failed=(?P<failed>\d+)", re.MULTILINE)


def progress(line: str) -> None:
    """One line to PLATFORM_TEST_PROGRESS, which tests/run.sh shows as it grows: pytest
    shows a scenario's output only once it ends, and a run that CI stops shows nothing."""
    path = os.environ.get("PLATFORM_TEST_PROGRESS")
    if path:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(f"{time.strftime('%H:%M:%S')} {line}\n")


# Molecule's line as each step of a sequence ends: "INFO     [edge > converge] Executed: Successful".
STEP_ENDED = re.compile(r"^INFO\s+\[(?P<step>[^\]]+)\] Executed: (?P<outcome>.+)$")
# A failed test's explanation in the verifier's (pytest's) report.
EXPLANATION = re.compile(r"^E {3}.*$", re.MULTILINE)


def minutes_since(started: float) -> str:
    return f"{(time.monotonic() - started) / 60:.1f} min"


def molecule(*args: str) -> subprocess.CompletedProcess:
    started = step_started = time.monotonic()
    what = " ".join(args[:3])
    progress(f"{what}: started")
    env = dict(os.environ, PY_COLORS="0", NO_COLOR="1", COLUMNS="250", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    lines = []
    with subprocess.Popen([str(bindir / "molecule"), *args], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:
            lines.append(line)
            ended = STEP_ENDED.match(line)
            if ended:
                progress(f"  {ended['step']}: {ended['outcome']} in {minutes_since(step_started)}")
                step_started = time.monotonic()
    output = "".join(lines)
    sys.stdout.write(output)
    progress(f"{what}: exit {proc.returncode} after {minutes_since(started)}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, output)


def role_scenario(scenario: str) -> bool:
    config = yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text()) or {}
    sequence = (config.get("scenario") or {}).get("test_sequence")
    return sequence is None or "idempotence" in sequence


def check_mode_recap(output: str) -> list[tuple[str, int, int, int]]:
    return [(m["host"], int(m["changed"]), int(m["unreachable"]), int(m["failed"]))
            for m in RECAP.finditer(output)]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str) -> None:
    if scenario in SLOW and not RUN_SLOW:
        pytest.skip(f"{scenario} is slow ({MINUTES[scenario]} min): PLATFORM_TEST_SLOW=1 runs it")
    # `--destroy never` skips the sequence's first destroy too: a host left by an earlier
    # run would start the test with an installed host.
    molecule("destroy", "-s", scenario)
    try:
        sequence = molecule("test", "-s", scenario, "--destroy", "never")
        # CI keeps only the end of the output: the verifier's explanations go in the message.
        explained = "\n".join(EXPLANATION.findall(sequence.stdout)[:40])
        assert sequence.returncode == 0, f"molecule test -s {scenario} failed (output above)\n{explained}"
        if not role_scenario(scenario):
            return

        check = molecule("converge", "-s", scenario, "--", "--check", "--diff")
        assert check.returncode == 0, f"check-mode converge of {scenario} failed (output above)"
        recap = check_mode_recap(check.stdout)
        assert recap, "no PLAY RECAP in the check-mode output"
        drifted = [(host, changed, unreachable, failed) for host, changed, unreachable, failed in recap
                   if changed or unreachable or failed]
        assert not drifted, f"check mode after converge is not clean: {drifted}"
    finally:
        molecule("destroy", "-s", scenario)
