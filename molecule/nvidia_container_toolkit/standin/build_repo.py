#!/usr/bin/env python3
"""Builds a STAND-IN of NVIDIA's container toolkit apt repository, for tests only.

NVIDIA's repository cannot be reached from the CI machine. This builds packages named
like the real ones (nvidia-container-toolkit, nvidia-container-toolkit-base,
libnvidia-container-tools, libnvidia-container1) with `dpkg-deb --build`, where
nvidia-container-toolkit-base carries the stand-in `nvidia-ctk` and
`nvidia-container-runtime` of this folder. They are laid out as a flat repository like
NVIDIA's (Packages, Release, InRelease signed by a throwaway key, the key as `gpgkey`),
so the role installs them through its real repository code path:

    build_repo.py --out DIR --version 1.17.8-1
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = {
    "libnvidia-container1": {"depends": "", "files": {}},
    "libnvidia-container-tools": {"depends": "libnvidia-container1 (= {v})", "files": {}},
    "nvidia-container-toolkit-base": {
        "depends": "",
        "files": {"usr/bin/nvidia-ctk": "nvidia-ctk", "usr/bin/nvidia-container-runtime": "nvidia-container-runtime"},
    },
    "nvidia-container-toolkit": {
        "depends": "nvidia-container-toolkit-base (= {v}), libnvidia-container-tools (= {v})",
        "files": {},
    },
}


def build_package(name: str, version: str, spec: dict, out: Path, work: Path) -> Path:
    root = work / name
    (root / "DEBIAN").mkdir(parents=True)
    control = [f"Package: {name}", f"Version: {version}", "Architecture: all",
               "Maintainer: platform tests <tests@example.invalid>", "Section: utils", "Priority: optional"]
    if spec["depends"]:
        control.append("Depends: " + spec["depends"].format(v=version))
    control.append(f"Description: STAND-IN for NVIDIA's {name}, for tests only")
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    for target, source in spec["files"].items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((HERE / source).read_text().replace("@VERSION@", version))
        path.chmod(0o755)
    deb = out / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, stdout=subprocess.DEVNULL)
    return deb


def package_stanza(deb: Path) -> str:
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True).stdout
    data = deb.read_bytes()
    return (control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n")


def release(out: Path, files: list[str]) -> str:
    lines = ["Origin: platform tests (stand-in)", "Label: nvidia-container-toolkit stand-in",
             "Date: Thu, 01 Jan 2026 00:00:00 UTC", "SHA256:"]
    for name in files:
        data = (out / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


def sign(out: Path) -> None:
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--batch", "--quiet", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", ""]
        subprocess.run([*gpg, "--quick-generate-key", "stand-in repository <tests@example.invalid>",
                        "ed25519", "sign", "never"], check=True)
        subprocess.run([*gpg, "--yes", "--armor", "--output", str(out / "gpgkey"), "--export"], check=True)
        # The fingerprint the scenario pins, as an inventory pins NVIDIA's.
        listing = subprocess.run([*gpg, "--list-keys", "--with-colons"], capture_output=True, text=True, check=True)
        fingerprint = next(line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr:"))
        (out / "gpgkey.fingerprint").write_text(fingerprint + "\n")
        subprocess.run([*gpg, "--yes", "--clearsign", "--output", str(out / "InRelease"), str(out / "Release")],
                       check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    if shutil.which("gpg") is None or shutil.which("dpkg-deb") is None:
        raise SystemExit("build_repo.py needs gpg and dpkg-deb (apt-get install gnupg dpkg)")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    os.umask(0o022)
    with tempfile.TemporaryDirectory() as work:
        debs = [build_package(name, args.version, spec, args.out, Path(work)) for name, spec in PACKAGES.items()]
    packages = "\n".join(package_stanza(deb) for deb in debs)
    (args.out / "Packages").write_text(packages)
    (args.out / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
    (args.out / "Release").write_text(release(args.out, ["Packages", "Packages.gz"]))
    sign(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
