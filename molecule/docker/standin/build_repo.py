#!/usr/bin/env python3
"""Builds a STAND-IN of Docker's apt repository (download.docker.com/linux/debian), for
tests only.

Docker's repository cannot be reached from the CI machine. This builds packages named
like Docker's (docker-ce, docker-ce-cli, containerd.io, docker-buildx-plugin) with
version numbers like Docker's, in two versions of docker-ce and docker-ce-cli (the
scenario pins the older one). They carry no engine of their own: Docker's engine cannot
be fetched here, so the stand-in docker-ce depends on Debian's docker.io, docker-ce-cli on
Debian's docker client, containerd.io on Debian's containerd and runc, and
docker-buildx-plugin on Debian's docker-buildx. The engine that runs is Debian's.

They are laid out like Docker's repository, signed by a throwaway key:

    SITE/linux/debian/gpg                                   the signing key (Docker's URL)
    SITE/linux/debian/dists/CODENAME/stable/binary-amd64/   the index
    SITE/linux/debian/pool/stable/                          the packages

so the role installs them through its real repository code path (key download, the
fingerprint pin, the deb822 source, apt's signature check) once SITE is served over HTTP:

    build_repo.py --out SITE --codename trixie --version 27.5.1 --version 28.0.1
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "resources"))
import apt_repo  # noqa: E402

# What Debian itself provides in place of each of Docker's packages, per release (checked
# against trixie's archive: docker.io and docker-cli 26.1, containerd 1.7, docker-buildx 0.13).
DEBIAN = {
    "trixie": {
        "number": 13,
        "docker-ce": "docker.io, containerd.io",
        "docker-ce-cli": "docker-cli",
        "containerd.io": "containerd, runc",
        "docker-buildx-plugin": "docker-buildx",
    },
}
# The packages of one version only, as Docker numbers them.
CONTAINERD_VERSION = "1.7.25-1"
BUILDX_VERSION = "0.20.0-1~debian.{number}~{codename}"


def docker_version(upstream: str, codename: str) -> str:
    """Docker's own numbering, for example 5:27.5.1-1~debian.13~trixie."""
    return f"5:{upstream}-1~debian.{DEBIAN[codename]['number']}~{codename}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the site's root folder (made anew)")
    parser.add_argument("--codename", choices=sorted(DEBIAN), required=True)
    parser.add_argument("--version", action="append", required=True,
                        help="an upstream version of docker-ce and docker-ce-cli, for example 27.5.1 (repeat)")
    args = parser.parse_args()
    apt_repo.require_tools()
    apt_repo.fresh_folder(args.out)
    debian = DEBIAN[args.codename]
    repository = args.out / "linux" / "debian"
    repository.mkdir(parents=True)

    def stand_in(name: str, version: str) -> Path:
        return apt_repo.build_package(
            name, version, repository, depends=debian[name],
            description=f"STAND-IN for Docker's {name}, for tests only: it brings in {debian[name]}")

    debs = [stand_in(name, docker_version(upstream, args.codename))
            for upstream in args.version for name in ("docker-ce", "docker-ce-cli")]
    debs.append(stand_in("containerd.io", CONTAINERD_VERSION))
    debs.append(stand_in("docker-buildx-plugin", BUILDX_VERSION.format(codename=args.codename, **debian)))
    apt_repo.publish_suite(repository, debs, "docker-ce stand-in", suite=args.codename, component="stable",
                           architecture="amd64")
    # Docker serves its key at <repository>/gpg, where docker_ce_key_url looks by default.
    shutil.copyfile(repository / "gpgkey", repository / "gpg")
    print(repository)


if __name__ == "__main__":
    main()
