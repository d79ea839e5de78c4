"""The offline bundle's manifest and its check (`installer.py bundle verify FILE`).

A bundle is one tar archive. At its root: `manifest.json` (every other file's sha256 and
size), `manifest.json.asc` (a detached OpenPGP signature of it) and `bundle-key.asc` (the
public half of the key made for the bundle, which signs the manifest and the bundle's apt
repository). The key in the archive proves nothing alone: whoever trusts a bundle pins the
fingerprint the build printed (`--fingerprint`, or `platform_bundle_fingerprint`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from platformctl import validation
from platformctl.errors import BadInput, InstallerError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.asc"
PUBLIC_KEY = "bundle-key.asc"
OWN_FILES = (MANIFEST, SIGNATURE, PUBLIC_KEY)
FORMAT = 1
FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int


def digest(stream: IO[bytes]) -> Entry:
    sha, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return Entry(sha.hexdigest(), size)


def normal_fingerprint(text: str) -> str:
    """A fingerprint as gpg prints it or as people write it (spaces, lower case), in the one
    form the roles pin keys in (plugins/filter/signing_keys.py)."""
    value = validation.plan("signing_keys").fingerprint_of(text)
    if not FINGERPRINT.match(value):
        raise BadInput(f"--fingerprint {text!r}: expected the bundle key's 40 hex digits, as the build printed them")
    return value


def manifest_of(folder: Path) -> dict:
    """The manifest of every file under `folder` but the bundle's own three, by relative path."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name in OWN_FILES:
            continue
        with path.open("rb") as stream:
            entry = digest(stream)
        files[name] = {"sha256": entry.sha256, "size": entry.size}
    return {"format": FORMAT, "files": files}


class Keyring:
    """A throwaway GnuPG home: the bundle key is made, used or checked there, never in the
    operator's own keyring."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def gpg(self, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
        if shutil.which("gpg") is None:
            raise InstallerError("gpg is not installed on this machine; install it (apt-get install gpg) and run again")
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--no-tty", "--status-fd", "1", *args],
                              input=data, capture_output=True, check=False)

    def generate(self, name: str) -> str:
        made = self.gpg("--passphrase", "", "--quick-generate-key", name, "ed25519", "sign", "never")
        if made.returncode != 0:
            raise InstallerError(f"gpg could not make the bundle key: {made.stderr.decode(errors='replace').strip()}")
        return re.search(rb"^\[GNUPG:\] KEY_CREATED \S+ ([0-9A-F]{40})", made.stdout, re.MULTILINE)[1].decode()

    def export(self, fingerprint: str) -> bytes:
        """The key's public half, armored."""
        return self._output(f"gpg could not export the key {fingerprint}", "--armor", "--export", fingerprint)

    def sign(self, fingerprint: str, data: bytes) -> bytes:
        """A detached, armored signature of `data`."""
        return self._output("gpg could not sign", "--armor", "--detach-sign", "--local-user", fingerprint, data=data)

    def clearsign(self, fingerprint: str, data: bytes) -> bytes:
        """`data` with its signature around it, as apt reads an InRelease file."""
        return self._output("gpg could not sign", "--clearsign", "--local-user", fingerprint, data=data)

    def _output(self, failure: str, *args: str, data: bytes | None = None) -> bytes:
        # Into a file: standard output carries gpg's status lines.
        with tempfile.TemporaryDirectory(dir=self.home) as work:
            output = Path(work, "output")
            done = self.gpg("--output", str(output), *args, data=data)
            if done.returncode != 0 or not output.is_file():
                raise InstallerError(f"{failure}: {done.stderr.decode(errors='replace').strip()}")
            return output.read_bytes()

    def import_key(self, armored: bytes) -> list[str]:
        imported = self.gpg("--import", "--import-options", "import-minimal", data=armored)
        return [fpr.decode() for fpr in re.findall(rb"^\[GNUPG:\] IMPORT_OK \d+ ([0-9A-F]{40})", imported.stdout,
                                                   re.MULTILINE)]

    def signer(self, signature: bytes, data: bytes) -> str | None:
        """The fingerprint of the primary key whose good signature of `data` this is, else None."""
        with tempfile.TemporaryDirectory(dir=self.home) as work:
            signature_file, data_file = Path(work, "signature"), Path(work, "data")
            signature_file.write_bytes(signature)
            data_file.write_bytes(data)
            checked = self.gpg("--verify", str(signature_file), str(data_file))
        valid = re.search(rb"^\[GNUPG:\] VALIDSIG (?:\S+ ){9}([0-9A-F]{40})", checked.stdout, re.MULTILINE)
        return valid[1].decode() if checked.returncode == 0 and valid else None


