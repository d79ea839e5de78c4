"""Settings kept in a file the distribution owns (/etc/login.defs, /etc/default/sysstat):
the file's text with some lines set, as ansible.builtin.lineinfile would leave it, computed
on the controller from one read of the file. The role writes the result through
platform_files, so a rerun with every line in place runs no module per line. Tested by
tests/unit/test_line_edits.py."""

from __future__ import annotations

import re


def with_lines(text: str, lines: list[dict[str, str]]) -> str:
    """`text` with each {regexp, line} of `lines` applied in order, as lineinfile does with
    state present: the last line that matches `regexp` becomes `line`; when none matches and
    `line` is not already there, `line` is added at the end."""
    current = text.splitlines()
    for edit in lines:
        pattern = re.compile(edit["regexp"])
        matches = [index for index, found in enumerate(current) if pattern.search(found)]
        if matches:
            current[matches[-1]] = edit["line"]
        elif edit["line"] not in current:
            current.append(edit["line"])
    return "".join(f"{line}\n" for line in current)


class FilterModule:
    def filters(self):
        return {"with_lines": with_lines}
