"""Lines set in a distribution's file as lineinfile would set them (plugins/filter/line_edits.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "line_edits.py"
_spec = importlib.util.spec_from_file_location("line_edits", _PLUGIN)
edits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(edits)

LOGIN_DEFS = "# comment\nPASS_MAX_DAYS\t99999\n#UMASK 022\nENCRYPT_METHOD SHA512\n"


def test_a_matching_line_is_replaced_in_place() -> None:
    edited = edits.with_lines(LOGIN_DEFS, [{"regexp": r"^#?\s*PASS_MAX_DAYS\s", "line": "PASS_MAX_DAYS\t365"}])
    assert edited == "# comment\nPASS_MAX_DAYS\t365\n#UMASK 022\nENCRYPT_METHOD SHA512\n"


def test_a_commented_default_becomes_the_setting() -> None:
    edited = edits.with_lines(LOGIN_DEFS, [{"regexp": r"^#?\s*UMASK\s", "line": "UMASK\t027"}])
    assert "UMASK\t027\n" in edited and "#UMASK" not in edited


def test_a_line_no_regexp_matches_is_added_at_the_end() -> None:
    edited = edits.with_lines("A=1", [{"regexp": r"^B=", "line": "B=2"}])
    assert edited == "A=1\nB=2\n"


def test_only_the_last_match_is_replaced_as_lineinfile_does() -> None:
    edited = edits.with_lines("X=1\nX=2\n", [{"regexp": r"^X=", "line": "X=3"}])
    assert edited == "X=1\nX=3\n"


def test_lines_already_in_place_leave_the_text_as_it_was() -> None:
    lines = [{"regexp": r"^#?\s*PASS_MAX_DAYS\s", "line": "PASS_MAX_DAYS\t99999"},
             {"regexp": r"^ENCRYPT_METHOD\s", "line": "ENCRYPT_METHOD SHA512"}]
    assert edits.with_lines(LOGIN_DEFS, lines) == LOGIN_DEFS


def test_a_line_present_without_a_match_is_not_added_twice() -> None:
    assert edits.with_lines("B=2\n", [{"regexp": r"^C=", "line": "B=2"}]) == "B=2\n"
