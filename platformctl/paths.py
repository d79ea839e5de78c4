"""Where the installer's own files are."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_CFG = ROOT / "ansible.cfg"
PLAYBOOKS = ROOT / "playbooks"
ROLES = ROOT / "roles"
INVENTORIES = ROOT / "inventories"
COLLECTIONS_REQUIREMENTS = ROOT / "collections" / "requirements.yml"
RUNS = ROOT / "runs"
