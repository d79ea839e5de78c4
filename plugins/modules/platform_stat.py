#!/usr/bin/python
"""Documentation of the platform_stat action (plugins/action/platform_stat.py), which reads the
path with one shell command over the connection."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: platform_stat
short_description: Reads one path as M(ansible.builtin.stat) does, without a Python module on the host
description:
  - One shell command over the connection (C(stat), C(sha1sum), C(readlink)) with the task's
    C(become); a host without GNU stat is read by the M(platform_file_states) module.
  - Links are not followed. Runs in check mode too and never reports a change.
options:
  path:
    description: The absolute path on the host.
    type: str
    required: true
  get_checksum:
    description: Whether to read a regular file's SHA-1 checksum.
    type: bool
    default: true
author: The platform's maintainers
"""

EXAMPLES = r"""
- name: Look for ufw
  platform_stat:
    path: /etc/ufw/after.rules
  register: ufw_after_rules
"""

RETURN = r"""
stat:
  description: >-
    C(exists); for a path that exists also C(isreg), C(isdir), C(islnk), C(mode) (four octal
    digits), C(uid), C(gid), C(pw_name), C(gr_name), C(mtime) (seconds since the epoch),
    C(writeable) (by the user the task runs as), C(checksum) (SHA-1) for a regular file with
    O(get_checksum), and C(lnk_source) (the target as the link holds it) for a link.
  returned: always
  type: dict
"""
