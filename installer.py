#!/usr/bin/env python3
"""Entry point: python3 installer.py [COMMAND] --inventory ENV|PATH [options]

Run outside a virtual environment, it first creates .venv/ beside this file from the pinned
requirements.txt (again whenever that file changes) and re-runs itself there. With
`--bundle FILE` it installs them from the offline bundle's wheels, with no package index."""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
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


def venv_usable(python: Path) -> bool:
    """An earlier creation cut short (no ensurepip, Ctrl-C) leaves a python without pip."""
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, check=False)
    return probe.returncode == 0


def os_release(file: Path = Path("/etc/os-release")) -> dict[str, str]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    return {k: v.strip().strip('"') for k, _, v in (line.partition("=") for line in lines) if k and v}


def venv_packages(release: dict[str, str], version: str) -> list[str]:
    """The packages that bring ensurepip to this Python on Debian and Ubuntu; none elsewhere."""
    family = {release.get("ID", ""), *release.get("ID_LIKE", "").split()}
    return ["python3-venv", f"python{version}-venv"] if family & {"debian", "ubuntu"} else []


def key_fingerprint(armored: bytes) -> str:
    """The v4 fingerprint of the primary key of an armored OpenPGP public key: SHA-1 over
    0x99, the key packet's two-byte length and the packet (RFC 4880, 12.2). No gpg needed."""
    lines = armored.decode("ascii", "replace").splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("-----BEGIN PGP PUBLIC KEY BLOCK"))
    body = lines[start + 1:]
    body = body[body.index("") + 1:] if "" in body else body
    data = base64.b64decode("".join(line for line in body if line and not line.startswith(("=", "-----"))))
    if data[0] & 0x40:  # a new-format packet header
        tag, first = data[0] & 0x3F, data[1]
        length, begin = (first, 2) if first < 192 else (((first - 192) << 8) + data[2] + 192, 3)
    else:
        tag, size = (data[0] >> 2) & 0x0F, (1, 2, 4)[data[0] & 0x03]
        length, begin = int.from_bytes(data[1:1 + size], "big"), 1 + size
    packet = data[begin:begin + length]
    if tag != 6 or packet[:1] != b"\x04":
        raise ValueError("not a version 4 OpenPGP public key")
    return hashlib.sha1(b"\x99" + len(packet).to_bytes(2, "big") + packet).hexdigest().upper()  # noqa: S324 (OpenPGP's own)


def pinned_fingerprint(argv: list[str]) -> str:
    """--fingerprint FPR from the command line, as the bundle key's fingerprint is written."""
    for n, arg in enumerate(argv):
        value = argv[n + 1] if arg == "--fingerprint" and n + 1 < len(argv) else (
            arg.partition("=")[2] if arg.startswith("--fingerprint=") else "")
        if value:
            return "".join(value.split()).upper()
    return ""


