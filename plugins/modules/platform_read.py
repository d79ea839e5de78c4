#!/usr/bin/python
"""Documentation of the platform_read action (plugins/action/platform_read.py), which runs the
command over the connection without a module."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: platform_read
short_description: Runs a command that only reads the host, without a Python module on the host
description:
  - Sends the command over the connection, with the task's C(become) and C(environment), in
    the locale Ansible's modules use (C.UTF-8), and answers as M(ansible.builtin.command) does.
  - Never reports a change, and runs in check mode too, so the command must not change the
    host. A task decides with C(changed_when) and C(failed_when) as with the command module.
  - Fails when the command exits non-zero, unless C(failed_when) says otherwise.
  - The command and the task's environment travel on the command line, which the host's
    process list shows and sudo logs, so neither may hold a secret; a read that needs one
    stays with M(ansible.builtin.command), whose arguments travel on standard input.
options:
  cmd:
    description: The command, run by O(executable) (C(-c)); shell syntax allowed.
    type: str
  argv:
    description: The command as a list of words, each quoted for the shell.
    type: list
    elements: str
  executable:
    description: The shell that runs the command.
    type: str
    default: /bin/sh
notes:
  - One of O(cmd) and O(argv) is required.
author: The platform's maintainers
"""

EXAMPLES = r"""
- name: Read the firewall's state
  platform_read:
    cmd: ufw status verbose
  register: firewall_status

- name: Read the kernel settings in effect
  platform_read:
    argv: [sysctl, -n, vm.overcommit_memory]
  register: overcommit
"""

RETURN = r"""
rc:
  description: The command's exit status.
  returned: always
  type: int
stdout:
  description: Its standard output, without the last line break.
  returned: always
  type: str
stdout_lines:
  description: O(stdout) split into lines.
  returned: always
  type: list
  elements: str
stderr:
  description: Its standard error, without the last line break.
  returned: always
  type: str
stderr_lines:
  description: O(stderr) split into lines.
  returned: always
  type: list
  elements: str
"""
