#!/usr/bin/env python3
"""pgbench against Debian's stock postgresql.conf and the postgresql role's derived one.

Both clusters live in one systemd test container on this machine (the role's cluster and a
second one made by pg_createcluster with the distribution's defaults), hold the same pgbench
database, and run in turns, one at a time, so that both see the same machine:

    .venv/bin/python bench/postgres_tuning.py [--scale 50] [--seconds 60] [--rounds 3] [--clients 8]

Prints the TPS of every run, the median of each configuration and their ratio. Needs the
test image (tests/images/build.sh) and a running Docker engine; removes its container at
the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import testhosts  # beside this script

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONTAINER = "bench-postgres-tuning"
STOCK_PORT = 5433
TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


def sh(*command: str, capture: bool = False) -> str:
    result = subprocess.run(command, check=True, text=True, stdout=subprocess.PIPE if capture else None)
    return result.stdout if capture else ""


def in_container(script: str) -> str:
    return sh("docker", "exec", CONTAINER, "bash", "-euo", "pipefail", "-c", script, capture=True)


def converge_role(workdir: Path) -> None:
    inventory = workdir / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"postgres": {"hosts": {CONTAINER: {
        "ansible_connection": "community.docker.docker"}}}}, "vars": {"platform_secrets": {
            "postgresql_app_password": secrets.token_urlsafe(24),
            "pgbackrest_cipher_pass": secrets.token_urlsafe(24)}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    playbooks = (ROOT / "molecule" / "resources" / "prepare.yml", ROOT / "molecule" / "postgresql" / "converge.yml")
    for playbook in playbooks:
        subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)], check=True, env=env,
                       cwd=ROOT, stdout=subprocess.DEVNULL)


def prepare_clusters(scale: int) -> str:
    version = in_container("ls /etc/postgresql").split()[0]
    in_container(f"pg_createcluster {version} stock --port {STOCK_PORT} >/dev/null")
    for cluster, port in (("main", 5432), ("stock", STOCK_PORT)):
        in_container(f"""
            systemctl start postgresql@{version}-{cluster}
            runuser -u postgres -- createdb -p {port} bench
            runuser -u postgres -- pgbench -p {port} -i -q -s {scale} bench >/dev/null 2>&1
            runuser -u postgres -- psql -p {port} -qc 'VACUUM ANALYZE' bench
            runuser -u postgres -- psql -p {port} -qc CHECKPOINT bench
            systemctl stop postgresql@{version}-{cluster}""")
    return version


def run_pgbench(version: str, cluster: str, port: int, seconds: int, clients: int) -> float:
    output = in_container(f"""
        systemctl start postgresql@{version}-{cluster}
        runuser -u postgres -- pgbench -p {port} -c {clients} -j 2 -T {seconds} bench 2>/dev/null
        systemctl stop postgresql@{version}-{cluster}""")
    match = TPS.search(output)
    if not match:
        raise SystemExit(f"no TPS in pgbench output:\n{output}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the container")
    args = parser.parse_args()

    testhosts.start_systemd_container(CONTAINER, "--shm-size=1g")
    try:
        with tempfile.TemporaryDirectory() as workdir:
            converge_role(Path(workdir))
        in_container("systemctl stop postgresql")
        version = prepare_clusters(args.scale)
        memory = in_container("awk '/^MemTotal:/ {printf \"%d MiB\", $2/1024}' /proc/meminfo").strip()
        print(f"PostgreSQL {version}, pgbench scale {args.scale}, {args.clients} clients, {args.seconds} s a run, "
              f"{args.rounds} rounds; host: {os.cpu_count()} CPUs, {memory}")
        results: dict[str, list[float]] = {"stock": [], "role": []}
        for round_number in range(1, args.rounds + 1):
            for name, cluster, port in (("stock", "stock", STOCK_PORT), ("role", "main", 5432)):
                tps = run_pgbench(version, cluster, port, args.seconds, args.clients)
                results[name].append(tps)
                print(f"round {round_number}  {name:5}  {tps:10.1f} tps", flush=True)
        stock, role = statistics.median(results["stock"]), statistics.median(results["role"])
        print(f"median  stock {stock:.1f} tps  role {role:.1f} tps  ratio role/stock {role / stock:.2f}")
    finally:
        if not args.keep:
            testhosts.remove_container(CONTAINER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
