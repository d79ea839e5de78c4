"""The installer's command line: parsing, bad input (exit 4, one line, no traceback), inventory
resolution, and whole runs of the sample project on localhost through ansible-runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from platformctl import inventory, paths
from platformctl.cli import main, parse
from platformctl.errors import BadInput
from platformctl.events import RunState
from platformctl.runner import RUNS_KEPT, RunOptions, playbooks_left_running, run_playbook

LOCAL_HOSTS = """\
all:
  hosts:
    web-1:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
"""


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["check", "--inventory", "prod"],
    ["--inventory", "prod", "check"],
    ["-i", "prod", "check", "--limit", "db-1"],
])
def test_inventory_before_or_after_the_command(argv):
    args = parse(argv)
    assert (args.command, args.inventory) == ("check", "prod")


def test_no_command_means_install():
    assert parse(["--inventory", "local"]).command == "install"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--inventory", "nosuch"], "--inventory nosuch: unknown inventory; expected an environment in inventories/"),
    (["frobnicate", "-i", "local"], "invalid choice: 'frobnicate'"),
    (["check"], "the following arguments are required: -i/--inventory"),
    (["restore", "-i", "local"], "restore needs exactly one of --target-time"),
    (["restore", "-i", "local", "--target-time", "yesterday"], "expected 'YYYY-MM-DD HH:MM:SS+00'"),
    (["restore", "-i", "local", "--latest", "--drill"], "restore needs exactly one of --target-time"),
    (["verify", "-i", "local", "--drill"], "--drill go with the restore command"),
    (["verify", "-i", "local", "--rotate", "x"], "--rotate goes with the secrets command"),
    (["rollback", "-i", "local"], "rollback takes the name of one app"),
    (["check", "api", "-i", "local"], "api: only rollback takes an app"),
])
def test_bad_command_lines_exit_4_with_one_line(capsys, argv, expected):
    code, _, err = run_cli(capsys, *argv)
    assert code == 4
    assert expected in one_error_line(err)


def test_yaml_error_names_file_and_line(capsys, write_inventory):
    folder = write_inventory("all:\n  hosts:\n    web-1: {ansible_connection: local\n  children: [\n")
    code, _, err = run_cli(capsys, "--inventory", str(folder))
    line = one_error_line(err)
    assert code == 4
    assert f"{folder / 'hosts.yml'}:4:" in line and "invalid YAML" in line


def test_yaml_error_in_group_vars(capsys, write_inventory):
    folder = write_inventory(LOCAL_HOSTS, main="platform_domain: [unclosed\n")
    code, _, err = run_cli(capsys, "check", "--inventory", str(folder))
    assert code == 4
    assert "group_vars/all/main.yml:2:" in one_error_line(err)


def test_inventory_without_hosts(capsys, write_inventory):
    folder = write_inventory("all:\n  children:\n    app: {}\n")
    code, _, err = run_cli(capsys, "--inventory", str(folder))
    assert code == 4
    assert "defines no hosts" in one_error_line(err)


def test_environment_name_resolves_to_inventories_folder():
    local = inventory.resolve("local")
    assert local.path == paths.INVENTORIES / "local"
    assert local.hosts_file.name == "hosts.yml"


def test_folder_without_hosts_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match=r"no hosts\.yml or hosts\.yaml"):
        inventory.resolve(str(tmp_path))


def test_wrong_type_from_extra_vars_is_caught_before_any_host_is_touched(capsys, sample_project, write_inventory,
                                                                          tmp_path):
    folder = write_inventory(LOCAL_HOSTS, main=f"sample_dir: {tmp_path}\n")
    code, _, err = run_cli(capsys, "--inventory", str(folder), "-e", "sample_settings=notadict")
    assert code == 4
    assert one_error_line(err) == ("error: -e/--extra-vars: sample_settings: expected a dict, "
                                   "got a string 'notadict' (role sample)")
    assert not list(tmp_path.glob("*.conf")), "nothing may be changed on bad input"


def test_wrong_type_in_inventory_names_the_file(capsys, sample_project, write_inventory, tmp_path):
    folder = write_inventory(LOCAL_HOSTS, main=f"sample_dir: {tmp_path}\nsample_settings: [1, 2]\n")
    code, _, err = run_cli(capsys, "--inventory", str(folder))
    assert code == 4
    assert one_error_line(err).startswith(f"error: {folder / 'group_vars/all/main.yml'}: sample_settings: "
                                          "expected a dict, got a list [1, 2] (role sample)")


def test_mistyped_variable_name_gets_a_suggestion(capsys, sample_project, write_inventory, tmp_path):
    folder = write_inventory(LOCAL_HOSTS, main=f"sample_dir: {tmp_path}\nsample_contnet: hello\n")
    code, _, err = run_cli(capsys, "--inventory", str(folder))
    assert code == 4
    assert "sample_contnet: unknown variable of role sample; did you mean sample_content?" in one_error_line(err)


def test_install_then_reinstall_then_check(capsys, sample_project, write_inventory, tmp_path):
    """A whole install of the sample project on localhost: summary and JSON agree, rerun is clean."""
    work = tmp_path / "work"
    work.mkdir()
    folder = write_inventory(LOCAL_HOSTS, main=f"sample_dir: {work}\n")
    first = tmp_path / "first.json"
    code, out, _ = run_cli(capsys, "--inventory", str(folder), "--json", str(first))
    assert code == 0, out
    summary = json.loads(first.read_text())
    assert summary["hosts"]["web-1"]["changed"] == 1
    assert (work / "web-1.conf").read_text() == "managed by the sample role\n"
    assert "install: per host" in out and "Run log:" in out

    second = tmp_path / "second.json"
    code, _, _ = run_cli(capsys, "--inventory", str(folder), "--json", str(second))
    assert code == 0
    assert json.loads(second.read_text())["hosts"]["web-1"]["changed"] == 0

    (work / "web-1.conf").write_text("edited by hand\n")
    drift = tmp_path / "drift.json"
    code, out, _ = run_cli(capsys, "check", "--inventory", str(folder), "--json", str(drift))
    assert code == 2
    items = json.loads(drift.read_text())["drift"]
    assert [(i["host"], i["role"], i["task"]) for i in items] == [("web-1", "sample", "Write the sample file")]
    assert "-edited by hand" in items[0]["diff"]
    assert (work / "web-1.conf").read_text() == "edited by hand\n", "check must not repair"

    code, _, _ = run_cli(capsys, "--inventory", str(folder))
    assert code == 0
    code, _, _ = run_cli(capsys, "check", "--inventory", str(folder))
    assert code == 0


def test_tags_run_only_a_role_and_skip_tags_leave_it_out(capsys, sample_project, write_inventory, tmp_path):
    """installer.py --tags and --skip-tags reach the playbook: the role tagged `sample` runs
    alone (the untagged play beside it does not), then is left out (the untagged play runs,
    and the hand edit the role would repair stays)."""
    work = tmp_path / "work"
    work.mkdir()
    folder = write_inventory(LOCAL_HOSTS, main=f"sample_dir: {work}\nsample_untagged_dir: {work}\n")
    code, out, _ = run_cli(capsys, "--inventory", str(folder), "--tags", "sample")
    assert code == 0, out
    assert (work / "web-1.conf").read_text() == "managed by the sample role\n"
    assert not (work / "web-1.untagged").exists()
    (work / "web-1.conf").write_text("edited by hand\n")
    code, out, _ = run_cli(capsys, "--inventory", str(folder), "--skip-tags", "sample")
    assert code == 0, out
    assert (work / "web-1.conf").read_text() == "edited by hand\n"
    assert (work / "web-1.untagged").read_text() == "written by an untagged task\n"
    code, out, _ = run_cli(capsys, "--inventory", str(folder))
    assert code == 0, out
    assert (work / "web-1.conf").read_text() == "managed by the sample role\n"


def test_failed_preflight_exits_3_and_changes_nothing(capsys, sample_project, write_inventory, tmp_path):
    folder = write_inventory(LOCAL_HOSTS, main=f"sample_dir: {tmp_path / 'missing'}\n")
    code, out, _ = run_cli(capsys, "--inventory", str(folder))
    assert code == 3
    assert "is not a folder" in out
    assert not (tmp_path / "missing").exists()


def test_cancel_stops_a_running_playbook(sample_project, write_inventory):
    """What Ctrl-C does: the cancel event ends ansible-playbook and the outcome says interrupted.
    Cancelled once the slow task has started (not after a fixed time), with ansible-playbook
    seen running then: the check that none is left has something to find."""
    folder = write_inventory(LOCAL_HOSTS)
    cancel = threading.Event()
    running_when_cancelled: list[int] = []

    def cancel_once_started(event: dict) -> None:
        if event.get("event") == "runner_on_start" and not cancel.is_set():
            running_when_cancelled.extend(playbooks_left_running(folder / "hosts.yml"))
            cancel.set()

    outcome = run_playbook(Path(sample_project, "slow.yml"), folder / "hosts.yml", RunOptions(), RunState(),
                           run_id="test-cancel", cancel=cancel, on_event=cancel_once_started)
    assert running_when_cancelled, "ansible-playbook was running when the run was cancelled"
    assert outcome.interrupted
    assert outcome.status == "canceled"
    # Ansible's worker runs in a session of its own, out of reach of ansible-runner's kill.
    assert playbooks_left_running(folder / "hosts.yml") == []


def test_the_runs_folder_keeps_the_newest_runs(sample_project, write_inventory, tmp_path):
    """Each run rotates runs/: the RUNS_KEPT newest folders stay, this run's among them."""
    folder = write_inventory(LOCAL_HOSTS)
    runs = tmp_path / "runs"
    for number in range(RUNS_KEPT + 5):
        old = runs / f"20260101-0000{number:02d}-install-1"
        old.mkdir(parents=True)
        os.utime(old, (1_700_000_000 + number, 1_700_000_000 + number))
    playbook = tmp_path / "facts.yml"
    playbook.write_text(FACTS_AND_CONFIG)
    task_results(playbook, folder, RunOptions(), "20261201-000000-install-2")
    kept = sorted(path.name for path in runs.iterdir())
    assert len(kept) == RUNS_KEPT, kept
    assert "20261201-000000-install-2" in kept
    assert kept[0] == f"20260101-0000{6:02d}-install-1", "the six oldest went"


