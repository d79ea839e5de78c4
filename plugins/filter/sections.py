"""One command's output holding several reads of a host, each under a "## name" heading: a
role reads what it needs in one module run instead of one per command (the firewall's
rules and sockets, the monitoring probes). Tested by tests/unit/test_sections.py."""

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


class FilterModule:
    def filters(self):
        return {"command_sections": command_sections}
