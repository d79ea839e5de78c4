"""Shared fixtures: replayed ansible-runner event streams and throw-away inventories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platformctl import paths
from platformctl.events import RunState

EVENTS = Path(__file__).parent / "events"
SAMPLE_PROJECT = EVENTS / "playbooks"


def replay(name: str, state: RunState | None = None) -> tuple[RunState, list[dict]]:
    """Feed a recorded event stream (tests/unit/events/<name>.jsonl) into a RunState."""
    state = state or RunState()
    events = [json.loads(line) for line in (EVENTS / f"{name}.jsonl").read_text().splitlines()]
    for event in events:
        state.handle(event)
    return state, events


@pytest.fixture
def write_inventory(tmp_path: Path):
    def write(hosts_yml: str, **variable_files: str) -> Path:
        folder = tmp_path / "inventory"
        (folder / "group_vars" / "all").mkdir(parents=True)
        (folder / "hosts.yml").write_text(hosts_yml)
        for name, text in variable_files.items():
            (folder / "group_vars" / "all" / f"{name}.yml").write_text(text)
        return folder

    return write


@pytest.fixture
def sample_project(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the installer at the sample roles and playbooks the event streams were recorded with."""
    monkeypatch.setattr(paths, "ROLES", SAMPLE_PROJECT / "roles")
    monkeypatch.setattr(paths, "PLAYBOOKS", SAMPLE_PROJECT)
    # Their own runs folder: the rotation of runs/ must not race with other tests' runs.
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("PLATFORMCTL_SECRETS_DIR", str(tmp_path / "secrets"))
    return SAMPLE_PROJECT