FACTS_AND_CONFIG = """\
- name: Facts, and a setting the run was given
  hosts: all
  gather_facts: true
  tasks:
    - name: Say whether host keys are checked
      ansible.builtin.debug:
        msg: "host_key_checking={{ lookup('ansible.builtin.config', 'HOST_KEY_CHECKING') }}"
"""


def task_results(playbook: Path, folder: Path, options: RunOptions, run_id: str) -> dict[str, dict]:
    results: dict[str, dict] = {}

    def keep(event: dict) -> None:
        if event.get("event") == "runner_on_ok":
            results[event["event_data"]["task"]] = event["event_data"]["res"]

    outcome = run_playbook(playbook, folder / "hosts.yml", options, RunState(), run_id=run_id, on_event=keep)
    assert outcome.rc == 0
    return results


def test_the_runs_of_one_command_gather_facts_once_and_check_host_keys(sample_project, write_inventory, tmp_path):
    folder = write_inventory(LOCAL_HOSTS)
    playbook = tmp_path / "facts.yml"
    playbook.write_text(FACTS_AND_CONFIG)
    options = RunOptions(fact_cache=tmp_path / "facts")
    first = task_results(playbook, folder, options, "test-facts-1")
    second = task_results(playbook, folder, options, "test-facts-2")
    assert "Gathering Facts" in first and "Gathering Facts" not in second
    # ansible-runner would turn it off; SSH must refuse a host whose key changed.
    assert first["Say whether host keys are checked"]["msg"] == "host_key_checking=True"


