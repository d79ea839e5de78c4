#!/usr/bin/env python3
"""Builds a STAND-IN of Docker's apt repository (download.docker.com/linux/debian), for
tests only.

Docker's repository cannot be reached from the CI machine, and Docker's engine cannot be
fetched. This builds packages named and numbered like Docker's, from Debian's:

- docker-ce is Debian's docker.io and docker-ce-cli is Debian's docker-cli, their files
  unchanged, under Docker's names and a Docker version (5:27.5.1-1~debian.13~trixie). They
  cannot simply depend on Debian's packages: docker.io conflicts with docker-ce, and
  docker-cli with docker-ce-cli. So the engine that runs is Debian's build.
- containerd.io depends on Debian's containerd and runc, docker-buildx-plugin on Debian's
  docker-buildx: they carry no files.
- A newer docker-ce and docker-ce-cli, which carry no files, so that the repository offers
  more than the pinned version.

They are laid out like Docker's repository, signed by a throwaway key:

    SITE/linux/debian/gpg                                   the signing key (Docker's URL)
    SITE/linux/debian/dists/CODENAME/stable/binary-amd64/   the index
    SITE/linux/debian/pool/stable/                          the packages

so the role installs them through its real repository code path (key download, the
fingerprint pin, the deb822 source, apt's signature check) once SITE is served over HTTP:

    build_repo.py --out SITE --codename trixie --pinned 27.5.1 --newer 28.0.1 \\
        --engine docker.io_*.deb --cli docker-cli_*.deb
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "resources"))
import apt_repo  # noqa: E402

DEBIAN_NUMBER = {"trixie": 13}
# Docker's package: (Debian's package it is made from, the names Debian's conflicts with).
RENAMED = {
    "docker-ce": ("docker.io", {"docker-ce", "docker-ce-rootless-extras"}),
    "docker-ce-cli": ("docker-cli", {"docker-ce-cli"}),
}
# Docker's packages that only bring in Debian's (checked against trixie's archive).
DEPENDING = {"containerd.io": "containerd, runc", "docker-buildx-plugin": "docker-buildx"}
CONTAINERD_VERSION = "1.7.25-1"
BUILDX_VERSION = "0.20.0-1~debian.{number}~{codename}"


def docker_version(upstream: str, codename: str) -> str:
    """Docker's own numbering, for example 5:27.5.1-1~debian.13~trixie."""
    return f"5:{upstream}-1~debian.{DEBIAN_NUMBER[codename]}~{codename}"


def _fields(text: str) -> list[list[str]]:
    """A control file's fields in order, each [name, value with its continuation lines]."""
    fields: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith((" ", "\t")):
            fields[-1][1] += "\n" + line
        elif line:
            name, _, value = line.partition(":")
            fields.append([name, value.strip()])
    return fields


def rename(deb: Path, name: str, version: str, out: Path) -> Path:
    """Debian's package `deb` as Docker's `name` at `version`: the same files and scripts,
    its conflicts with Docker's package dropped, and Debian's package conflicted with and
    replaced instead (as Docker's own packages do)."""
    debian_name, dropped = RENAMED[name]
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "package"
        subprocess.run(["dpkg-deb", "--raw-extract", str(deb), str(root)], check=True)
        control = root / "DEBIAN" / "control"
        fields = [field for field in _fields(control.read_text()) if field[0] not in ("Conflicts", "Replaces")]
        old = dict(_fields(control.read_text()))
        kept = [entry.strip() for entry in old.get("Conflicts", "").split(",")
                if entry.strip() and entry.split()[0] not in dropped]
        for field in fields:
            if field[0] == "Package":
                field[1] = name
            elif field[0] == "Version":
                field[1] = version
            elif field[0] == "Description":
                _, newline, rest = field[1].partition("\n")
                field[1] = f"STAND-IN for Docker's {name}, for tests only: Debian's {debian_name}{newline}{rest}"
        replaces = [entry.strip() for entry in old.get("Replaces", "").split(",") if entry.strip()]
        fields.append(["Conflicts", ", ".join([*kept, debian_name])])
        fields.append(["Replaces", ", ".join([*replaces, debian_name])])
        control.write_text("".join(f"{key}: {value}\n" for key, value in fields))
        architecture = old["Architecture"]
        built = out / f"{name}_{version.rsplit(':', maxsplit=1)[-1]}_{architecture}.deb"
        subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "--build", str(root), str(built)],
                       check=True, stdout=subprocess.DEVNULL)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the site's root folder (made anew)")
    parser.add_argument("--codename", choices=sorted(DEBIAN_NUMBER), required=True)
    parser.add_argument("--pinned", required=True, help="upstream version made from Debian's, for example 27.5.1")
    parser.add_argument("--newer", required=True, help="upstream version of the empty newer packages")
    parser.add_argument("--engine", type=Path, required=True, help="Debian's docker.io package (.deb)")
    parser.add_argument("--cli", type=Path, required=True, help="Debian's docker-cli package (.deb)")
    args = parser.parse_args()
    apt_repo.require_tools()
    apt_repo.fresh_folder(args.out)
    repository = args.out / "linux" / "debian"
    repository.mkdir(parents=True)
    pinned, newer = (docker_version(upstream, args.codename) for upstream in (args.pinned, args.newer))
    debs = [rename(args.engine, "docker-ce", pinned, repository), rename(args.cli, "docker-ce-cli", pinned, repository)]
    debs += [apt_repo.build_package(name, newer, repository,
                                    description=f"STAND-IN for Docker's {name}, for tests only: a newer version "
                                                "that carries nothing, so that the pin has something to hold off")
             for name in RENAMED]
    debs += [apt_repo.build_package(name, version, repository, depends=depends,
                                    description=f"STAND-IN for Docker's {name}, for tests only: it brings in "
                                                f"Debian's {depends}")
             for name, depends, version in (
                 ("containerd.io", DEPENDING["containerd.io"], CONTAINERD_VERSION),
                 ("docker-buildx-plugin", DEPENDING["docker-buildx-plugin"],
                  BUILDX_VERSION.format(number=DEBIAN_NUMBER[args.codename], codename=args.codename)))]
    apt_repo.publish_suite(repository, debs, "docker-ce stand-in", suite=args.codename, component="stable",
                           architecture="amd64")
    # Docker serves its key at <repository>/gpg, where docker_ce_key_url looks by default.
    shutil.copyfile(repository / "gpgkey", repository / "gpg")
    print(repository)


if __name__ == "__main__":
    main()
