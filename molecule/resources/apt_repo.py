"""Signed apt repositories for STAND-INS of vendor repositories that the CI machine cannot
reach (NVIDIA's, Docker's, the PostgreSQL project's), for tests only.

The roles install from them through their real repository code path: a signing key
pinned by fingerprint, a deb822 source with Signed-By, apt's own signature check. The key
is made for each build and thrown away; its public half is `gpgkey` and its fingerprint
`gpgkey.fingerprint` in the repository's folder.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MAINTAINER = "platform tests <tests@example.invalid>"


def require_tools() -> None:
    missing = [tool for tool in ("gpg", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"building a stand-in repository needs {', '.join(missing)} (apt-get install gnupg dpkg)")


def fresh_folder(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.umask(0o022)


def build_package(name: str, version: str, out: Path, *, depends: str = "", description: str,
                  files: dict[str, str] | None = None) -> Path:
    """A package of `files` (path in the package: text of an executable)."""
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / name
        (root / "DEBIAN").mkdir(parents=True)
        control = [f"Package: {name}", f"Version: {version}", "Architecture: all", f"Maintainer: {MAINTAINER}",
                   "Section: utils", "Priority: optional"]
        if depends:
            control.append(f"Depends: {depends}")
        control.append(f"Description: {description}")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        for target, text in (files or {}).items():
            path = root / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o755)
        deb = out / f"{name}_{version.rsplit(':', maxsplit=1)[-1]}_all.deb"
        # gzip at its fastest: dpkg-deb's default xz takes minutes per package on CI's two cores.
        subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "--build", str(root), str(deb)],
                       check=True, stdout=subprocess.DEVNULL)
    return deb


def republish(deb: Path, version: str, out: Path) -> Path:
    """The same package under another version, as a vendor's build of it would be."""
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "package"
        subprocess.run(["dpkg-deb", "--raw-extract", str(deb), str(root)], check=True)
        control = root / "DEBIAN" / "control"
        lines = [f"Version: {version}" if line.startswith("Version: ") else line
                 for line in control.read_text().splitlines()]
        control.write_text("\n".join(lines) + "\n")
        fields = dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith(" "))
        built = out / f"{fields['Package']}_{version.rsplit(':', maxsplit=1)[-1]}_{fields['Architecture']}.deb"
        subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "--build", str(root), str(built)],
                       check=True, stdout=subprocess.DEVNULL)
    return built


def _stanza(deb: Path, filename: str) -> str:
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True).stdout
    data = deb.read_bytes()
    return (control.rstrip("\n") + f"\nFilename: {filename}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n")


def _release(index_dir: Path, files: list[str], label: str, fields: list[str]) -> str:
    lines = ["Origin: platform tests (stand-in)", f"Label: {label}", *fields,
             "Date: Thu, 01 Jan 2026 00:00:00 UTC", "SHA256:"]
    for name in files:
        data = (index_dir / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


def _sign(out: Path, release_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--batch", "--quiet", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", ""]
        subprocess.run([*gpg, "--quick-generate-key", "stand-in repository <tests@example.invalid>",
                        "ed25519", "sign", "never"], check=True)
        subprocess.run([*gpg, "--yes", "--armor", "--output", str(out / "gpgkey"), "--export"], check=True)
        # The fingerprint a scenario pins, as an inventory pins the vendor's.
        listing = subprocess.run([*gpg, "--list-keys", "--with-colons"], capture_output=True, text=True, check=True)
        fingerprint = next(line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr:"))
        (out / "gpgkey.fingerprint").write_text(fingerprint + "\n")
        subprocess.run([*gpg, "--yes", "--clearsign", "--output", str(release_dir / "InRelease"),
                        str(release_dir / "Release")], check=True)


def _write_packages(index_dir: Path, stanzas: list[str]) -> None:
    packages = "\n".join(stanzas)
    index_dir.mkdir(parents=True, exist_ok=True)
    (index_dir / "Packages").write_text(packages)
    (index_dir / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))


def publish_flat(out: Path, debs: list[Path], label: str) -> None:
    """A flat repository (`Suites: /`) of debs already in `out`, as NVIDIA publishes its own."""
    _write_packages(out, [_stanza(deb, f"./{deb.name}") for deb in debs])
    (out / "Release").write_text(_release(out, ["Packages", "Packages.gz"], label, []))
    _sign(out, out)


def publish_suite(out: Path, debs: list[Path], label: str, *, suite: str, component: str, architecture: str) -> None:
    """A repository with dists/ and pool/, as Docker and the PostgreSQL project publish theirs."""
    pool = out / "pool" / component
    pool.mkdir(parents=True, exist_ok=True)
    stanzas = []
    for deb in debs:
        shutil.move(deb, pool / deb.name)
        stanzas.append(_stanza(pool / deb.name, f"pool/{component}/{deb.name}"))
    release_dir = out / "dists" / suite
    index = f"{component}/binary-{architecture}"
    _write_packages(release_dir / index, stanzas)
    fields = [f"Suite: {suite}", f"Codename: {suite}", f"Components: {component}", f"Architectures: {architecture}"]
    (release_dir / "Release").write_text(
        _release(release_dir, [f"{index}/Packages", f"{index}/Packages.gz"], label, fields))
    _sign(out, release_dir)
