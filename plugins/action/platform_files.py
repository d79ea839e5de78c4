"""A role's files, folders and removals in one task: one remote read of every path, then a
module run only for what is not in place.

The read is one shell command (stat, sha1sum and readlink), not a module run: a Python module
costs the host about 0.15 s (starting Python and compiling Ansible's module_utils, which a
module's zip cannot cache), the command 0.03 s, and every role reads its files on every run.
A host whose tools answer otherwise (no GNU stat) is read by the platform_file_states module.

Each file goes through Ansible's own template or copy action, so validation before the
write, check mode, diffs and backups behave as in a task of its own; the copy action takes
the destination's state from the one read made here (plugins/action/copy.py) instead of a
stat module run per file. A rerun with nothing to change makes one module run for the whole
list instead of one per entry.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import stat
from pathlib import Path

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase

# The platform_read action beside this file: how a read runs over the connection.
_reader = importlib.util.spec_from_file_location("platform_read_action", Path(__file__).parent / "platform_read.py")
platform_read = importlib.util.module_from_spec(_reader)
_reader.loader.exec_module(platform_read)

_ENTRY = {
    # Paths on the host: not expanded here, where ~ and $HOME are the controller's.
    "dest": {"type": "str", "required": True},
    "template": {"type": "str"},
    "src": {"type": "str"},
    # Text, or data that core's copy writes as JSON.
    "content": {"type": "raw", "no_log": False},
    "state": {"type": "str", "choices": ["file", "directory", "absent"], "default": "file"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "mode": {"type": "raw"},
    "validate": {"type": "str"},
    # Copy a vault-encrypted src as it is (core's copy decrypts by default).
    "decrypt": {"type": "bool"},
    "when": {"type": "bool", "default": True},
    # Handlers to notify when this entry changes (instead of the task's notify, which fires
    # for any entry): the files of several services in one task, each restarting its own.
    "notify": {"type": "list", "elements": "str"},
}
_OCTAL = re.compile(r"^0?[0-7]{3,4}$")
# Where the copy action finds the states read here (one connection per task and host); while
# it is set, the copy action makes the host's temporary folder only for a file it writes.
STATES_ATTRIBUTE = "_platform_file_states"
# One line per path, in order: "-" for none, else the raw mode in hex, the owner's and group's
# numbers and names, the modification time, whether the reader may write it (1 or 0), the
# SHA-1 of a regular file or "-" (also "-" when the first argument is 0), then a link's target.
_READ_STATES = r"""
checksums=$1; shift
for p do
  if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo -; continue; fi
  s=$(stat -c '%f %u %g %U %G %.9Y' -- "$p") || exit 1
  w=0; [ -w "$p" ] && w=1
  if [ -L "$p" ]; then t=$(readlink -- "$p") || exit 1; printf '%s %s - %s\n' "$s" "$w" "$t"
  elif [ -f "$p" ] && [ "$checksums" = 1 ]; then c=$(sha1sum < "$p") || exit 1; printf '%s %s %s\n' "$s" "$w" "${c%% *}"
  else printf '%s %s -\n' "$s" "$w"; fi
