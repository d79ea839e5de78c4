"""Which roles' drift items an install clears (roles/monitoring/vars/main.yml,
__monitoring_repaired_roles), rendered by real ansible-playbook as runs tag it: a whole run
clears every role, a run with --tags only the roles it names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from platformctl import paths

PLAYBOOK = """
- hosts: all
  gather_facts: false
  vars_files: [{vars_file}]
  tasks:
    - name: Show the pattern
      ansible.builtin.debug:
        msg: "PATTERN={{{{ __monitoring_repaired_roles }}}}"
      tags: [always]
"""
REPORT = "\n".join(f'platform_drift_items{{role="{role}"}} 1' for role in ("monitoring", "nginx", "(plays)"))


@pytest.mark.parametrize(("tags", "cleared"), [
    ([], {"monitoring", "nginx", "(plays)"}),
    (["--tags", "monitoring"], {"monitoring"}),
    (["--tags", "monitoring,nginx"], {"monitoring", "nginx"}),
])
def test_the_roles_a_run_covers_are_the_ones_it_clears(tmp_path: Path, tags: list[str], cleared: set[str]) -> None:
    (tmp_path / "site.yml").write_text(PLAYBOOK.format(vars_file=paths.ROLES / "monitoring" / "vars" / "main.yml"))
    env = dict(os.environ, ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                          *tags, str(tmp_path / "site.yml")], env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    message = json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    pattern = message.removeprefix("PATTERN=")
    # As the role's replace task applies it.
    regexp = re.compile(rf'^(platform_drift_items\{{role="{pattern}"\}}) [1-9][0-9]*$', re.MULTILINE)
    assert set(re.findall(r'role="([^"]*)"\} 0', regexp.sub(r"\1 0", REPORT))) == cleared
