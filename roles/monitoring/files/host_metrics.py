#!/usr/bin/python3
"""Writes the platform's host metrics for the node exporter's textfile collector.

What no packaged exporter reports: pgBackRest backup age, WAL archiving, the restore drills,
the backups of the files, the expiry of the TLS certificate nginx serves and the GPUs
nvidia-smi sees. Run by a systemd timer;
each file is replaced atomically so a scrape never reads half of one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

TIMEOUT = 60


def run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=TIMEOUT).stdout


def label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def sample(name: str, labels: dict[str, str], value: float) -> str:
    pairs = ",".join(f'{key}="{label(val)}"' for key, val in labels.items())
    return f"{name}{{{pairs}}} {value}\n"


def pgbackrest(stanza: str) -> str:
    """Newest backup of each type, the oldest kept, and the backup count, from `pgbackrest info`."""
    info = json.loads(run(["runuser", "-u", "postgres", "--", "pgbackrest", "--output=json",
                           f"--stanza={stanza}", "info"]))
    lines = ""
    for entry in info:
        backups = entry.get("backup", [])
        labels = {"stanza": entry["name"]}
        lines += sample("platform_pgbackrest_backups", labels, len(backups))
        newest: dict[str, int] = {}
        for backup in backups:
            newest[backup["type"]] = max(newest.get(backup["type"], 0), backup["timestamp"]["stop"])
        for kind, stop in newest.items():
            lines += sample("platform_pgbackrest_last_backup_timestamp_seconds", {**labels, "type": kind}, stop)
        if backups:
            oldest = min(backup["timestamp"]["stop"] for backup in backups)
            lines += sample("platform_pgbackrest_oldest_backup_timestamp_seconds", labels, oldest)
    return lines


def wal_archiving() -> str:
    """pg_stat_archiver: when WAL was last archived and when archiving last failed."""
    query = ("SELECT failed_count, coalesce(extract(epoch FROM last_archived_time), 0),"
             " coalesce(extract(epoch FROM last_failed_time), 0) FROM pg_stat_archiver")
    row = run(["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-F", " ", "-c", query]).split()
    failed, archived, last_failed = (float(value) for value in row)
    return (sample("platform_postgresql_wal_archive_failures_total", {}, failed)
            + sample("platform_postgresql_wal_last_archived_timestamp_seconds", {}, archived)
            + sample("platform_postgresql_wal_last_failed_timestamp_seconds", {}, last_failed))


def outcome(prefix: str, result: Path, figures: tuple[str, ...]) -> str:
    """The last run's outcome of a job that writes a JSON result (status, finished,
    last_success and its figures): nothing before its first run."""
    if not result.exists():
        return ""
    run = json.loads(result.read_text())
    lines = (sample(f"{prefix}_success", {}, 1 if run["status"] == "ok" else 0)
             + sample(f"{prefix}_last_run_timestamp_seconds", {}, run["finished"]))
    if run.get("last_success"):
        lines += sample(f"{prefix}_last_success_timestamp_seconds", {}, run["last_success"])
    for figure in figures:
        if figure in run:
            lines += sample(f"{prefix}_{figure}", {}, run[figure])
    return lines


def restore_drill(result: Path) -> str:
    """That drills are scheduled here, and the last one's outcome, from the result the
    postgresql role's drill writes (none before the first drill)."""
    return (sample("platform_restore_drill_scheduled", {}, 1)
            + outcome("platform_restore_drill", result, ("recovery_point_seconds", "restore_seconds")))


def files_backup(result: Path) -> str:
    """The last backup of the files, from the result the backup role's program writes."""
    return outcome("platform_files_backup", result, ("seconds", "files", "bytes_added"))


def tls(endpoints: list[str]) -> str:
    """notAfter of the certificate each address:port=server_name serves."""
    lines = ""
    for endpoint in endpoints:
        address, server_name = endpoint.split("=", 1)
        pem = subprocess.run(["openssl", "s_client", "-connect", address, "-servername", server_name],
                             input="", capture_output=True, text=True, timeout=TIMEOUT, check=False).stdout
        end = subprocess.run(["openssl", "x509", "-noout", "-enddate"], input=pem, capture_output=True,
                             text=True, timeout=TIMEOUT, check=True).stdout.strip().split("=", 1)[1]
        expiry = datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc)
        lines += sample("platform_tls_certificate_expiry_timestamp_seconds",
                        {"endpoint": address, "server_name": server_name}, expiry.timestamp())
    return lines


def gpus(nvidia_smi: str) -> str:
    """Temperature, memory and utilisation of every GPU."""
    fields = "index,uuid,name,temperature.gpu,memory.used,memory.total,utilization.gpu"
    output = run([nvidia_smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
    lines = ""
    for row in csv.reader(output.splitlines(), skipinitialspace=True):
        index, uuid, name, temperature, used, total, utilization = row
        labels = {"gpu": index, "uuid": uuid, "name": name}
        lines += sample("platform_gpu_temperature_celsius", labels, float(temperature))
        lines += sample("platform_gpu_memory_used_bytes", labels, float(used) * 1024 * 1024)
        lines += sample("platform_gpu_memory_total_bytes", labels, float(total) * 1024 * 1024)
        lines += sample("platform_gpu_utilization_ratio", labels, float(utilization) / 100)
    return lines


def write(directory: Path, name: str, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, directory / f"platform_{name}.prom")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--pgbackrest-stanza")
    parser.add_argument("--restore-drill-result", type=Path)
    parser.add_argument("--files-backup-result", type=Path)
    parser.add_argument("--tls", action="append", default=[], metavar="ADDRESS:PORT=SERVER_NAME")
    parser.add_argument("--nvidia-smi")
    args = parser.parse_args()

    collectors = {}
    if args.pgbackrest_stanza:
        collectors["pgbackrest"] = lambda: pgbackrest(args.pgbackrest_stanza)
        collectors["wal_archiving"] = wal_archiving
    if args.restore_drill_result:
        collectors["restore_drill"] = lambda: restore_drill(args.restore_drill_result)
    if args.files_backup_result:
        collectors["files_backup"] = lambda: files_backup(args.files_backup_result)
    if args.tls:
        collectors["tls"] = lambda: tls(args.tls)
    if args.nvidia_smi:
        collectors["gpu"] = lambda: gpus(args.nvidia_smi)

    failed = 0
    for name, collect in collectors.items():
        labels = {"collector": name}
        try:
            text = collect()
            ok = 1
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            text, ok = "", 0
            failed += 1
        text += sample("platform_host_metrics_success", labels, ok)
        text += sample("platform_host_metrics_last_run_timestamp_seconds", labels, time.time())
        write(args.output_dir, name, text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
