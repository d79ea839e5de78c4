#!/usr/bin/python
"""The state of many paths in one module run: what ansible.builtin.stat tells of one."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: platform_file_states
short_description: Reads the type, owner, group, mode and SHA-1 checksum of many paths at once
description:
  - One module run for what would be one M(ansible.builtin.stat) run per path.
  - The platform_files action reads a role's files with it before deciding which to write.
  - Links are not followed; a link is reported as a link with its target, without a checksum.
  - It also reads the text of small files a role edits (O(contents)), in the same run.
options:
  paths:
    description: The absolute paths to read, as given (not expanded).
    type: list
    elements: str
    required: true
  contents:
    description: Paths of text files (UTF-8) whose content to return too; they need not be in O(paths).
    type: list
    elements: str
    default: []
author: The platform's maintainers
"""

EXAMPLES = r"""
- name: Read the state of Redis's files
  platform_file_states:
    paths: [/etc/redis/redis.conf, /etc/redis/users.acl]

- name: Read the time zone's link and the text of login.defs
  platform_file_states:
    paths: [/etc/localtime]
    contents: [/etc/login.defs]
"""

RETURN = r"""
states:
  description: >-
    Each path's state, keyed by the path: C(exists), C(isreg), C(isdir), C(islnk), C(mode) (four
    octal digits), C(uid), C(gid), C(pw_name), C(gr_name), C(mtime) (seconds since the epoch),
    C(writeable) (by the user the module runs as), C(checksum) (SHA-1) for regular files, and
    C(lnk_source) (the target as the link holds it) for links.
  returned: always
  type: dict
contents:
  description: The text of each path of O(contents), keyed by the path; null for a path that does not exist.
  returned: always
  type: dict
"""

def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def state_of(path: str) -> dict:
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return {"exists": False}
    state = {
        "exists": True,
        "isreg": stat.S_ISREG(found.st_mode),
        "isdir": stat.S_ISDIR(found.st_mode),
        "islnk": stat.S_ISLNK(found.st_mode),
        "mode": f"{stat.S_IMODE(found.st_mode):04o}",
        "uid": found.st_uid,
        "gid": found.st_gid,
        "pw_name": _name(pwd.getpwuid, found.st_uid),
        "gr_name": _name(grp.getgrgid, found.st_gid),
        "mtime": found.st_mtime_ns / 1e9,
        "writeable": os.access(path, os.W_OK),
    }
    if state["islnk"]:
        state["lnk_source"] = os.readlink(path)
    if state["isreg"]:
        digest = hashlib.sha1()  # noqa: S324  (the checksum Ansible's copy action compares)
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        state["checksum"] = digest.hexdigest()
    return state


def content_of(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text") from error


def main() -> None:
    module = AnsibleModule(argument_spec={"paths": {"type": "list", "elements": "str", "required": True},
                                          "contents": {"type": "list", "elements": "str", "default": []}},
                           supports_check_mode=True)
    try:
        states = {path: state_of(path) for path in module.params["paths"]}
        contents = {path: content_of(path) for path in module.params["contents"]}
    except OSError as error:
        module.fail_json(msg=f"cannot read {error.filename}: {error.strerror}")
    except ValueError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, states=states, contents=contents)


if __name__ == "__main__":
    main()