def bundle_apt_options(bundle: Path, work: Path) -> list[str]:
    """apt options that make the bundle's repository of this release apt's only source, in
    `work`, once the key in the bundle is the pinned one; the host's own lists are untouched."""
    codename = os_release().get("VERSION_CODENAME", "")
    prefix, found = f"apt/{codename}/", 0
    with tarfile.open(bundle) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            in_repository = name.startswith(prefix) and "/" not in name[len(prefix):]
            if member.isfile() and (name == "bundle-key.asc" or in_repository):
                (work / Path(name).name).write_bytes(tar.extractfile(member).read())
                found += 1
    pinned = pinned_fingerprint(sys.argv[1:])
    key = work / "bundle-key.asc"
    if not key.is_file() or found < 2:
        fail(f"--bundle {bundle}: holds no repository of Debian {codename}, this machine's")
    if not pinned or key_fingerprint(key.read_bytes()) != pinned:
        fail(f"--bundle {bundle}: its key is not the one --fingerprint gives; nothing was installed from it")
    (work / "lists" / "partial").mkdir(parents=True)
    (work / "bundle.list").write_text(f"deb [signed-by={key}] file:{work} ./\n")
    return ["-o", f"Dir::Etc::SourceList={work / 'bundle.list'}", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={work / 'lists'}"]


def install_venv_support(packages: list[str]) -> bool:
    """As root, install what venv needs with apt (refreshing its lists once if they are stale);
    with --bundle, from the bundle's repository of this release alone."""
    if not packages or os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    sys.stderr.write(f"installing {' '.join(packages)} (needed to create the installer's virtual environment) ...\n")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    bundle = bundle_given(sys.argv[1:])
    if bundle:
        with tempfile.TemporaryDirectory(prefix="installer-apt-") as work:
            os.chmod(work, 0o755)  # noqa: S103 apt reads file: sources as its own user; nothing secret here
            options = bundle_apt_options(bundle, Path(work))
            return (subprocess.run(["apt-get", *options, "update", "-q"], env=env, check=False).returncode == 0
                    and subprocess.run(["apt-get", *options, "install", "-y", "-q", *packages], env=env,
                                       check=False).returncode == 0)
    install = ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(install, env=env, check=False).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
    return subprocess.run(install, env=env, check=False).returncode == 0


def create_venv() -> None:
    if VENV.exists():
        sys.stderr.write(f"rebuilding {VENV}: an earlier run left it incomplete ...\n")
        shutil.rmtree(VENV)
    sys.stderr.write(f"creating the installer's virtual environment in {VENV} ...\n")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    packages = venv_packages(os_release(), version)
    for attempt in range(2):
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
            return
        except (OSError, subprocess.CalledProcessError, SystemExit):
            # Debian and Ubuntu leave ensurepip out unless python3-venv is installed; their
            # venv module then prints its own advice and exits.
            shutil.rmtree(VENV, ignore_errors=True)
            if attempt or not install_venv_support(packages):
                break
    if not packages:
        fail(f"this Python cannot create a virtual environment; install the venv module of Python {version}, "
             "then run the same command again")
    sudo = "" if os.geteuid() == 0 else "sudo "
    fail(f"this Python cannot create a virtual environment; install {' and '.join(packages)} "
         f"(`{sudo}apt-get install {' '.join(packages)}`), then run the same command again")


def bundle_given(argv: list[str]) -> "Path | None":
    """The offline bundle named on the command line (--bundle FILE, or bundle verify FILE), if any."""
    if argv[:2] == ["bundle", "verify"] and len(argv) > 2:
        return Path(argv[2])
    for n, arg in enumerate(argv):
        if arg == "--bundle" and n + 1 < len(argv):
            return Path(argv[n + 1])
        if arg.startswith("--bundle="):
            return Path(arg.partition("=")[2])
    return None


def wheels_from_bundle(bundle: Path, folder: Path) -> None:
    """The bundle's wheels for this Python, into `folder`. Nothing else of the bundle is read
    before its signature is checked: pip checks each wheel against this checkout's
    requirements.txt hashes, not the bundle's."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix = f"wheels/python{version}/"
    found = 0
    try:
        with tarfile.open(bundle) as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                wheel = name[len(prefix):]
                if member.isfile() and name.startswith(prefix) and wheel.endswith(".whl") and "/" not in wheel:
                    (folder / wheel).write_bytes(tar.extractfile(member).read())
                    found += 1
    except (OSError, tarfile.TarError) as error:
        fail(f"--bundle {bundle}: {error}")
    if not found:
        fail(f"--bundle {bundle}: holds no wheels for Python {version}, this machine's; build the bundle with "
             "this machine's Debian release among its --release ones")


def bootstrap() -> None:
    """Create or refresh .venv/ from requirements.txt, then re-run this command inside it."""
    python = VENV / "bin" / "python"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    if not venv_usable(python):
        create_venv()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        bundle = bundle_given(sys.argv[1:])
        source = f"the wheels of {bundle}" if bundle else "the package index"
        sys.stderr.write(f"installing the installer's requirements ({REQUIREMENTS.name}) into {VENV} "
                         f"from {source} ...\n")
        with tempfile.TemporaryDirectory(prefix="installer-wheels-") as wheels:
            offline = []
            if bundle:
                wheels_from_bundle(bundle, Path(wheels))
                offline = ["--no-index", "--find-links", wheels]
            result = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *offline,
                 "--require-hashes", "-r", str(REQUIREMENTS)],
                check=False,
            )
        if result.returncode != 0:
            fail(f"pip could not install {REQUIREMENTS} from {source}; see its messages above")
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
