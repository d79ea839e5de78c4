"""A command's output split under its "## name" headings (plugins/filter/sections.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "sections.py"
_spec = importlib.util.spec_from_file_location("sections", _PLUGIN)
sections = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sections)


def test_each_heading_holds_its_non_empty_lines():
    text = "## status\nStatus: active\n\n## added\n## listening\nLISTEN 0 128 0.0.0.0:22\n"
    assert sections.command_sections(text) == {"status": ["Status: active"], "added": [],
                                               "listening": ["LISTEN 0 128 0.0.0.0:22"]}


def test_lines_before_the_first_heading_belong_to_none():
    assert sections.command_sections("noise\n## status\nStatus: inactive\n") == {"status": ["Status: inactive"]}


def test_a_heading_is_a_whole_line_of_one_word():
    assert sections.command_sections("## status\n## not a heading\n") == {"status": ["## not a heading"]}


def test_getent_lines_become_groups_and_users():
    assert sections.getent_groups(["video:x:44:ollama,alice", "ollama:x:998:", "bad line"]) == {
        "video": {"gid": "44", "members": ["ollama", "alice"]}, "ollama": {"gid": "998", "members": []}}
    assert sections.getent_passwd(["ollama:x:998:998::/usr/share/ollama:/usr/sbin/nologin"]) == {
        "ollama": {"uid": "998", "gid": "998", "home": "/usr/share/ollama", "shell": "/usr/sbin/nologin"}}
