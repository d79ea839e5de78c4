"""Where the installer's own files are."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_CFG = ROOT / "ansible.cfg"
PLAYBOOKS = ROOT / "playbooks"
ROLES = ROOT / "roles"
INVENTORIES = ROOT / "inventories"
COLLECTIONS_REQUIREMENTS = ROOT / "collections" / "requirements.yml"
# Every run's log and events; PLATFORMCTL_RUNS_DIR puts them elsewhere (a disk with room, or
# one folder per test scenario).
RUNS = Path(os.environ.get("PLATFORMCTL_RUNS_DIR") or ROOT / "runs")
# Offline bundles unpacked for installs (--bundle), one folder per bundle; PLATFORMCTL_BUNDLES_DIR
# puts them elsewhere.
BUNDLES = Path(os.environ.get("PLATFORMCTL_BUNDLES_DIR") or ROOT / "bundles")


def lock_dir() -> Path:
    """Where the run locks are: /run for root, the user's own cache folder otherwise (the same
    for a timer's service and a login shell of that user); never the shared /tmp, nor runs/,
    whose rotation removes what it holds."""
    base = Path("/run/platformctl") if os.geteuid() == 0 else Path.home() / ".cache" / "platformctl" / "locks"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base
