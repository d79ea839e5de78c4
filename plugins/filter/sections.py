"""One command's output holding several reads of a host, each under a "## name" heading: a
role reads what it needs in one module run instead of one per command (the firewall's
rules and sockets, the monitoring probes, the accounts `getent` lists). Tested by
tests/unit/test_sections.py."""

from __future__ import annotations

import re

_SECTION = re.compile(r"^## (\w+)$")


def command_sections(text: str) -> dict[str, list[str]]:
    """Each section's non-empty lines under the name its "## name" heading gives; lines
    before the first heading belong to none."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        heading = _SECTION.match(line)
        if heading:
            current = sections.setdefault(heading.group(1), [])
        elif current is not None and line.strip():
            current.append(line)
    return sections


def _getent(lines: list[str], width: int, named: dict[str, int]) -> dict[str, dict]:
    """`getent` lines of `width` colon-separated fields, keyed by their first field, each
    as the fields `named` (name -> position)."""
    entries = {}
    for line in lines:
        fields = line.split(":")
        if len(fields) == width:
            entries[fields[0]] = {name: fields[position] for name, position in named.items()}
    return entries


def getent_groups(lines: list[str]) -> dict[str, dict]:
    """`getent group` lines as {name: {gid, members}}."""
    return {name: {"gid": group["gid"], "members": [member for member in group["members"].split(",") if member]}
            for name, group in _getent(lines, 4, {"gid": 2, "members": 3}).items()}


def getent_passwd(lines: list[str]) -> dict[str, dict]:
    """`getent passwd` lines as {name: {uid, gid, home, shell}}."""
    return _getent(lines, 7, {"uid": 2, "gid": 3, "home": 5, "shell": 6})


class FilterModule:
    def filters(self):
        return {"command_sections": command_sections, "getent_groups": getent_groups, "getent_passwd": getent_passwd}