def stop_agent(home: Path) -> None:
    """gpg starts an agent per home folder, which outlives gpg: stop it with the folder."""
    if shutil.which("gpgconf"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)


def signing_home() -> Path:
    """The bundle key's GnuPG home on the machine that builds bundles, beside the vault
    passwords (PLATFORMCTL_SECRETS_DIR, else ~/.config/platformctl): one key signs every bundle
    built there, so a site pins its fingerprint once and takes newer bundles under it."""
    base = Path(os.environ.get("PLATFORMCTL_SECRETS_DIR", Path.home() / ".config" / "platformctl"))
    home = base / "bundle-key"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


@contextmanager
def signing_turn(home: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One bundle build at a time with the key in `home`: two first builds would each make a
    key, and one build stopping gpg's agent would cut another's signing short."""
    with (home / "build.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another bundle build on this machine to finish (it holds {home / 'build.lock'})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def signing_key(ring: Keyring) -> tuple[str, bool]:
    """The fingerprint of the key in `ring` that signs bundles, made there the first time;
    and whether it was made now."""
    listed = ring.gpg("--list-secret-keys", "--with-colons").stdout
    found = re.findall(rb"^fpr:(?:[^:]*:){8}([0-9A-F]{40}):", listed, re.MULTILINE)
    if found:
        return found[0].decode(), False
    return ring.generate(f"platform offline bundles ({os.uname().nodename})"), True


@contextmanager
def keyring() -> Iterator[Keyring]:
    with tempfile.TemporaryDirectory(prefix="platformctl-gpg-") as home:
        os.chmod(home, 0o700)
        try:
            yield Keyring(Path(home))
        finally:
            stop_agent(Path(home))


def sign_folder(folder: Path, key_home: Path, fingerprint: str) -> None:
    """Writes the folder's manifest, its signature and the public key, with the bundle key
    kept in `key_home` (a GnuPG home)."""
    ring = Keyring(key_home)
    data = json.dumps(manifest_of(folder), indent=1, sort_keys=True).encode() + b"\n"
    (folder / MANIFEST).write_bytes(data)
    (folder / SIGNATURE).write_bytes(ring.sign(fingerprint, data))
    (folder / PUBLIC_KEY).write_bytes(ring.export(fingerprint))


def pack(folder: Path, archive: Path) -> None:
    """The folder as one tar archive: its contents at the archive's root, the bundle's own
    files first, so that a check can read them before the rest."""
    names = [*OWN_FILES, *sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                 if p.is_file() and p.relative_to(folder).as_posix() not in OWN_FILES)]
    with tarfile.open(archive, "w") as tar:
        for name in names:
            tar.add(folder / name, arcname=name, recursive=False)


@dataclass
class Verdict:
    fingerprint: str | None = None
    pinned: bool = False
    files: int = 0
    size: int = 0
    problems: list[str] = field(default_factory=list)
    manifest_sha256: str = ""


def _read(tar: tarfile.TarFile, verdict: Verdict) -> tuple[dict[str, bytes], dict[str, Entry]]:
    """The bundle's own files, whole, and the sha256 and size of every other file."""
    own: dict[str, bytes] = {}
    seen: dict[str, Entry] = {}
    for member in tar:
        name = member.name.removeprefix("./")
        if member.isdir():
            continue
        if not member.isfile():
            verdict.problems.append(f"{name}: not a plain file (bundles hold files only)")
        elif name.startswith("/") or ".." in name.split("/"):
            verdict.problems.append(f"{name}: a path outside the bundle")
        elif name in own or name in seen:
            verdict.problems.append(f"{name}: twice in the archive (unpacking would keep the second)")
        elif name in OWN_FILES:
            own[name] = tar.extractfile(member).read()
        else:
            seen[name] = digest(tar.extractfile(member))
    return own, seen


def _trusted_manifest(own: dict[str, bytes], pinned: str | None, verdict: Verdict) -> dict[str, Entry] | None:
    """The manifest's entries when its signature verifies with the bundle's key (and that key
    is the pinned one, when one is), else None with the reason in the verdict."""
    missing = [name for name in OWN_FILES if name not in own]
    if missing:
        verdict.problems.append(f"{', '.join(missing)}: missing, so nothing in the bundle can be trusted")
        return None
    with keyring() as ring:
        fingerprints = ring.import_key(own[PUBLIC_KEY])
        if len(fingerprints) != 1:
            verdict.problems.append(f"{PUBLIC_KEY}: expected one key, found {len(fingerprints)}")
            return None
        verdict.fingerprint, verdict.pinned = fingerprints[0], bool(pinned)
        if pinned and verdict.fingerprint != pinned:
            verdict.problems.append(f"{PUBLIC_KEY}: the bundle is signed by {verdict.fingerprint}, "
                                    f"not the pinned key {pinned}")
        if ring.signer(own[SIGNATURE], own[MANIFEST]) != verdict.fingerprint:
            verdict.problems.append(f"{MANIFEST}: its signature does not verify with the bundle's key "
                                    "(the manifest was changed after the build)")
            return None
    try:
        return {name: Entry(item["sha256"], int(item["size"]))
                for name, item in json.loads(own[MANIFEST])["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        verdict.problems.append(f"{MANIFEST}: not a bundle manifest ({error})")
        return None


def verify(archive: Path, pinned: str | None = None) -> Verdict:
    """Every problem of the bundle at `archive`: a signature that does not verify (or not by
    the pinned key), and each file missing, altered, or not in the manifest."""
    verdict = Verdict()
    if not archive.is_file():
        raise BadInput(f"{archive}: no such file (the bundle `installer.py bundle` wrote)")
    try:
        with tarfile.open(archive, "r:*") as tar:
            own, seen = _read(tar, verdict)
    except (tarfile.TarError, EOFError) as error:
        raise BadInput(f"{archive}: not a bundle (not a whole tar archive: {error})") from error
    listed = _trusted_manifest(own, pinned, verdict)
    if listed is None:
        return verdict
    verdict.manifest_sha256 = hashlib.sha256(own[MANIFEST]).hexdigest()
    for name, entry in listed.items():
        found = seen.get(name)
        if found is None:
            verdict.problems.append(f"{name}: missing")
        elif found != entry:
            verdict.problems.append(f"{name}: altered (sha256 {found.sha256}, {found.size} bytes; "
                                    f"the manifest says {entry.sha256}, {entry.size} bytes)")
    verdict.problems += [f"{name}: not in the manifest" for name in sorted(set(seen) - set(listed))]
    verdict.files = len(listed)
    verdict.size = sum(entry.size for entry in listed.values())
    return verdict


def unpacked(archive: Path, pinned: str, root: Path) -> Path:
    """The bundle at `archive`, checked (signed by the pinned key, every file as listed), in its
    folder under `root`: unpacked there the first time, the same folder for the same bundle."""
    verdict = verify(archive, pinned)
    if verdict.problems:
        raise BadInput(*(f"--bundle {archive}: {problem}" for problem in verdict.problems))
    folder = root / f"{verdict.fingerprint[-16:]}-{verdict.manifest_sha256[:16]}"
    if (folder / MANIFEST).is_file():
        return folder
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = root / f"{folder.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(archive, "r:*") as tar:
        # verify() has refused links, devices and paths outside: the data filter, where this
        # Python has it, is a second guard.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(partial, filter="data")
        else:
            tar.extractall(partial)  # noqa: S202 (checked by verify above)
    for repository in sorted((partial / "apt").iterdir()) if (partial / "apt").is_dir() else ():
        if repository.is_dir():
            repository_archive(repository, repository.with_suffix(".tar"))
    partial.rename(folder)
    return folder


def repository_archive(repository: Path, archive: Path) -> None:
    """A release's repository as the one file the offline_bundle role copies to each host: the
    same bytes for the same files (names sorted, no times nor owners), so that a rerun with the
    same bundle copies nothing."""
    with tarfile.open(archive, "w") as tar:
        for path in sorted(p for p in repository.iterdir() if p.is_file()):
            info = tarfile.TarInfo(path.name)
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            with path.open("rb") as stream:
                tar.addfile(info, stream)


def install_settings(folder: Path, fingerprint: str) -> dict:
    """The settings that point a run at an unpacked bundle instead of the network: its folder
    (the bundle role serves each host its release's repository from there), Ollama's release
    and models, and each app image's archive (platform_bundle_images)."""
    from platformctl.bundle_plan import image_file

    described = json.loads((folder / "bundle.json").read_text())
    plan = described["plan"]
    settings: dict = {"platform_bundle_dir": str(folder), "platform_bundle_releases": described["releases"],
                      "platform_bundle_fingerprint": fingerprint,
                      "platform_bundle_images": {image: str(folder / "images" / image_file(image))
                                                 for image in plan["images"]}}
    if plan["ollama_archive"]:
        settings["ollama_archive_src"] = str(folder / "ollama" / plan["ollama_archive"]["name"])
    if plan["ollama_models"]:
        settings["ollama_models_src"] = str(folder / "models")
    return settings
