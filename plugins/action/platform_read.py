"""A command that only reads the host, run as one shell command over the connection.

ansible.builtin.command and shell run a Python module on the host, which costs it about
0.15 s (starting Python and compiling Ansible's module_utils, which a module's zip cannot
cache) before the command starts; the reads every role makes on every run add up to seconds.
This action sends the command itself, with the task's become and environment, and answers as
the command module does (rc, stdout, stderr and their lines), never changed, in check mode
too: a task with it reads, and decides with changed_when or failed_when as before. The
command and the environment travel on the command line (shown in the process list, logged
by sudo), so a read that needs a secret stays with ansible.builtin.command.
"""

from __future__ import annotations

import shlex

from ansible.plugins.action import ActionBase

# The locale Ansible's modules choose, so that the commands' output reads the same.
_LOCALE = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "LC_MESSAGES": "C.UTF-8"}


def run_read(action: ActionBase, line: str) -> dict:
    """Run a shell line over `action`'s connection with its become, without a terminal: the
    ssh connection asks for one for a become command with no input, which would turn line
    ends into CRLF and mix standard error into the output."""
    connection = action._connection
    wants_terminal = connection.has_option("use_tty") and connection.get_option("use_tty")
    if wants_terminal:
        connection.set_option("use_tty", False)
    try:
        return action._low_level_execute_command(line, sudoable=True)
    finally:
        if wants_terminal:
            connection.set_option("use_tty", True)


def command_line(args: dict, environment: dict) -> str:
    """The shell line: the environment, then the executable running the command or argv."""
    command = args["cmd"] if args.get("cmd") is not None else " ".join(shlex.quote(word) for word in args["argv"])
    settings = " ".join(f"{name}={shlex.quote(str(value))}" for name, value in {**_LOCALE, **environment}.items())
    return f"{settings} {shlex.quote(args['executable'])} -c {shlex.quote(command)}"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(
            argument_spec={"cmd": {"type": "str"}, "argv": {"type": "list", "elements": "str"},
                           "executable": {"type": "str", "default": "/bin/sh"}},
            mutually_exclusive=[("cmd", "argv")], required_one_of=[("cmd", "argv")])
        environment: dict = {}
        self._compute_environment_string(environment)
        line = command_line(args, environment)
        done = run_read(self, line)
        stdout, stderr = done["stdout"].rstrip("\r\n"), done["stderr"].rstrip("\r\n")
        result.update(changed=False, rc=done["rc"], cmd=args["cmd"] if args.get("cmd") is not None else args["argv"],
                      stdout=stdout, stderr=stderr, stdout_lines=stdout.splitlines(),
                      stderr_lines=stderr.splitlines())
        if done["rc"] != 0:
            # The command's own last word, which the installer's report shows for the task.
            said = stderr.splitlines()[-1].strip() if stderr.strip() else ""
            result.update(failed=True, msg=f"non-zero return code {done['rc']}" + (f": {said}" if said else ""))
        return result