done
"""


def read_states_command(paths: list[str], checksums: bool = True) -> str:
    return (f"LC_ALL=C /bin/sh -c {shlex.quote(_READ_STATES)} sh {int(checksums)} "
            f"{' '.join(shlex.quote(path) for path in paths)}")


_FIELDS = re.compile(r"(?P<raw>[0-9a-f]+) (?P<uid>\d+) (?P<gid>\d+) (?P<user>\S+) (?P<group>\S+) "
                     r"(?P<seconds>\d+)\.(?P<fraction>\d{9}) (?P<writeable>[01]) (?P<checksum>[0-9a-f]{40}|-)"
                     r"(?: (?P<target>.+))?")


def parsed_states(paths: list[str], output: str, checksums: bool = True) -> dict | None:
    """The states (as platform_file_states reports them) in the read command's output; None
    when it does not hold one well-formed line per path."""
    lines = output.splitlines()
    if len(lines) != len(paths):
        return None
    states = {}
    for path, line in zip(paths, lines):
        if line == "-":
            states[path] = {"exists": False}
            continue
        found = _FIELDS.fullmatch(line)
        if not found:
            return None
        raw, uid, gid = int(found["raw"], 16), int(found["uid"]), int(found["gid"])
        state = {"exists": True, "isreg": stat.S_ISREG(raw), "isdir": stat.S_ISDIR(raw), "islnk": stat.S_ISLNK(raw),
                 "mode": f"{stat.S_IMODE(raw):04o}", "uid": uid, "gid": gid,
                 # GNU stat names an owner without a name UNKNOWN; the module gives the number.
                 "pw_name": str(uid) if found["user"] == "UNKNOWN" else found["user"],
                 "gr_name": str(gid) if found["group"] == "UNKNOWN" else found["group"],
                 "mtime": int(found["seconds"] + found["fraction"]) / 1e9, "writeable": found["writeable"] == "1"}
        if state["islnk"] != (found["target"] is not None):
            return None
        if state["islnk"]:
            state["lnk_source"] = found["target"]
        elif state["isreg"] and checksums:
            if found["checksum"] == "-":
                return None
            state["checksum"] = found["checksum"]
        states[path] = state
    return states


def shell_states(action: ActionBase, paths: list[str], checksums: bool = True) -> dict | None:
    """The paths' states from the read command run over `action`'s connection; None when it
    fails or does not parse (the caller then asks the platform_file_states module)."""
    read = platform_read.run_read(action, read_states_command(paths, checksums))
    return parsed_states(paths, read.get("stdout", ""), checksums) if read.get("rc") == 0 else None


def attributes_in_place(entry: dict, state: dict) -> bool:
    """Whether `state` (platform_file_states, or a stat result) already has the entry's owner,
    group and mode (by name or number; octal modes only: anything else goes to the file
    module). The copy action (plugins/action/copy.py) judges files with it too."""
    owner, group, mode = entry.get("owner"), entry.get("group"), entry.get("mode")
    if owner is not None and str(owner) not in (state.get("pw_name"), str(state.get("uid"))):
        return False
    if group is not None and str(group) not in (state.get("gr_name"), str(state.get("gid"))):
        return False
    if mode is None:
        return True
    wanted = mode if isinstance(mode, int) else int(mode, 8) if _OCTAL.match(str(mode)) else None
    return wanted is not None and wanted == int(state.get("mode", "-1"), 8)


def in_place(entry: dict, state: dict) -> bool:
    """Whether a folder or removal entry needs no module run (files are the copy action's)."""
    if entry["state"] == "absent":
        return not state.get("exists")
    return bool(state.get("isdir")) and not state.get("islnk") and attributes_in_place(entry, state)


def sources_of(entry: dict) -> list[str]:
    return [key for key in ("template", "src", "content") if entry.get(key) is not None]


def checked_entries(files: list[dict], task_notifies: bool) -> list[dict]:
    """The entries whose `when` holds, each checked: an absolute path, one source for a file
    and none for a folder, and notify on the task or on its entries, not both."""
    entries = [entry for entry in files if entry["when"]]
    if task_notifies and any(entry.get("notify") for entry in entries):
        raise AnsibleActionFail("notify goes on the task or on its entries, not both")
    for entry in entries:
        if not entry["dest"].startswith("/"):
            raise AnsibleActionFail(f"{entry['dest']}: dest must be an absolute path")
        sources = sources_of(entry)
        if (entry["state"] == "file" and len(sources) != 1) or (entry["state"] == "directory" and sources):
            raise AnsibleActionFail(f"{entry['dest']}: a file takes one of template, src or content; "
                                    f"a directory none (found {sources or 'none'})")
    return entries


class ActionModule(ActionBase):
    # The temporary folder on the host is made only for a file that is written
    # (plugins/action/copy.py): a rerun with nothing to change needs none.
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True, "options": _ENTRY}})
        entries = checked_entries(args["files"], task_notifies=bool(self._task.notify))
        if not entries:
            return {**result, "changed": False, "files": []}
        dests = [entry["dest"] for entry in entries]
        if len(set(dests)) < len(dests):
            raise AnsibleActionFail(f"a path comes more than once: {sorted({d for d in dests if dests.count(d) > 1})}")
        states, failure = self._read_states(dests, task_vars)
        if failure:
            return {**result, **failure}
        setattr(self._connection, STATES_ATTRIBUTE, {
            entry["dest"]: states[entry["dest"]] for entry in entries
            if entry["state"] == "file" and not states[entry["dest"]].get("islnk")})
        done, diffs = [], []
        try:
            for entry in entries:
                outcome = self._apply(entry, states[entry["dest"]], task_vars)
                if outcome.get("diff"):
                    diffs.extend(outcome["diff"] if isinstance(outcome["diff"], list) else [outcome["diff"]])
                done.append({"dest": entry["dest"], "state": entry["state"], "changed": bool(outcome.get("changed"))})
                if outcome.get("failed"):
                    return {**result, **outcome, "files": done, "changed": any(item["changed"] for item in done),
                            "msg": f"{entry['dest']}: {outcome.get('msg', 'failed')}"}
        finally:
            delattr(self._connection, STATES_ATTRIBUTE)
        result.update(changed=any(item["changed"] for item in done), files=done)
        notified = [name for entry, item in zip(entries, done) if item["changed"] for name in entry.get("notify") or []]
        if notified:
            # What Ansible's task executor sets from a task's own notify (left to this result
            # when the task has none): the strategy notifies these handlers of a changed result.
            result["_ansible_notify"] = list(dict.fromkeys(notified))
        if diffs:
            result["diff"] = diffs
        return result

    def _read_states(self, paths: list[str], task_vars: dict) -> tuple[dict, dict | None]:
        """Each path's state, and the failed result of a read that could not be made."""
        states = shell_states(self, paths)
        if states is not None:
            return states, None
        read = self._execute_module("ansible.legacy.platform_file_states", module_args={"paths": paths},
                                    task_vars=task_vars)
        return ({}, read) if read.get("failed") else (read["states"], None)

    def _apply(self, entry: dict, state: dict, task_vars: dict) -> dict:
        attributes = {key: entry[key] for key in ("owner", "group", "mode") if entry.get(key) is not None}
        if entry["state"] != "file":
            if in_place(entry, state):
                return {"changed": False}
            return self._execute_module("ansible.legacy.file", task_vars=task_vars, module_args={
                "path": entry["dest"], "state": entry["state"],
                **(attributes if entry["state"] == "directory" else {})})
        action = "ansible.legacy.template" if entry.get("template") is not None else "ansible.legacy.copy"
        task = self._task.copy()
        task.args = {"dest": entry["dest"], **attributes,
                     **({"validate": entry["validate"]} if entry.get("validate") else {}),
                     **({"decrypt": entry["decrypt"]} if entry.get("decrypt") is not None else {}),
                     **{("src" if key == "template" else key): entry[key] for key in sources_of(entry)}}
        handler = self._shared_loader_obj.action_loader.get(
            action, task=task, connection=self._connection, play_context=self._play_context, loader=self._loader,
            templar=self._templar, shared_loader_obj=self._shared_loader_obj)
        handler._early_needs_tmp_path = lambda: False  # the copy action makes it when it writes
        try:
            return handler.run(task_vars=task_vars)
        except AnsibleError as error:  # a template that does not render, a source not found
            return {"failed": True, "msg": error.message}
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
