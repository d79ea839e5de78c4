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


def getent_groups(lines: list[str]) -> dict[str, dict]:
    """`getent group` lines as {name: {gid, members}}."""
    groups = {}
    for line in lines:
        fields = line.split(":")
        if len(fields) == 4:
            groups[fields[0]] = {"gid": fields[2], "members": [member for member in fields[3].split(",") if member]}
    return groups


def getent_passwd(lines: list[str]) -> dict[str, dict]:
    """`getent passwd` lines as {name: {uid, gid, home, shell}}."""
    users = {}
    for line in lines:
        fields = line.split(":")
        if len(fields) == 7:
            users[fields[0]] = {"uid": fields[2], "gid": fields[3], "home": fields[5], "shell": fields[6]}
    return users


class FilterModule:
    def filters(self):
        return {"command_sections": command_sections, "getent_groups": getent_groups, "getent_passwd": getent_passwd}
