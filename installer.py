#!/usr/bin/env python3
"""Entry point: python3 installer.py [COMMAND] --inventory ENV|PATH [options]

Run outside a virtual environment, it first creates .venv/ beside this file from the pinned
requirements.txt (again whenever that file changes) and re-runs itself there."""

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".requirements-installer"
MINIMUM_PYTHON = (3, 9)


def in_virtualenv() -> bool:
    return sys.prefix != getattr(sys, "base_prefix", sys.prefix)


def fail(message: str) -> "None":
    sys.stderr.write(f"error: {message}\n")
    sys.exit(4)


def bootstrap() -> None:
    """Create or refresh .venv/ from requirements.txt, then re-run this command inside it."""
    python = VENV / "bin" / "python"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    if not python.exists():
        sys.stderr.write(f"creating the installer's virtual environment in {VENV} ...\n")
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except (OSError, subprocess.CalledProcessError):
            # Debian and Ubuntu leave ensurepip out unless python3-venv is installed.
            shutil.rmtree(VENV, ignore_errors=True)
            v = f"{sys.version_info.major}.{sys.version_info.minor}"
            fail(f"this Python cannot create a virtual environment; install it with "
                 f"`apt-get install python3-venv` (or python{v}-venv), then run the same command again")
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        sys.stderr.write(f"installing the installer's requirements ({REQUIREMENTS.name}) into {VENV} ...\n")
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            check=False,
        )
        if result.returncode != 0:
            fail(f"pip could not install {REQUIREMENTS}; see its messages above")
        STAMP.write_text(wanted + "\n")
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606 no shell wanted


def main() -> int:
    if sys.version_info < MINIMUM_PYTHON:
        fail(f"Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer is needed; this is {sys.version.split()[0]}")
    if not in_virtualenv():
        bootstrap()
    sys.path.insert(0, str(ROOT))
    from platformctl.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
