"""The restore drill's program (roles/postgresql/files/postgresql-restore-drill) and how the
monitoring role's host collector publishes its result: the parts that need no PostgreSQL
(settings, the result file, a failure's report). The drill itself runs in the pitr and
monitoring scenarios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from programs import load

from platformctl import paths

drill = load("restore_drill", paths.ROOT / "roles" / "postgresql" / "files" / "postgresql-restore-drill")
host_metrics = load("host_metrics", paths.ROOT / "roles" / "monitoring" / "files" / "host_metrics.py")


def test_settings_skip_comments_and_keep_equals_signs_in_values(tmp_path):
    file = tmp_path / "drill.env"
    file.write_text("# Ansible managed\nSTANZA=platform\nPG_CONFIG=/etc/postgresql/15/main/postgresql.conf\n"
                    "ODD=a=b\n\n")
    assert drill.settings(file) == {"STANZA": "platform", "PG_CONFIG": "/etc/postgresql/15/main/postgresql.conf",
                                    "ODD": "a=b"}


def test_a_pass_sets_the_last_success_and_a_failure_keeps_it(tmp_path):
    result = tmp_path / "state" / "drill.json"
    drill.record(result, {"status": "failed", "message": "no backup", "finished": 100.0})
    assert "last_success" not in json.loads(result.read_text())

    drill.record(result, {"status": "ok", "finished": 200.0})
    assert json.loads(result.read_text())["last_success"] == 200.0

    drill.record(result, {"status": "failed", "message": "no heartbeat", "finished": 300.0})
    written = json.loads(result.read_text())
    assert written == {"status": "failed", "message": "no heartbeat", "finished": 300.0, "last_success": 200.0}
    assert result.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in result.parent.iterdir()] == ["drill.json"]  # no temporary file left


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    cfg = {"STANZA": "platform", "REPO": "2", "PG_BIN": "/usr/lib/postgresql/15/bin", "PG_CONFIG": "/x",
           "DRILL_DIR": str(tmp_path / "scratch"), "DRILL_PORT": "5439", "DRILL_RESULT": str(tmp_path / "r.json"),
           "MAX_RECOVERY_POINT": "300", "TIMEOUT": "60"}
    monkeypatch.setattr(drill, "settings", lambda: cfg)
    monkeypatch.setattr(drill, "chown_postgres", lambda *paths: None)
    return cfg


def test_the_restored_copy_must_leave_a_tenth_of_the_file_system_free(tmp_path, monkeypatch):
    monkeypatch.setattr(drill, "disk_usage", lambda path: (100 * 10**9, 61 * 10**9))
    drill.check_space(tmp_path, 50 * 10**9)
    monkeypatch.setattr(drill, "disk_usage", lambda path: (100 * 10**9, 59 * 10**9))
    with pytest.raises(drill.DrillFailed, match=r"59.0 GB free; the newest backup needs 50.0 GB and 10.0 GB must "
                                                r"stay free \(set postgresql_restore_drill_dir"):
        drill.check_space(tmp_path, 50 * 10**9)


def test_too_little_space_fails_before_restoring(settings_file, monkeypatch, capsys):
    monkeypatch.setattr(drill, "newest_backup_size", lambda cfg: 50 * 10**9)
    monkeypatch.setattr(drill, "disk_usage", lambda path: (60 * 10**9, 2 * 10**9))
    restored = []
    monkeypatch.setattr(drill, "as_postgres", lambda *argv, **kw: restored.append(argv))

    assert drill.main() == 1

    result = json.loads(Path(settings_file["DRILL_RESULT"]).read_text())
    assert result["status"] == "failed" and result["repo"] == 2
    assert result["message"].startswith(f"{settings_file['DRILL_DIR']}/platform-restore-drill has 2.0 GB free")
    assert restored == []
    assert json.loads(capsys.readouterr().out) == result
    # The configured folder stays (it may be a mount point); only the drill's own is removed.
    assert Path(settings_file["DRILL_DIR"]).is_dir()


def test_the_scratch_server_is_isolated_on_its_command_line(tmp_path):
    """Settings given with -c win over the restored postgresql.auto.conf (ALTER SYSTEM)."""
    options = drill.server_options(tmp_path, tmp_path / "postgresql.conf", {"DRILL_PORT": "5439"})
    assert "-c listen_addresses='' " in options
    assert f"-c unix_socket_directories={tmp_path} " in options
    assert "-c port=5439 " in options and "-c archive_mode=off " in options


def test_a_failure_with_figures_reports_them(settings_file, monkeypatch):
    figures = {"databases": ["platform", "postgres"], "recovery_point_seconds": 3604.0, "restore_seconds": 5.1}
    monkeypatch.setattr(drill, "drill", lambda cfg, started: (_ for _ in ()).throw(
        drill.DrillFailed("the restored server's newest heartbeat is 3604 s older", figures)))

    assert drill.main() == 1

    result = json.loads(Path(settings_file["DRILL_RESULT"]).read_text())
    assert result["status"] == "failed"
    assert result["message"] == "the restored server's newest heartbeat is 3604 s older"
    assert result["recovery_point_seconds"] == 3604.0 and result["databases"] == ["platform", "postgres"]
    assert result["finished"] >= result["started"]


def published(result: Path) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in host_metrics.restore_drill(result).splitlines())


def test_the_collector_publishes_the_drill_and_only_its_schedule_before_the_first(tmp_path):
    result = tmp_path / "drill.json"
    assert published(result) == {"platform_restore_drill_scheduled{}": "1"}

    result.write_text(json.dumps({"status": "failed", "message": "x", "finished": 300.5, "last_success": 200.0,
                                  "recovery_point_seconds": 3604.0}))
    assert published(result) == {
        "platform_restore_drill_scheduled{}": "1",
        "platform_restore_drill_success{}": "0",
        "platform_restore_drill_last_run_timestamp_seconds{}": "300.5",
        "platform_restore_drill_last_success_timestamp_seconds{}": "200.0",
        "platform_restore_drill_recovery_point_seconds{}": "3604.0",
    }

    result.write_text(json.dumps({"status": "failed", "message": "x", "finished": 300.5}))
    assert "platform_restore_drill_last_success_timestamp_seconds{}" not in published(result)
