"""The platform_files action (plugins/action/platform_files.py): a role's files, folders and
removals with one remote read, through real ansible-playbook with the repository's
ansible.cfg. A rerun runs one shell command and no module; drift in content, mode and
folders is found and repaired (in check mode only reported); validation still guards the
write."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from platformctl import paths

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


action = _load("platform_files_action", PLUGINS / "action" / "platform_files.py")
states = _load("platform_file_states_module", PLUGINS / "modules" / "platform_file_states.py")

FOLDER = {"exists": True, "isreg": False, "isdir": True, "islnk": False, "pw_name": "root", "gr_name": "adm",
          "uid": 0, "gid": 4, "mode": "0750"}


@pytest.mark.parametrize(("entry", "state", "expected"), [
    ({"state": "directory", "owner": "root", "group": "adm", "mode": "0750"}, FOLDER, True),
    ({"state": "directory", "owner": 0, "group": "4", "mode": "750"}, FOLDER, True),
    ({"state": "directory"}, FOLDER, True),
    ({"state": "directory", "mode": "0755"}, FOLDER, False),
    ({"state": "directory", "owner": "postgres"}, FOLDER, False),
    ({"state": "directory", "mode": "u=rwx,g=rx"}, FOLDER, False),
    ({"state": "directory"}, {**FOLDER, "islnk": True}, False),
    ({"state": "directory"}, {"exists": False}, False),
    ({"state": "absent"}, {"exists": False}, True),
    ({"state": "absent"}, FOLDER, False),
])
def test_a_folder_or_removal_in_place_needs_no_module_run(entry: dict, state: dict, expected: bool) -> None:
    assert action.in_place(entry, state) is expected


def test_the_reading_module_reports_files_folders_links_and_absent_paths(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"port = 5432\n")
    (tmp_path / "file").chmod(0o640)
    (tmp_path / "link").symlink_to(tmp_path / "file")
    file, folder, link, absent = (states.state_of(str(tmp_path / name)) for name in ("file", ".", "link", "none"))
    assert file["isreg"] and file["mode"] == "0640" and file["uid"] == os.getuid()
    assert file["checksum"] == hashlib.sha1(b"port = 5432\n").hexdigest()  # noqa: S324  (Ansible's checksum)
    assert folder["isdir"] and "checksum" not in folder
    assert link["islnk"] and not link["isreg"] and "checksum" not in link
    assert link["lnk_source"] == str(tmp_path / "file")
    assert absent == {"exists": False}
    paths = [str(tmp_path / name) for name in ("file", ".", "link", "none")]
    command = action.read_states_command(paths)
    read = subprocess.run(command, shell=True, capture_output=True, text=True, check=True)  # noqa: S602  (the action's)
    assert action.parsed_states(paths, read.stdout) == {path: states.state_of(path) for path in paths}, \
        "the shell read and the module disagree"
    assert states.content_of(str(tmp_path / "file")) == "port = 5432\n"
    assert states.content_of(str(tmp_path / "none")) is None


PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: The files
      platform_files:
        files:
          - {dest: "{{ root }}/conf.d", state: directory, mode: "0750"}
          - dest: "{{ root }}/conf.d/settings.conf"
            template: settings.j2
            mode: "0640"
            validate: "grep -q '^port = [0-9]*$' %s"
          - {dest: "{{ root }}/conf.d/motd", content: "hello\\n", mode: "0644"}
          - {dest: "{{ root }}/conf.d/banner", src: banner.txt, mode: "0644"}
          - {dest: "{{ root }}/stale.conf", state: absent}
      notify: Restart
      register: written

    - name: Say which entries changed
      ansible.builtin.debug:
        msg: "CHANGED {{ written.files | selectattr('changed') | map(attribute='dest') | map('basename') | join(',') }}"
  handlers:
    - name: Restart
      ansible.builtin.debug:
        msg: handler ran
"""


