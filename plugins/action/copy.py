"""ansible.builtin.template with one shell command, not two module runs, for a file already
in place.

The template action hands its rendered file to `ansible.legacy.copy`, which looks here first
(Ansible's documented local override). Core's copy reads the destination with the stat module,
and when the checksum matches it still runs the file module to apply owner, group and mode:
two module runs for every template of every role on every rerun. This action reads the
destination with platform_files' shell command (type, owner, group, mode and checksum), and
when those match it returns the file module's answer without running it. Anything else (a
different checksum, symbolic modes, SELinux or chattr attributes, links, directories, a host
without GNU stat) goes to core's code unchanged.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ansible.plugins.action
from ansible.utils.hashing import checksum

# Ansible loads this file as ansible.plugins.action.copy, the name of core's own module, so
# core's is loaded from its file under a name of its own.
_core = importlib.util.spec_from_file_location("ansible_core_copy_action",
                                               Path(ansible.plugins.action.__file__).parent / "copy.py")
_core_copy = importlib.util.module_from_spec(_core)
_core.loader.exec_module(_core_copy)
CoreCopy = _core_copy.ActionModule
# The platform_files action beside this file: its reading of owner, group and mode, and where
# it leaves the states it read.
_batch = importlib.util.spec_from_file_location("platform_files_action", Path(__file__).parent / "platform_files.py")
platform_files = importlib.util.module_from_spec(_batch)
_batch.loader.exec_module(platform_files)

# The file module's arguments this shortcut can judge from a stat result; any other one set
# (seuser, attributes, ...) sends the call to the file module.
_JUDGED = {"dest", "path", "_original_basename", "recurse", "state", "owner", "group", "mode", "follow", "force",
           "unsafe_writes"}


def attributes_in_place(args: dict, stat: dict) -> bool:
    """Whether running the file module with `args` on the file `stat` describes would change
    nothing: a regular file (not a link) whose owner, group and mode already are the wanted
    ones (by name or number; octal modes only)."""
    if any(value is not None for key, value in args.items() if key not in _JUDGED):
        return False
    if args.get("state") != "file" or not stat.get("exists") or not stat.get("isreg") or stat.get("islnk"):
        return False
    return platform_files.attributes_in_place(args, stat)


class ActionModule(CoreCopy):
    def _batched(self) -> bool:
        """Whether a platform_files task called this action (plugins/action/platform_files.py)."""
        return hasattr(self._connection, platform_files.STATES_ATTRIBUTE)

    def _early_needs_tmp_path(self):
        return not self._batched() and super()._early_needs_tmp_path()

    def _copy_file(self, source_full, source_rel, content, content_tempfile, dest, task_vars, follow):  # noqa: PLR0917  (core's)
        # Within a platform_files task the temporary folder is made here, for a file that will
        # be written: core's copy needs it only then.
        if self._batched() and self._connection._shell.tmpdir is None and not self._task.check_mode:
            known = getattr(self._connection, platform_files.STATES_ATTRIBUTE).get(dest)
            if known is None or known.get("checksum") != checksum(source_full):
                self._make_tmp_path()
        return super()._copy_file(source_full, source_rel, content, content_tempfile, dest, task_vars, follow)

    def _execute_remote_stat(self, path, all_vars, follow, tmp=None, checksum=True):
        # A platform_files task read every destination before it came here; a template task
        # of its own reads its destination with the same shell command, not the stat module.
        known = getattr(self._connection, platform_files.STATES_ATTRIBUTE, {}).get(path)
        if known is None and not self._batched() and not follow and checksum:
            states = platform_files.shell_states(self, [path])
            known = None if states is None or states[path].get("islnk") else states[path]
        if known is not None and not follow and checksum:
            stat = dict(known, checksum=known.get("checksum", "1" if not known["exists"] else ""))
        else:
            stat = super()._execute_remote_stat(path, all_vars, follow, tmp=tmp, checksum=checksum)
        self._stats = {**getattr(self, "_stats", {}), path: stat}
        return stat

    def _execute_module(self, module_name=None, module_args=None, *args, **kwargs):
        if module_name == "ansible.legacy.file" and module_args:
            path = module_args.get("dest") or module_args.get("path")
            stat = getattr(self, "_stats", {}).get(path)
            if stat is not None and attributes_in_place(module_args, stat):
                return {"changed": False, "path": path, "state": "file", "mode": stat.get("mode"),
                        "owner": stat.get("pw_name"), "group": stat.get("gr_name"), "uid": stat.get("uid"),
                        "gid": stat.get("gid")}
        return super()._execute_module(module_name, module_args, *args, **kwargs)
