"""ansible.builtin.stat's answer for one path from one shell command, without a module run.

The command is platform_files' read (stat, sha1sum, readlink); its result holds the keys
the roles use: exists, isreg, isdir, islnk, mode, uid, gid, pw_name, gr_name, mtime,
writeable, checksum (SHA-1, for a regular file) and lnk_source. A host whose tools answer
otherwise (no GNU stat) is read by the platform_file_states module.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ansible.plugins.action import ActionBase

# The platform_files action beside this file: the read and its parsing.
_files = importlib.util.spec_from_file_location("platform_files_action", Path(__file__).parent / "platform_files.py")
platform_files = importlib.util.module_from_spec(_files)
_files.loader.exec_module(platform_files)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec={
            "path": {"type": "str", "required": True},
            "get_checksum": {"type": "bool", "default": True}})
        path, checksums = args["path"], args["get_checksum"]
        states = platform_files.shell_states(self, [path], checksums)
        if states is None:
            read = self._execute_module("ansible.legacy.platform_file_states", module_args={"paths": [path]},
                                        task_vars=task_vars)
            if read.get("failed"):
                return {**result, **read}
            states = read["states"]
        return {**result, "changed": False, "stat": states[path]}
