#!/usr/bin/env python3
"""Builds STAND-IN Ollama release archives for the ollama role's scenario.

Each archive has the layout of Ollama's ollama-linux-<arch>.tgz (bin/ollama,
lib/ollama/) but bin/ollama is the stand-in ollama.py with its version filled in.
The archives are reproducible (fixed owners and times), so their sha256 is stable:

    build_archive.py --out DIR 0.12.5 0.12.6
    -> DIR/0.12.5/ollama-linux-amd64.tgz, DIR/0.12.5/ollama-linux-amd64.tgz.sha256, ...
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIB_NOTE = b"Stand-in: a real release holds its GPU runtime libraries here.\n"


def add(archive: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, 0, "root", "root"
    if data is None:
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    else:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def build(version: str, out: Path, arch: str) -> Path:
    binary = (HERE / "ollama.py").read_text().replace("@VERSION@", version).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        add(archive, "./bin", None, 0o755)
        add(archive, "./bin/ollama", binary, 0o755)
        add(archive, "./lib", None, 0o755)
        add(archive, "./lib/ollama", None, 0o755)
        add(archive, "./lib/ollama/STAND-IN.txt", LIB_NOTE, 0o644)
    target = out / version / f"ollama-linux-{arch}.tgz"
    target.parent.mkdir(parents=True, exist_ok=True)
    compressed = gzip.compress(raw.getvalue(), mtime=0)
    if not target.is_file() or target.read_bytes() != compressed:
        target.write_bytes(compressed)
    Path(f"{target}.sha256").write_text(hashlib.sha256(compressed).hexdigest() + "\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder the archives go to")
    parser.add_argument("--arch", default="amd64")
    parser.add_argument("versions", nargs="+")
    args = parser.parse_args()
    for version in args.versions:
        print(build(version, args.out, args.arch))


if __name__ == "__main__":
    main()
