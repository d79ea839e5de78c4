#!/usr/bin/env python3
"""Builds a STAND-IN of NVIDIA's container toolkit apt repository, for tests only.

NVIDIA's repository cannot be reached from the CI machine. This builds packages named
like the real ones (nvidia-container-toolkit, nvidia-container-toolkit-base,
libnvidia-container-tools, libnvidia-container1), where nvidia-container-toolkit-base
carries the stand-in `nvidia-ctk` and `nvidia-container-runtime` of this folder. They are
laid out as a flat repository like NVIDIA's, signed by a throwaway key, so the role
installs them through its real repository code path:

    build_repo.py --out DIR --version 1.17.8-1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "resources"))
import apt_repo  # noqa: E402

PACKAGES = {
    "libnvidia-container1": ("", {}),
    "libnvidia-container-tools": ("libnvidia-container1 (= {v})", {}),
    "nvidia-container-toolkit-base": (
        "", {"usr/bin/nvidia-ctk": "nvidia-ctk", "usr/bin/nvidia-container-runtime": "nvidia-container-runtime"}),
    "nvidia-container-toolkit": ("nvidia-container-toolkit-base (= {v}), libnvidia-container-tools (= {v})", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    apt_repo.require_tools()
    apt_repo.fresh_folder(args.out)
    debs = [apt_repo.build_package(
        name, args.version, args.out, depends=depends.format(v=args.version),
        description=f"STAND-IN for NVIDIA's {name}, for tests only",
        files={target: (HERE / source).read_text().replace("@VERSION@", args.version)
               for target, source in files.items()})
        for name, (depends, files) in PACKAGES.items()]
    apt_repo.publish_flat(args.out, debs, "nvidia-container-toolkit stand-in")
    print(args.out)


if __name__ == "__main__":
    main()
