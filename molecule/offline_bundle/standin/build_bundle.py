#!/usr/bin/env python3
"""Builds a STAND-IN of an unpacked offline bundle's repositories, for the offline_bundle
role's scenario only: one package (`platform-bundle-standin`, which no other repository
has) in a flat repository signed by a throwaway key, packed as installer.py packs each
release's repository (apt/CODENAME.tar, for bookworm and trixie), with that key as the
bundle's key (bundle-key.asc, its fingerprint beside it). installer.py bundle builds the
real thing (the offline scenario and tests/integration run it); this keeps the role's own
scenario to the role.

    build_bundle.py --out DIR
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "resources"))
import apt_repo  # noqa: E402

PACKAGE, VERSION = "platform-bundle-standin", "1.0-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    apt_repo.require_tools()
    repository, bundle = args.out / "repository", args.out / "bundle"
    apt_repo.fresh_folder(repository)
    apt_repo.fresh_folder(bundle)
    deb = apt_repo.build_package(PACKAGE, VERSION, repository, description="STAND-IN package of an offline bundle",
                                 files={"usr/bin/platform-bundle-standin": "#!/bin/sh\necho from the bundle\n"})
    apt_repo.publish_flat(repository, [deb], "platform-bundle stand-in")
    (bundle / "apt").mkdir()
    for codename in ("bookworm", "trixie"):
        with tarfile.open(bundle / "apt" / f"{codename}.tar", "w") as tar:
            for file in sorted(repository.iterdir()):
                if file.name not in ("gpgkey", "gpgkey.fingerprint"):
                    tar.add(file, arcname=file.name)
    shutil.copyfile(repository / "gpgkey", bundle / "bundle-key.asc")
    shutil.copyfile(repository / "gpgkey.fingerprint", bundle / "bundle-key.fingerprint")
    print(bundle)


if __name__ == "__main__":
    main()
