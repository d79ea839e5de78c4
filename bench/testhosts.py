"""The test hosts the benchmarks run on: systemd containers of the test image (tests/images),
alone or as the e2e scenario's host, made with molecule as the scenario makes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "molecule" / "resources"))
from containers import IMAGE, remove_container, start_systemd_container  # noqa: E402

__all__ = ["IMAGE", "remove_container", "start_systemd_container"]
E2E_HOST = "e2e-debian12"


def molecule(env: dict[str, str], *args: str, check: bool = True) -> None:
    proc = subprocess.run([str(BIN / "molecule"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    if check and proc.returncode != 0:
        sys.exit(f"molecule {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")


def fresh_e2e_host(env: dict[str, str]) -> None:
    """The e2e scenario's host, created and prepared, and its inventory written (the
    scenario's converge, tag e2e_inventory only) to $MOLECULE_EPHEMERAL_DIRECTORY/platform-inventory."""
    molecule(env, "destroy", "-s", "e2e", check=False)
    molecule(env, "create", "-s", "e2e")
    molecule(env, "prepare", "-s", "e2e")
    molecule(env, "converge", "-s", "e2e", "--", "--tags", "e2e_inventory")


def destroy_e2e_host(env: dict[str, str]) -> None:
    molecule(env, "destroy", "-s", "e2e", check=False)
