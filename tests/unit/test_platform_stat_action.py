"""The platform_stat action (plugins/action/platform_stat.py): ansible.builtin.stat's answer
from one shell command, through real ansible-playbook with the repository's ansible.cfg. For
a file, a folder, a link and a path that does not exist it gives the keys the roles read with
the values core's stat module gives, and no module runs on the host."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from platformctl import paths

KEYS = ["exists", "isreg", "isdir", "islnk", "mode", "uid", "gid", "pw_name", "gr_name", "writeable", "checksum",
        "lnk_source"]

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Read with platform_stat
      platform_stat:
        path: "{{ root }}/{{ item }}"
      loop: [file, folder, link, none]
      register: ours

    - name: Read with core's stat
      ansible.builtin.stat:
        path: "{{ root }}/{{ item }}"
        follow: false
      loop: [file, folder, link, none]
      register: core

    - name: Read without the checksum
      platform_stat:
        path: "{{ root }}/file"
        get_checksum: false
      register: unsummed

    - name: Show both
      ansible.builtin.debug:
        msg: "RESULTS {{ {'ours': ours.results | map(attribute='stat'), 'core': core.results | map(attribute='stat'),
          'unsummed': unsummed.stat, 'changed': ours.changed} | to_json }} END"
"""


def test_platform_stat_answers_as_core_stat_without_a_module_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "folder").mkdir(parents=True)
    (root / "file").write_text("port = 5432\n")
    (root / "file").chmod(0o640)
    (root / "link").symlink_to(root / "file")
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
         "-e", f"root={root}", "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "site.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    quoted = re.search(r'"msg": "RESULTS (.*) END"', run.stdout)
    assert run.returncode == 0 and quoted, run.stdout[-3000:]
    results = json.loads(json.loads(f'"{quoted.group(1)}"'))
    for ours, core in zip(results["ours"], results["core"]):
        assert {key: ours.get(key) for key in KEYS} == {key: core.get(key) for key in KEYS}
        assert ours.get("mtime") == pytest.approx(core.get("mtime"), abs=1e-5), "mtime, to the microsecond"
    assert "checksum" not in results["unsummed"] and results["unsummed"]["isreg"]
    assert results["changed"] is False
    ran = [line.rsplit("/", 1)[-1] for line in run.stdout.splitlines() if line.startswith("Using module file ")]
    assert ran == ["stat.py"] * 4, f"only core's stat, once per path, may run a module: {ran}"
