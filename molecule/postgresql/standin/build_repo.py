#!/usr/bin/env python3
"""Builds a STAND-IN of the PostgreSQL project's apt repository (pgdg), for tests only.

apt.postgresql.org cannot be reached from the CI machine, so no other major version than
the distribution's own can be fetched here. This takes the distribution's own PostgreSQL
packages (the debs given, e.g. postgresql-15 and postgresql-client-15 of bookworm),
republishes them under a pgdg-style version (15.20-0+deb12u1 becomes 15.20-1.pgdg120+1,
higher than Debian's, so apt prefers it as it prefers pgdg's builds) and lays them out as
pgdg does (dists/<codename>-pgdg/main, pool/), signed by a throwaway key. The role installs
them through its real pgdg code path:

    build_repo.py --out DIR --suite bookworm-pgdg --tag pgdg120 postgresql-15_*.deb ...
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "resources"))
import apt_repo  # noqa: E402


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), name], check=True, capture_output=True,
                          text=True).stdout.strip()


def pgdg_version(version: str, tag: str) -> str:
    """15.20-0+deb12u1 -> 15.20-1.pgdg120+1: the upstream version with pgdg's revision."""
    upstream = version.split(":", maxsplit=1)[-1].rsplit("-", maxsplit=1)[0]
    return f"{upstream}-1.{tag}+1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--suite", required=True, help="<codename>-pgdg")
    parser.add_argument("--tag", required=True, help="pgdg's release tag in versions: pgdg120 for Debian 12")
    parser.add_argument("debs", type=Path, nargs="+", help="the distribution's PostgreSQL packages")
    args = parser.parse_args()
    apt_repo.require_tools()
    apt_repo.fresh_folder(args.out)
    architectures = {field(deb, "Architecture") for deb in args.debs}
    if len(architectures) != 1:
        raise SystemExit(f"the packages are of more than one architecture: {sorted(architectures)}")
    debs = [apt_repo.republish(deb, pgdg_version(field(deb, "Version"), args.tag), args.out) for deb in args.debs]
    apt_repo.publish_suite(args.out, debs, "pgdg stand-in", suite=args.suite, component="main",
                           architecture=architectures.pop())
    print(args.out)


if __name__ == "__main__":
    main()
