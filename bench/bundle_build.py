#!/usr/bin/env python3
"""The offline bundle's build time and size, per component (issue: offline installs).

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/bundle_build.py [--rounds 3] [--inventory ENV]

Without --inventory it builds for the stand-in inventory of the bundle test (one host in every
group but gpu; molecule/resources/bundle_standins.py), for Debian 12 and 13, with the test
images as each release's clean system. Prints each component's median seconds and its size,
and the machine's load before and after."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "molecule" / "resources"))
from bundle_standins import BUILD_IMAGES, import_app_image, remove_app_image, write_inventory  # noqa: E402


def build_once(inventory: Path, work: Path, extra: list[str]) -> dict:
    summary = work / "summary.json"
    output = work / "platform.bundle"
    # A bundle key of the bench's own, not the user's (~/.config/platformctl).
    env = dict(os.environ, PLATFORMCTL_SECRETS_DIR=str(work / "secrets"))
    proc = subprocess.run([sys.executable, str(ROOT / "installer.py"), "bundle", "--inventory", str(inventory),
                           "--output", str(output), *extra, "--json", str(summary)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"installer.py bundle exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    document = json.loads(summary.read_text())
    document["archive_bytes"] = output.stat().st_size
    output.unlink()
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--inventory", type=Path, help="an inventory to bundle instead of the stand-in one")
    args = parser.parse_args()
    print(f"load before: {' '.join(f'{n:.1f}' for n in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as work_dir:
        work = Path(work_dir)
        if args.inventory:
            inventory, extra = args.inventory, []
        else:
            import_app_image()
            inventory, extra = write_inventory(work), BUILD_IMAGES
        try:
            rounds = [build_once(inventory, work, extra) for _ in range(args.rounds)]
        finally:
            if not args.inventory:
                remove_app_image()
    print(f"load after: {' '.join(f'{n:.1f}' for n in os.getloadavg())}")
    print(f"{'component':<22} {'files':>6} {'MB':>8} {'median s':>9}  rounds (s)")
    for n, component in enumerate(rounds[0]["components"]):
        seconds = [r["components"][n]["seconds"] for r in rounds]
        print(f"{component['name']:<22} {component['files']:>6} {component['bytes'] / 1e6:>8.1f} "
              f"{statistics.median(seconds):>9.1f}  {', '.join(f'{s:.0f}' for s in seconds)}")
    print(f"{'whole archive':<22} {'':>6} {rounds[0]['archive_bytes'] / 1e6:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
