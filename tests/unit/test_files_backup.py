"""The backup role's program (roles/backup/files/files-backup) and how the monitoring role's
host collector publishes its result: the parts that need no repository, with restic's
answers given by the test. restic itself runs in the pitr and monitoring scenarios."""

from __future__ import annotations

import json
import subprocess

import pytest
from programs import load

from platformctl import paths

files_backup = load("files_backup", paths.ROOT / "roles" / "backup" / "files" / "files-backup")
host_metrics = load("host_metrics", paths.ROOT / "roles" / "monitoring" / "files" / "host_metrics.py")

MISSING = "Fatal: unable to open config file: Stat: The specified key does not exist.\nIs there a repository at..."


@pytest.fixture
def settings(monkeypatch, tmp_path):
    for name, value in {"RESTIC_REPOSITORY": "s3:https://s3.test:9000/bucket/files/db-1", "BACKUP_HOST": "db-1",
                        "BACKUP_PATHS_FILE": str(tmp_path / "paths"), "BACKUP_RESULT": str(tmp_path / "result.json"),
                        "BACKUP_KEEP_LAST": "48", "BACKUP_KEEP_DAYS": "30"}.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def answers(monkeypatch, replies: dict[str, tuple[int, str, str]]) -> list[list[str]]:
    """restic answers each command (its first word) with (rc, stdout, stderr); returns the calls."""
    calls = []

    def restic(*args):
        calls.append(list(args))
        rc, out, err = replies[next(word for word in args if not word.startswith("-"))]
        return subprocess.CompletedProcess(["restic", *args], rc, out, err)

    monkeypatch.setattr(files_backup, "restic", restic)
    return calls


def test_a_repository_host_is_reached_with_the_roles_ssh_command(settings, monkeypatch):
    """restic's sftp backend runs the role's ssh command (its key, its known_hosts); restic
    reads -o values as CSV, so the command must hold no comma or quote."""
    command = ("ssh -i /etc/platform/backup/ssh_key -o IdentitiesOnly=yes -o BatchMode=yes "
               "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/platform/backup/known_hosts "
               "pf-db-1@backup-1 -s sftp")
    assert files_backup.restic_options() == []
    monkeypatch.setenv("BACKUP_SFTP_COMMAND", command)
    assert files_backup.restic_options() == ["-o", f"sftp.command={command}"]
    assert not {",", '"'} & set(command)


