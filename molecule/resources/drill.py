"""Restore drills as the scenarios' tests drive them on a database host: the heartbeat made
fresh or stale, the WAL that holds it archived, the drill's result read back."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

# The postgresql role's __postgresql_restore_drill_result and the units its drill runs in.
RESULT = "/var/lib/platform/postgresql-restore-drill.json"
HEARTBEAT_TIMER = "platform-postgresql-heartbeat.timer"
HEARTBEAT_SERVICE = "platform-postgresql-heartbeat.service"
DRILL_SERVICE = "platform-postgresql-restore-drill.service"
# The drill's own folder in the role's default postgresql_restore_drill_dir: it must be gone
# after every drill.
SCRATCH = "/var/lib/postgresql/restore-drill/platform-restore-drill"


def sql(host, statement: str) -> str:
    return host.check_output("runuser -u postgres -- psql -XAtq -d postgres -c %s", statement)


def archive_now(host, timeout: float = 120) -> None:
    """Closes the current WAL segment and waits until the archiver has it, so that a restore
    to the end of the archived WAL sees everything committed so far."""
    segment = sql(host, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + timeout
    while sql(host, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[:24] < segment:
        assert time.monotonic() < deadline, f"WAL segment {segment} was not archived within {timeout} s"
        time.sleep(1)


def heartbeat(host) -> float:
    """The epoch of the live server's heartbeat row."""
    return float(sql(host, "SELECT extract(epoch FROM at) FROM platform_drill.heartbeat"))


@contextmanager
def stale_heartbeat(host):
    """The heartbeat row set an hour into the past and archived, its timer stopped
    meanwhile; yields the epoch written. Afterwards the timer runs again and the row is
    fresh and archived."""
    host.check_output("systemctl stop %s %s", HEARTBEAT_TIMER, HEARTBEAT_SERVICE)
    try:
        sql(host, "UPDATE platform_drill.heartbeat SET at = now() - interval '1 hour'")
        archive_now(host)
        yield heartbeat(host)
    finally:
        host.check_output("systemctl start %s %s", HEARTBEAT_SERVICE, HEARTBEAT_TIMER)
        archive_now(host)


def result(host) -> dict:
    return json.loads(host.file(RESULT).content_string)
