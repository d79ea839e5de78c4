"""The filter that reads which keys a signing-key file holds (plugins/filter/signing_keys.py),
on gpg's own output for a key made here."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "signing_keys.py"
_spec = importlib.util.spec_from_file_location("signing_keys", _PLUGIN)
keys = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(keys)

# gpg --show-keys --with-colons of a key with a subkey (NVIDIA's repository key, shortened).
LISTING = """\
pub:e:4096:1:DDCAE044F796ECB0:1506556800:::-:::scSC::::::23::0:
fpr:::::::::C95B321B61E88C1809C4F759DDCAE044F796ECB0:
uid:e::::1506556800::A8E9C1B3::NVIDIA CORPORATION (Open Source Projects) <cudatools@nvidia.com>::::::::::0:
sub:e:2048:1:6ED91CA3AC1160CD:1568764800:1623802464:::::s::::::23:
fpr:::::::::F1FB3B6BB5E6E4A9B0F2C7126ED91CA3AC1160CD:
"""


def test_only_the_primary_keys_fingerprints_count():
    assert keys.gpg_primary_fingerprints(LISTING) == ["C95B321B61E88C1809C4F759DDCAE044F796ECB0"]
    assert keys.gpg_primary_fingerprints("") == []


def test_a_fingerprint_written_with_spaces_or_in_lower_case_is_the_same():
    assert keys.fingerprint_of("9dc8 5822 9fc7 dd38 854a  e2d8 8d81 803c 0ebf cd88") == (
        "9DC858229FC7DD38854AE2D88D81803C0EBFCD88")


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_gpgs_listing_of_a_real_key_gives_its_fingerprint(tmp_path):
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(tmp_path), "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-generate-key", "test key <test@example.invalid>", "ed25519", "sign", "1d"],
                   check=True)
    key = tmp_path / "key.asc"
    subprocess.run([*gpg, "--armor", "--output", str(key), "--export"], check=True)
    listing = subprocess.run(["gpg", "--homedir", str(tmp_path), "--show-keys", "--with-colons", str(key)],
                             capture_output=True, text=True, check=True).stdout
    fingerprint = subprocess.run([*gpg, "--list-keys", "--with-colons"], capture_output=True, text=True,
                                 check=True).stdout.split("fpr:::::::::")[1].split(":")[0]
    assert keys.gpg_primary_fingerprints(listing) == [fingerprint]
