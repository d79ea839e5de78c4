"""Role defaults that hold facts about the world, checked for their shape."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_ollama_release_has_a_sum_for_each_architecture():
    """ollama_archive_sha256 defaults to the pinned version's sum: a version bumped without
    its sums would leave the download unchecked, or the run stopped on an empty sum."""
    defaults = yaml.safe_load((ROOT / "roles/ollama/defaults/main.yml").read_text())
    sums = defaults["ollama_release_sha256"][defaults["ollama_version"]]
    assert set(sums) == {"amd64", "arm64"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in sums.values()), sums
