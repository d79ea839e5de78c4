#!/usr/bin/python
"""Documentation of the platform_files action (plugins/action/platform_files.py), which does
the work on the controller, as Ansible's own template action does."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: platform_files
short_description: Writes a role's files, folders and removals with one remote read for all of them
description:
  - Reads every destination in one M(platform_file_states) run, then writes through Ansible's
    template or copy action only the files whose content, owner, group or mode differ, creates
    or mends only the folders not in place and removes only what exists.
  - Validation, check mode, diff mode and C(notify) behave as in one template or copy task per
    file; the task is changed when any entry changed.
  - Entries are applied in their order, so a folder comes before the files in it.
options:
  files:
    description: The entries, in the order they are applied.
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description: The absolute path on the host (not expanded on the controller).
        type: str
        required: true
      template:
        description: A template of the role (its C(templates/) folder), rendered as M(ansible.builtin.template) does.
        type: str
      src:
        description: A file of the role (its C(files/) folder), copied as it is.
        type: str
      content:
        description: The file's whole content (a dict or list is written as JSON, as M(ansible.builtin.copy) does).
        type: raw
      state:
        description: >-
          C(file) (with one of O(files[].template), O(files[].src) or O(files[].content)),
          C(directory) or C(absent).
        type: str
        choices: [file, directory, absent]
        default: file
      owner:
        description: The owner, by name or number.
        type: str
      group:
        description: The group, by name or number.
        type: str
      mode:
        description: The mode, in octal digits.
        type: raw
      validate:
        description: A command that checks the new file (C(%s)) before it replaces the old one.
        type: str
      when:
        description: >-
          Whether the entry applies; an entry with C(false) is left alone, as a task whose
          condition is false. With O(files[].state) chosen by a condition, one entry can
          write a file in one case and remove it in the other (C(absent) ignores the source).
        type: bool
        default: true
author: The platform's maintainers
"""

EXAMPLES = r"""
- name: Write Redis's files
  platform_files:
    files:
      - dest: /etc/redis/conf.d
        state: directory
        owner: root
        group: redis
        mode: "0750"
      - dest: /etc/redis/redis.conf
        template: redis.conf.j2
        owner: root
        group: redis
        mode: "0640"
        validate: redis-server --test-config %s
  notify: Restart Redis
"""

RETURN = r"""
files:
  description: Each entry's path, state and whether it changed, in order.
  returned: always
  type: list
  elements: dict
"""
