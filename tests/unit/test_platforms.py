"""The platforms the roles declare and preflight accepts are the ones the scenarios run on:
a release declared but never tested (as Ubuntu once was) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from platformctl.hostchecks import SUPPORTED_OS

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_CODENAMES = {"12": "bookworm", "13": "trixie"}


def scenario_debian_releases() -> set[str]:
    """The Debian releases of the test images the scenarios' platforms use."""
    releases = set()
    for scenario in (ROOT / "molecule").glob("*/molecule.yml"):
        for platform in yaml.safe_load(scenario.read_text()).get("platforms", []):
            found = re.fullmatch(r"platform-test-debian(\d+):\S+", str(platform.get("image", "")))
            if found:
                releases.add(found[1])
    return releases


def test_the_scenarios_run_both_debian_releases():
    assert scenario_debian_releases() == set(DEBIAN_CODENAMES)


def test_every_role_declares_exactly_the_tested_releases():
    wanted = [{"name": "Debian", "versions": [DEBIAN_CODENAMES[r] for r in sorted(scenario_debian_releases())]}]
    declared = {meta.parent.parent.name: yaml.safe_load(meta.read_text())["galaxy_info"]["platforms"]
                for meta in sorted((ROOT / "roles").glob("*/meta/main.yml"))}
    assert declared and {role: platforms for role, platforms in declared.items() if platforms != wanted} == {}


def test_preflight_accepts_the_tested_releases_without_a_warning():
    assert set(SUPPORTED_OS) == {f"Debian {release}" for release in scenario_debian_releases()}
