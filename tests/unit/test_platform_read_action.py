"""The platform_read action (plugins/action/platform_read.py): a read-only command sent over
the connection, through real ansible-playbook with the repository's ansible.cfg. It answers
as the command module does, with no module run on the host, in check mode too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from platformctl import paths

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: A shell command
      platform_read:
        cmd: "printf 'one\\\\ntwo\\\\n'; echo warned >&2; echo $LC_ALL"
      register: shell

    - name: Words quoted for the shell
      platform_read:
        argv: [printf, "%s|", "two words", "$HOME", "it's"]
      register: words

    - name: bash, the task's environment
      platform_read:
        cmd: set -o pipefail; test -n "$BASH_VERSION" && echo "bash, $GREETING"
        executable: /bin/bash
      environment:
        GREETING: hello
      register: piped

    - name: The environment reaches the command
      platform_read:
        cmd: echo "$GREETING"
      environment:
        GREETING: hello there
      register: greeted

    - name: Show the results
      ansible.builtin.debug:
        msg: "RESULTS {{ {'shell': shell, 'words': words, 'piped': piped, 'greeted': greeted} | to_json }} END"

    - name: A failing command fails the task, with its last word
      platform_read:
        cmd: echo "first line" >&2; echo "no such stanza" >&2; exit 3
"""


def _play(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
         "-e", f"ansible_python_interpreter={sys.executable}", *extra, str(tmp_path / "site.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)


def _results(run: subprocess.CompletedProcess) -> dict:
    quoted = re.search(r'"msg": "RESULTS (.*) END"', run.stdout)
    assert quoted, run.stdout[-3000:]
    return json.loads(json.loads(f'"{quoted.group(1)}"'))


def test_a_read_answers_as_the_command_module_without_a_module_run(tmp_path: Path) -> None:
    run = _play(tmp_path)
    results = _results(run)
    shell, words, piped = results["shell"], results["words"], results["piped"]
    assert shell["stdout_lines"] == ["one", "two", "C.UTF-8"] and shell["stderr"] == "warned"
    assert shell["rc"] == 0 and shell["changed"] is False and not shell.get("failed")
    assert words["stdout"] == "two words|$HOME|it's|", "each word of argv is one argument, unexpanded"
    assert piped["stdout"] == "bash, hello", "the command did not run in bash with the task's environment"
    assert results["greeted"]["stdout"] == "hello there", "the task's environment did not reach the command"
    assert "non-zero return code 3: no such stanza" in run.stdout and run.returncode == 2, \
        "a failing command must fail the task and say what its command said last"
    assert "Using module file" not in run.stdout, "a module ran on the host"
    assert "changed=0" in run.stdout


def test_a_read_runs_in_check_mode(tmp_path: Path) -> None:
    run = _play(tmp_path, "--check")
    assert _results(run)["shell"]["stdout_lines"] == ["one", "two", "C.UTF-8"]


class _Connection:
    """The options side of Ansible's ssh connection, noting whether it would ask for a terminal."""

    def __init__(self, use_tty: bool | None) -> None:
        self.options = {} if use_tty is None else {"use_tty": use_tty}
        self.terminal_asked: list[bool] = []

    def has_option(self, name: str) -> bool:
        return name in self.options

    def get_option(self, name: str):
        return self.options[name]

    def set_option(self, name: str, value) -> None:
        self.options[name] = value


def test_a_read_runs_without_a_terminal_and_leaves_the_connection_as_it_was() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("platform_read_action", paths.ROOT / "plugins" / "action" /
                                                  "platform_read.py")
    action = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(action)

    class Reader:
        def __init__(self, connection: _Connection) -> None:
            self._connection = connection

        def _low_level_execute_command(self, line: str, sudoable: bool) -> dict:
            self._connection.terminal_asked.append(self._connection.options.get("use_tty", False))
            return {"rc": 0, "stdout": line, "stderr": ""}

    for use_tty in (True, False, None):
        connection = _Connection(use_tty)
        assert action.run_read(Reader(connection), "true")["stdout"] == "true"
        assert connection.terminal_asked == [False], "a terminal turns line ends into CRLF over ssh with become"
        assert connection.options.get("use_tty") is use_tty
