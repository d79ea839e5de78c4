"""Runs every molecule scenario: its test sequence (converge, idempotence, verify), then a
check-mode pass that must report no change, then destroy. Whole-stack scenarios, whose
sequence has no idempotence step, check reruns and check mode through installer.py in
their own tests instead.

    pytest tests/molecule -k firewall        # one scenario
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                   r"\s+failed=(?P<failed>\d+)", re.MULTILINE)


def molecule(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PY_COLORS="0", NO_COLOR="1", COLUMNS="250", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [str(bindir / "molecule"), *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
    )
    sys.stdout.write(proc.stdout)
    return proc


def role_scenario(scenario: str) -> bool:
    config = yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text()) or {}
    sequence = (config.get("scenario") or {}).get("test_sequence")
    return sequence is None or "idempotence" in sequence


def check_mode_recap(output: str) -> list[tuple[str, int, int, int]]:
    return [(m["host"], int(m["changed"]), int(m["unreachable"]), int(m["failed"]))
            for m in RECAP.finditer(output)]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str) -> None:
    try:
        sequence = molecule("test", "-s", scenario, "--destroy", "never")
        assert sequence.returncode == 0, f"molecule test -s {scenario} failed (output above)"
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
