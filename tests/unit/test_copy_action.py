"""The local copy action (plugins/action/copy.py) that saves a template already in place both
module runs, through real ansible-playbook with the repository's ansible.cfg: a rerun runs no
stat or file module, and drift in content, mode or owner is still found and repaired, in check
mode only reported."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from platformctl import paths

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "action" / "copy.py"
_spec = importlib.util.spec_from_file_location("platform_copy_action", _PLUGIN)
action = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(action)

STAT = {"exists": True, "isreg": True, "islnk": False, "pw_name": "root", "gr_name": "adm", "uid": 0, "gid": 4,
        "mode": "0640"}
ARGS = {"dest": "/etc/x.conf", "_original_basename": "x.conf.j2", "recurse": False, "state": "file"}


@pytest.mark.parametrize(("wanted", "in_place"), [
    ({}, True),
    ({"owner": "root", "group": "adm", "mode": "0640"}, True),
    ({"owner": 0, "group": "4", "mode": 0o640}, True),
    ({"mode": "640"}, True),
    ({"mode": "0644"}, False),
    ({"owner": "postgres"}, False),
    ({"group": "root"}, False),
    ({"mode": "u=rw,g=r"}, False),
    ({"attributes": "+i"}, False),
    ({"setype": "etc_t"}, False),
])
def test_only_attributes_a_stat_shows_in_place_skip_the_file_module(wanted: dict, in_place: bool) -> None:
    assert action.attributes_in_place({**ARGS, **wanted}, STAT) is in_place


@pytest.mark.parametrize("stat", [{**STAT, "islnk": True}, {**STAT, "isreg": False}, {**STAT, "exists": False}])
def test_links_directories_and_missing_files_go_to_the_file_module(stat: dict) -> None:
    assert not action.attributes_in_place(ARGS, stat)


PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.template:
        src: settings.j2
        dest: "{{ dest }}"
        mode: "0640"
"""


def _template(tmp_path: Path, *extra: str) -> tuple[str, int]:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "settings.j2").write_text("{{ ansible_managed | comment }}\nport = 5432\n")
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="0")
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
         "-e", f"dest={tmp_path / 'settings.conf'}", "-e", f"ansible_python_interpreter={sys.executable}",
         *extra, str(tmp_path / "site.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    changed = int(run.stdout.split("changed=")[-1].split()[0])
    return run.stdout, changed


def test_a_template_in_place_costs_no_module_run_and_drift_is_still_repaired(tmp_path: Path) -> None:
    conf = tmp_path / "settings.conf"
    _, changed = _template(tmp_path)
    assert changed == 1 and conf.stat().st_mode & 0o777 == 0o640

    rerun, changed = _template(tmp_path)
    assert changed == 0
    assert "AnsiballZ_stat.py" not in rerun, "the destination was read by the stat module, not the shell read"
    assert "AnsiballZ_file.py" not in rerun, "the file module ran for a file already in place"

    conf.chmod(0o644)
    _, changed = _template(tmp_path, "--check")
    assert changed == 1 and conf.stat().st_mode & 0o777 == 0o644, "check mode must report the mode, not fix it"
    repair, changed = _template(tmp_path)
    assert changed == 1 and conf.stat().st_mode & 0o777 == 0o640
    assert "AnsiballZ_file.py" in repair

    conf.write_text("port = 6543\n")
    _, changed = _template(tmp_path)
    assert changed == 1 and "port = 5432" in conf.read_text()