def test_a_second_run_on_the_same_inventory_is_refused(capsys, sample_project, write_inventory, tmp_path):
    from platformctl.cli import exclusive

    folder = write_inventory(LOCAL_HOSTS, main=f"sample_dir: {tmp_path}\n")
    with exclusive(inventory.resolve(str(folder))):
        code, _, err = run_cli(capsys, "--inventory", str(folder))
    assert code == 1
    assert "another installer.py run uses this inventory (pid " in one_error_line(err)
    assert not list(tmp_path.glob("*.conf"))
    locks = list(paths.lock_dir().glob(f"{folder.name}-*.lock"))
    assert locks and all(lock.stat().st_mode & 0o077 == 0 for lock in locks)
    assert not str(paths.lock_dir()).startswith(tempfile.gettempdir())


def test_a_playbook_left_by_a_killed_installer_is_named_and_blocks_a_new_run(capsys, sample_project, write_inventory,
                                                                            tmp_path):
    """A killed installer.py leaves ansible-playbook running; the next run must not work beside it."""
    folder = write_inventory(LOCAL_HOSTS, main=f"sample_dir: {tmp_path}\n")
    hosts = str(inventory.resolve(str(folder)).hosts_file)
    # Stands in for the orphan: a process with ansible-playbook's command line on this inventory.
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ansible-playbook", "-i", hosts])
    try:
        code, _, err = run_cli(capsys, "--inventory", str(folder))
    finally:
        orphan.kill()
        orphan.wait()
    assert code == 1
    assert f"ansible-playbook (pid {orphan.pid}) of an earlier installer.py run" in one_error_line(err)
    assert not list(tmp_path.glob("*.conf"))
    code, _, _ = run_cli(capsys, "--inventory", str(folder))
    assert code == 0


