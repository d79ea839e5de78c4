"""installer.py's own start on a fresh machine: the virtual environment it builds (or rebuilds
after an earlier run left it half made) and what it installs or asks for to build it."""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
import venv
from pathlib import Path

import pytest

from platformctl import paths

spec = importlib.util.spec_from_file_location("installer_entry", paths.ROOT / "installer.py")
installer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(installer)


def test_a_venv_without_pip_is_not_usable_and_is_rebuilt(tmp_path, monkeypatch, capsys):
    half_made = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(half_made)  # what a creation without ensurepip leaves
    python = half_made / "bin" / "python"
    assert python.exists() and not installer.venv_usable(python)
    monkeypatch.setattr(installer, "VENV", half_made)
    installer.create_venv()
    assert installer.venv_usable(python)
    assert "rebuilding" in capsys.readouterr().err


@pytest.mark.parametrize(("release", "packages"), [
    ("ID=debian\nVERSION_ID=\"12\"\n", ["python3-venv", "python3.11-venv"]),
    ("ID=ubuntu\nID_LIKE=debian\n", ["python3-venv", "python3.11-venv"]),
    ("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", ["python3-venv", "python3.11-venv"]),
    ("ID=fedora\n", []),
])
def test_debian_and_ubuntu_get_their_venv_packages(tmp_path, release, packages):
    file = tmp_path / "os-release"
    file.write_text(release)
    assert installer.venv_packages(installer.os_release(file), "3.11") == packages


# Python's own venv raises OSError without ensurepip; Debian's prints its advice and exits.
@pytest.mark.parametrize("without_ensurepip", [OSError("ensurepip is not available"), SystemExit(1)])
def test_without_root_nothing_is_installed_and_the_message_says_what_to_install(tmp_path, monkeypatch, capsys,
                                                                                without_ensurepip):
    monkeypatch.setattr(installer, "VENV", tmp_path / "venv")
    monkeypatch.setattr(installer.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(installer, "os_release", lambda: {"ID": "debian"})

    def no_ensurepip(self, env_dir):
        raise without_ensurepip

    monkeypatch.setattr(installer.venv.EnvBuilder, "create", no_ensurepip)
    with pytest.raises(SystemExit) as stopped:
        installer.create_venv()
    assert stopped.value.code == 4
    message = capsys.readouterr().err
    assert "`sudo apt-get install python3-venv python3." in message
    assert not (tmp_path / "venv").exists()


def requirement_blocks(path) -> list[str]:
    """Each requirement of a locked file with its continuation lines, comments left out."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    return [block for block in text.replace("\\\n", " ").splitlines() if block.strip()]


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_every_locked_requirement_is_pinned_with_the_hashes_of_its_files(name):
    blocks = requirement_blocks(paths.ROOT / name)
    assert len(blocks) > 10
    for block in blocks:
        assert "==" in block and "--hash=sha256:" in block, block


def test_the_installer_installs_its_requirements_only_with_matching_hashes(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(installer, "VENV", tmp_path / "venv")
    monkeypatch.setattr(installer, "STAMP", tmp_path / "stamp")
    monkeypatch.setattr(installer, "venv_usable", lambda python: True)
    monkeypatch.setattr(installer.subprocess, "run",
                        lambda argv, check: calls.append(argv) or installer.subprocess.CompletedProcess(argv, 0))
    monkeypatch.setattr(installer.os, "execv", lambda *args: None)
    installer.bootstrap()
    assert calls and "--require-hashes" in calls[0] and calls[0][-1] == str(paths.ROOT / "requirements.txt")


def bundle_with_wheels(path, version: str):
    with tarfile.open(path, "w") as tar:
        for name, data in ((f"wheels/python{version}/ansible-12.3.0-py3-none-any.whl", b"a wheel"),
                           (f"wheels/python{version}/notes.txt", b"not a wheel"),
                           ("wheels/python3.0/other-1.0-py3-none-any.whl", b"another Python's")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_with_a_bundle_the_requirements_come_from_its_wheels_for_this_python_only(tmp_path, monkeypatch):
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundle = bundle_with_wheels(tmp_path / "platform.bundle", version)
    seen = {}

    def pip(argv, check):
        folder = Path(argv[argv.index("--find-links") + 1])
        seen.update(argv=argv, wheels=sorted(p.name for p in folder.iterdir()))
        return installer.subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(installer, "VENV", tmp_path / "venv")
    monkeypatch.setattr(installer, "STAMP", tmp_path / "stamp")
    monkeypatch.setattr(installer, "venv_usable", lambda python: True)
    monkeypatch.setattr(installer.sys, "argv", ["installer.py", "-i", "prod", "--bundle", str(bundle)])
    monkeypatch.setattr(installer.subprocess, "run", pip)
    monkeypatch.setattr(installer.os, "execv", lambda *args: None)
    installer.bootstrap()
    assert "--no-index" in seen["argv"] and "--require-hashes" in seen["argv"]
    # The hashes pip checks are this checkout's, never the bundle's.
    assert seen["argv"][-1] == str(paths.ROOT / "requirements.txt")
    assert seen["wheels"] == ["ansible-12.3.0-py3-none-any.whl"]


def test_a_bundle_without_this_pythons_wheels_stops_with_what_to_do(tmp_path, monkeypatch, capsys):
    bundle = bundle_with_wheels(tmp_path / "platform.bundle", "3.0")
    monkeypatch.setattr(installer, "VENV", tmp_path / "venv")
    monkeypatch.setattr(installer, "STAMP", tmp_path / "stamp")
    monkeypatch.setattr(installer, "venv_usable", lambda python: True)
    monkeypatch.setattr(installer.sys, "argv", ["installer.py", "--bundle=" + str(bundle), "-i", "prod"])
    with pytest.raises(SystemExit) as stopped:
        installer.bootstrap()
    assert stopped.value.code == 4
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"holds no wheels for Python {version}, this machine's" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["-i", "prod", "--bundle", "b.bundle"], "b.bundle"), (["--bundle=b.bundle", "check"], "b.bundle"),
    (["bundle", "verify", "b.bundle", "--fingerprint", "F"], "b.bundle"), (["-i", "prod"], None),
    (["bundle", "--inventory", "prod", "--output", "b.bundle"], None)])
def test_the_bundle_the_command_line_names(argv, expected):
    assert installer.bundle_given(argv) == (Path(expected) if expected else None)


def test_the_bundle_keys_fingerprint_is_read_without_gpg_as_gpg_reads_it(tmp_path):
    from platformctl import bundle

    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    ring = bundle.Keyring(home)
    try:
        fingerprint = ring.generate("bundle key")
        armored = ring.export(fingerprint)
    finally:
        bundle.stop_agent(home)
    assert installer.key_fingerprint(armored) == fingerprint
    with pytest.raises(ValueError, match="not a version 4 OpenPGP public key"):
        installer.key_fingerprint(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nyAQA\n-----END PGP PUBLIC KEY BLOCK-----\n")


@pytest.mark.parametrize(("argv", "expected"), [
    (["--fingerprint", "b53a e77b adb6"], "B53AE77BADB6"), (["--fingerprint=ab12"], "AB12"), (["-i", "x"], "")])
def test_the_pinned_fingerprint_on_the_command_line(argv, expected):
    assert installer.pinned_fingerprint(argv) == expected