def test_settings_are_read_as_sh_quotes_them(monkeypatch, tmp_path):
    """The role writes each value as sh quotes it (systemd reads the file too): a command with
    spaces is one value, a plain one stays as it is."""
    for name in ("RESTIC_REPOSITORY", "BACKUP_SFTP_COMMAND", "BACKUP_HOST", "BACKUP_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings_file = tmp_path / "restic.env"
    settings_file.write_text("# Ansible managed\nRESTIC_REPOSITORY=sftp:pf-db-1@backup-1:/repository\n"
                             "BACKUP_SFTP_COMMAND='ssh -i /key pf-db-1@backup-1 -s sftp'\nBACKUP_HOST=db-1\n"
                             "BACKUP_CA_FILE=''\n")
    monkeypatch.setattr(files_backup, "SETTINGS", settings_file)
    files_backup.load_settings()
    assert files_backup.os.environ["BACKUP_SFTP_COMMAND"] == "ssh -i /key pf-db-1@backup-1 -s sftp"
    assert files_backup.os.environ["RESTIC_REPOSITORY"] == "sftp:pf-db-1@backup-1:/repository"
    assert files_backup.os.environ["BACKUP_CA_FILE"] == ""


def test_a_repository_is_created_only_where_there_is_none(settings, monkeypatch):
    calls = answers(monkeypatch, {"cat": (0, "{}", ""), "init": (0, "", "")})
    assert files_backup.ensure_repository() == "exists"
    assert calls == [["--no-lock", "cat", "config"]], "reading the repository takes no lock"

    calls = answers(monkeypatch, {"cat": (1, "", MISSING), "init": (0, "created restic repository", "")})
    assert files_backup.ensure_repository() == "created"
    assert [call[-1] for call in calls] == ["config", "init"]


@pytest.mark.parametrize("reason", ["Fatal: wrong password or no key found",
                                    "Fatal: unable to open repository: connection refused"])
def test_a_repository_that_does_not_open_is_never_replaced(settings, monkeypatch, reason):
    """A wrong password or an unreachable store is an error, not a missing repository."""
    calls = answers(monkeypatch, {"cat": (1, "", reason), "init": (0, "", "")})
    with pytest.raises(files_backup.BackupError, match=f"cannot open the repository s3:.*: {reason}"):
        files_backup.ensure_repository()
    assert calls == [["--no-lock", "cat", "config"]]


def test_a_backup_keeps_what_exists_then_forgets_by_count_and_by_days(settings, monkeypatch):
    present = settings / "etc"
    present.mkdir()
    (settings / "paths").write_text(f"# managed\n{present}\n{settings / 'absent'}\n\n")
    summary = {"message_type": "summary", "snapshot_id": "0069c74d", "total_files_processed": 3,
               "total_bytes_processed": 52, "data_added": 1091}
    stdout = '{"message_type":"status","percent_done":1}\n' + json.dumps(summary) + "\n"
    calls = answers(monkeypatch, {"cat": (0, "", ""), "backup": (0, stdout, ""), "forget": (0, "", "")})
    assert files_backup.main([]) == 0
    backup, forget = calls[1], calls[2]
    assert backup[-1] == str(present) and str(settings / "absent") not in backup
    assert backup[backup.index("--host") + 1] == "db-1"
    assert forget == ["forget", "--host", "db-1", "--group-by", "host", "--keep-last", "48",
                      "--keep-within-daily", "30d", "--prune", "--quiet"]
    result = json.loads((settings / "result.json").read_text())
    assert result["status"] == "ok" and result["snapshot"] == "0069c74d" and result["files"] == 3
    assert result["skipped"] == [str(settings / "absent")]
    assert result["last_success"] == result["finished"] and result["pruned"] == result["started"]

    # The next run within the day forgets without pruning.
    assert files_backup.main([]) == 0
    assert "--prune" not in calls[-1]
    assert json.loads((settings / "result.json").read_text())["pruned"] == result["pruned"]


def test_a_backup_never_creates_a_missing_repository(settings, monkeypatch):
    """A store emptied or a disk not mounted: the backup fails, and no new repository hides it."""
    (settings / "paths").write_text(f"{settings}\n")
    calls = answers(monkeypatch, {"cat": (1, "", MISSING), "init": (0, "", "")})
    assert files_backup.main([]) == 1
    assert [call[-1] for call in calls] == ["config"]
    result = json.loads((settings / "result.json").read_text())
    assert result["status"] == "failed"
    assert result["message"] == ("no repository at s3:https://s3.test:9000/bucket/files/db-1; the install creates one "
                                 "(installer.py --tags backup) where there is none")


def test_a_failed_backup_is_recorded_and_keeps_the_last_success(settings, monkeypatch, capsys):
    (settings / "result.json").write_text(json.dumps({"status": "ok", "finished": 100.0, "last_success": 100.0}))
    answers(monkeypatch, {"cat": (1, "", "Fatal: wrong password or no key found")})
    assert files_backup.main([]) == 1
    result = json.loads((settings / "result.json").read_text())
    assert result["status"] == "failed" and result["last_success"] == 100.0
    assert "wrong password" in result["message"]
    assert "files backup failed: cannot open the repository" in capsys.readouterr().err


def test_restic_without_a_summary_is_a_failure(settings, monkeypatch):
    (settings / "paths").write_text(f"{settings}\n")
    answers(monkeypatch, {"cat": (0, "", ""), "backup": (0, '{"message_type":"status"}\n', "")})
    assert files_backup.main([]) == 1
    assert json.loads((settings / "result.json").read_text())["message"] == "restic printed no summary of the backup"


def published(result) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in host_metrics.files_backup(result).splitlines())


def test_the_collector_publishes_the_last_backup_and_nothing_before_the_first(tmp_path):
    result = tmp_path / "result.json"
    assert published(result) == {}
    result.write_text(json.dumps({"status": "failed", "message": "x", "finished": 300.5, "last_success": 200.0}))
    assert published(result) == {
        "platform_files_backup_success{}": "0",
        "platform_files_backup_last_run_timestamp_seconds{}": "300.5",
        "platform_files_backup_last_success_timestamp_seconds{}": "200.0",
    }
    result.write_text(json.dumps({"status": "ok", "finished": 400.0, "last_success": 400.0, "seconds": 2.5,
                                  "files": 1200, "bytes_added": 4096}))
    assert published(result)["platform_files_backup_files{}"] == "1200"
    assert published(result)["platform_files_backup_bytes_added{}"] == "4096"