def test_restore_prints_and_records_what_it_restored_to(capsys, sample_project, write_inventory, tmp_path):
    """restore.yml's restore_report fact reaches the output and --json (sample restore.yml on localhost)."""
    folder = write_inventory(LOCAL_HOSTS)
    summary = tmp_path / "restore.json"
    code, out, _ = run_cli(capsys, "restore", "--inventory", str(folder), "--target-time", "2026-01-31 14:05:00+00",
                           "--yes", "--json", str(summary))
    assert code == 0, out
    assert "Restored web-1 to 2026-01-31 14:05:00+00." in out
    restored = json.loads(summary.read_text())["restored"]
    assert restored == {"web-1": {"target": "2026-01-31 14:05:00+00", "timeline": 2,
                                  "summary": "Restored web-1 to 2026-01-31 14:05:00+00."}}


def test_backup_prints_and_records_each_hosts_snapshot_of_the_files(capsys, sample_project, write_inventory,
                                                                    tmp_path):
    """backup: the backup role's backup_files_report in the output and --json (sample backup.yml)."""
    folder = write_inventory(LOCAL_HOSTS)
    summary = tmp_path / "backup.json"
    code, out, _ = run_cli(capsys, "backup", "--inventory", str(folder), "--json", str(summary))
    assert code == 0, out
    assert "web-1: files backed up as snapshot 0069c74d in s3:https://s3.test/b/files/web-1" in out
    files = json.loads(summary.read_text())["files"]
    assert files["web-1"]["snapshot"] == "0069c74d" and files["web-1"]["files"] == 1200


@pytest.mark.parametrize("fails", [False, True], ids=["passed", "failed"])
def test_restore_drill_prints_and_records_each_hosts_drill(capsys, sample_project, write_inventory, tmp_path, fails):
    """restore --drill: the drill's figures (postgresql_restore_drill_report) in the output and
    --json, passed or failed; a failed drill exits 1 (sample restore_drill.yml on localhost)."""
    folder = write_inventory(LOCAL_HOSTS)
    summary = tmp_path / "drill.json"
    code, out, _ = run_cli(capsys, "restore", "--drill", "--inventory", str(folder), "-e", f"drill_fails={fails}",
                           "--json", str(summary))
    drill = json.loads(summary.read_text())["drills"]["web-1"]
    if fails:
        assert code == 1, out
        assert drill["status"] == "failed"
        assert "web-1: restore drill failed: no heartbeat row" in out
    else:
        assert code == 0, out
        assert drill == {"status": "ok", "repo": 2, "restore_seconds": 5.7, "recovery_point_seconds": 94.6,
                         "summary": "web-1: restored the newest backup of repository 2 in 5.7 s"}
        assert "web-1: restored the newest backup of repository 2 in 5.7 s" in out


ROLLBACK_APPS = "platform_apps: [{name: api, image: 'registry.example.com/acme/api:2'}]\n"


def test_rollback_says_what_it_did_and_what_the_inventory_still_names(capsys, sample_project, write_inventory,
                                                                     tmp_path):
    folder = write_inventory(LOCAL_HOSTS, main=ROLLBACK_APPS)
    summary = tmp_path / "rollback.json"
    code, out, _ = run_cli(capsys, "rollback", "api", "--inventory", str(folder), "--yes", "--json", str(summary))
    assert code == 0, out
    assert "api is back on registry.example.com/acme/api:1 on web-1." in out
    assert ("The inventory still names registry.example.com/acme/api:2 (platform_apps[api].image): set it to "
            "registry.example.com/acme/api:1 there") in " ".join(out.split())
    assert json.loads(summary.read_text())["rolled_back"]["web-1"]["image"] == "registry.example.com/acme/api:1"