def _play(tmp_path: Path, *extra: str, port: str = "5432", playbook: str = PLAYBOOK,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "settings.j2").write_text("{{ ansible_managed | comment }}\nport = {{ listen_port }}\n")
    (tmp_path / "files").mkdir(exist_ok=True)
    (tmp_path / "files" / "banner.txt").write_text("authorised use only\n")
    (tmp_path / "site.yml").write_text(playbook)
    env = dict(os.environ, ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_NOCOLOR="1", **(env or {}))
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
         "-e", f"root={tmp_path / 'etc'}", "-e", f"listen_port={port}",
         "-e", f"ansible_python_interpreter={sys.executable}", *extra, str(tmp_path / "site.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)


def _entries_changed(run: subprocess.CompletedProcess) -> list[str]:
    """The names of the entries that changed, as the playbook's debug task says them."""
    return run.stdout.split("CHANGED ", 1)[1].split('"', 1)[0].split("\n", 1)[0].split(",")


def _changed(run: subprocess.CompletedProcess) -> int:
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return int(run.stdout.split("changed=")[-1].split()[0])


def test_a_rerun_reads_every_path_once_and_drift_is_repaired(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    first = _play(tmp_path)
    assert _changed(first) == 1 and "handler ran" in first.stdout
    assert (etc / "conf.d").stat().st_mode & 0o777 == 0o750
    assert (etc / "conf.d" / "settings.conf").read_text().endswith("port = 5432\n")

    rerun = _play(tmp_path)
    assert _changed(rerun) == 0 and "handler ran" not in rerun.stdout
    ran = [line.rsplit("/", 1)[-1] for line in rerun.stdout.splitlines() if line.startswith("Using module file ")]
    assert ran == [], f"a rerun with nothing to change ran {ran}"
    assert "ansible-tmp-" not in rerun.stdout, "a rerun with nothing to write made a temporary folder on the host"

    (etc / "conf.d").chmod(0o755)
    (etc / "stale.conf").write_text("left behind\n")
    (etc / "conf.d" / "motd").write_text("changed by hand\n")
    check = _play(tmp_path, "--check", "--diff")
    assert _changed(check) == 1 and "+hello" in check.stdout
    assert _entries_changed(check) == ["conf.d", "motd", "stale.conf"]
    assert (etc / "conf.d").stat().st_mode & 0o777 == 0o755 and (etc / "stale.conf").exists(), \
        "check mode must report drift, not repair it"
    repair = _play(tmp_path)
    assert _changed(repair) == 1 and _entries_changed(repair) == ["conf.d", "motd", "stale.conf"]
    assert (etc / "conf.d").stat().st_mode & 0o777 == 0o750 and not (etc / "stale.conf").exists()
    assert (etc / "conf.d" / "motd").read_text() == "hello\n"
    assert _changed(_play(tmp_path)) == 0


@pytest.mark.parametrize("output", ["", "-\n-\n", "81a4 0 0 root root 1.000000000 1 -\n",
                                    "zz 0 0 root root 1.000000000 1 -\n", "a1ff 0 0 root root 1.000000000 1 -\n",
                                    "41ed 0 0 root root 1 1 -\n", "81a4 0 0 root root ?\n"])
def test_a_read_that_does_not_hold_one_state_per_path_is_not_trusted(output: str) -> None:
    """Wrong line count, a regular file without its checksum, a bad mode, a link without target,
    a time without nanoseconds (a stat without %.9Y): the action reads with the module instead."""
    assert action.parsed_states(["/etc/motd"], output) is None


def test_a_host_without_gnu_stat_is_read_by_the_module(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "stat").write_text("#!/bin/sh\necho 'stat: unrecognized option -c' >&2\nexit 1\n")
    (tools / "stat").chmod(0o755)
    assert _changed(_play(tmp_path)) == 1
    rerun = _play(tmp_path, env={"PATH": f"{tools}:{os.environ['PATH']}"})
    assert _changed(rerun) == 0
    ran = [line.rsplit("/", 1)[-1] for line in rerun.stdout.splitlines() if line.startswith("Using module file ")]
    assert ran == ["platform_file_states.py"], ran


def test_a_file_that_fails_validation_is_not_written_and_is_named(tmp_path: Path) -> None:
    assert _changed(_play(tmp_path)) == 1
    (tmp_path / "etc" / "conf.d" / "motd").write_text("changed by hand\n")
    failed = _play(tmp_path, port="none")
    assert failed.returncode != 0
    assert "settings.conf: failed to validate" in " ".join(failed.stdout.split())
    assert (tmp_path / "etc" / "conf.d" / "settings.conf").read_text().endswith("port = 5432\n")
    assert (tmp_path / "etc" / "conf.d" / "motd").read_text() == "changed by hand\n", "entries after a failure ran"


def test_without_pipelining_files_are_written_and_a_rerun_leaves_no_temporary_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    off = {"ANSIBLE_PIPELINING": "0", "ANSIBLE_REMOTE_TMP": str(home / "tmp")}
    first = _play(tmp_path, env=off)
    assert _changed(first) == 1
    assert (tmp_path / "etc" / "conf.d" / "banner").read_text() == "authorised use only\n"
    assert _changed(_play(tmp_path, env=off)) == 0
    assert not any((home / "tmp").glob("ansible-tmp-*")), "a temporary folder was left on the host"


def test_an_entry_with_two_sources_is_refused(tmp_path: Path) -> None:
    two_sources = PLAYBOOK.replace("template: settings.j2", 'template: settings.j2\n            content: "x"')
    run = _play(tmp_path, playbook=two_sources)
    assert run.returncode != 0 and "a file takes one of template, src or content" in " ".join(run.stdout.split())


def test_entries_whose_condition_is_false_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "stale.conf").write_text("kept\n")
    run = _play(tmp_path, playbook=PLAYBOOK.replace("state: absent}", "state: absent, when: false}")
                .replace('content: "hello\\n",', 'content: "hello\\n", when: "{{ 1 > 2 }}",'))
    assert _changed(run) == 1
    assert (tmp_path / "etc" / "stale.conf").exists() and not (tmp_path / "etc" / "conf.d" / "motd").exists()
    assert (tmp_path / "etc" / "conf.d" / "settings.conf").exists()


def test_an_entry_notifies_its_own_handlers_only_when_it_changes(tmp_path: Path) -> None:
    per_entry = (PLAYBOOK.replace("      notify: Restart\n", "")
                 .replace('{dest: "{{ root }}/conf.d/motd", content: "hello\\n", mode: "0644"}',
                          '{dest: "{{ root }}/conf.d/motd", content: "hello\\n", mode: "0644", notify: [Restart]}')
                 .replace('template: settings.j2\n', 'template: settings.j2\n            notify: [Reload]\n')
                 + """    - name: Reload
      ansible.builtin.debug:
        msg: reload ran
""")
    first = _play(tmp_path, playbook=per_entry)
    assert _changed(first) == 1 and "handler ran" in first.stdout and "reload ran" in first.stdout
    assert _changed(_play(tmp_path, playbook=per_entry)) == 0
    (tmp_path / "etc" / "conf.d" / "motd").write_text("changed by hand\n")
    repair = _play(tmp_path, playbook=per_entry)
    assert "handler ran" in repair.stdout and "reload ran" not in repair.stdout, "an entry that did not change notified"
    task_notify = "      notify: Restart\n    - name: Say which"
    both = _play(tmp_path, playbook=per_entry.replace("    - name: Say which", task_notify))
    assert both.returncode != 0 and "notify goes on the task or on its entries, not both" in both.stdout


def test_a_vault_file_copied_with_decrypt_false_stays_encrypted(tmp_path: Path) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    password = tmp_path / "vault.pass"
    password.write_text("s3cret\n")
    encrypted = VaultLib([("default", VaultSecret(b"s3cret"))]).encrypt("token: in-the-clear\n").decode()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "secrets.yml").write_text(encrypted)
    banner = '{dest: "{{ root }}/conf.d/banner", src: banner.txt, mode: "0644"}'
    playbook = PLAYBOOK.replace(banner, banner + "\n"
                                '          - {dest: "{{ root }}/secrets.yml", src: secrets.yml, decrypt: false}\n'
                                '          - {dest: "{{ root }}/clear.yml", src: secrets.yml, mode: "0600"}')
    run = _play(tmp_path, "--vault-password-file", str(password), playbook=playbook)
    assert _changed(run) == 1
    assert (tmp_path / "etc" / "secrets.yml").read_text() == encrypted
    assert (tmp_path / "etc" / "clear.yml").read_text() == "token: in-the-clear\n", "core's copy decrypts by default"
    assert _changed(_play(tmp_path, "--vault-password-file", str(password), playbook=playbook)) == 0
