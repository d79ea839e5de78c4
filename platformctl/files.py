"""Writing the installer's own files."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(file: Path, data: bytes, mode: int = 0o644) -> None:
    """Write whole or not at all: an interrupted run never leaves half a file."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(file)