def test_rollback_of_an_unknown_app_names_the_nearest(capsys, sample_project, write_inventory):
    folder = write_inventory(LOCAL_HOSTS, main=ROLLBACK_APPS)
    code, _, err = run_cli(capsys, "rollback", "apii", "--inventory", str(folder), "--yes")
    assert code == 4
    assert "rollback apii: no such app in platform_apps; did you mean api?" in one_error_line(err)


def test_refused_restore_exits_1_with_the_reason_and_restores_nothing(capsys, sample_project, write_inventory,
                                                                       tmp_path):
    folder = write_inventory(LOCAL_HOSTS)
    summary = tmp_path / "restore.json"
    code, out, _ = run_cli(capsys, "restore", "--inventory", str(folder), "--target-time", "2000-01-01 00:00:00+00",
                           "--yes", "--json", str(summary))
    assert code == 1
    # One message (shown as it happens and again in the end summary), not one per step.
    refusals = {line.strip() for line in out.splitlines() if "Cannot restore to" in line}
    assert len(refusals) == 1, out
    assert "Restored" not in out
    document = json.loads(summary.read_text())
    assert document["restored"] == {}
    assert [f["message"] for f in document["failures"]] == [
        "Cannot restore to 2000-01-01 00:00:00+00: the backups cover 2001 to now. Nothing was stopped or changed."]


def test_the_summary_says_to_keep_the_vault_password_off_the_platform(tmp_path):
    """The encrypted backups' passphrases are in the vault: losing the hosts must not lose its password."""
    from types import SimpleNamespace

    from platformctl import cli

    vault, password = tmp_path / "secrets.yml", tmp_path / "vault.pass"
    vault.write_text("$ANSIBLE_VAULT;1.1;AES256\n")
    session = SimpleNamespace(
        args=SimpleNamespace(inventory="prod"),
        loaded=SimpleNamespace(hosts=lambda group="all": [], host_vars=lambda host: {}),
        roles={},
        store=SimpleNamespace(file=vault, password_file=password),
        inventory=SimpleNamespace(display_path=str))
    steps = cli.next_steps(session)
    assert any(step.startswith(f"Keep a copy of {password} off the platform's hosts") for step in steps), steps


def test_the_summary_warns_of_backups_kept_only_on_the_host_they_protect(tmp_path):
    """Without an off-site repository, losing the database host loses its backups too."""
    from types import SimpleNamespace

    from platformctl import cli

    groups = {"postgres": ["db-1", "db-2"], "redis": ["db-1"], "all": ["db-1", "db-2", "app-1", "app-2"]}
    settings = {"db-2": {"postgresql_pgbackrest_s3_enabled": True}, "app-2": {"backup_s3_enabled": "true"}}
    session = SimpleNamespace(
        args=SimpleNamespace(inventory="prod"),
        loaded=SimpleNamespace(hosts=lambda group="all": groups.get(group, []),
                               host_vars=lambda host: settings.get(host, {})),
        roles={host: {"common", "backup"} for host in groups["all"]},
        store=SimpleNamespace(file=tmp_path / "absent.yml", password_file=tmp_path / "vault.pass"),
        inventory=SimpleNamespace(display_path=str))
    warnings = [step for step in cli.next_steps(session) if step.startswith("Warning:")]
    assert warnings == [
        "Warning: db-1 keeps its only PostgreSQL backups on itself (/var/lib/pgbackrest): losing the host loses "
        "them. Add a backup repository host (group backup) or an off-site repository "
        "(postgresql_pgbackrest_s3_enabled and its settings).",
        "Warning: db-1, app-1 keep the backups of their files (configuration, Redis snapshots, app volumes) on "
        "themselves (/var/lib/platform-backup/repository): losing a host loses them. Add a backup repository "
        "host (group backup) or an S3 store (backup_s3_enabled and its settings, or PostgreSQL's off-site "
        "repository).",
    ]

    # A backup repository host holds PostgreSQL's backups and the other hosts' files; its own
    # files stay on it without a store.
    groups["backup"] = ["backup-1"]
    groups["all"].append("backup-1")
    session.roles["backup-1"] = {"common", "backup", "backup_repository"}
    warnings = [step for step in cli.next_steps(session) if step.startswith("Warning:")]
    assert warnings == [
        "Warning: backup-1 keeps the backups of their files (configuration, Redis snapshots, app volumes) on "
        "itself (/var/lib/platform-backup/repository): losing a host loses them. Add a backup repository "
        "host (group backup) or an S3 store (backup_s3_enabled and its settings, or PostgreSQL's off-site "
        "repository).",
    ]
