"""The filter that spares a rerun an apt call per role (plugins/filter/packages.py), on package
facts as ansible.builtin.package_facts returns them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "packages.py"
_spec = importlib.util.spec_from_file_location("packages", _PLUGIN)
packages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(packages)

INSTALLED = {
    "nginx": [{"name": "nginx", "version": "1.22.1-9+deb12u2", "arch": "amd64", "source": "apt"}],
    "nvidia-container-toolkit": [{"name": "nvidia-container-toolkit", "version": "1.17.8-1", "source": "apt"}],
}


def test_every_package_present_leaves_nothing_to_install() -> None:
    assert packages.packages_missing(["nginx", "nvidia-container-toolkit"], INSTALLED) == []


def test_a_package_absent_is_missing_and_the_present_ones_are_not() -> None:
    assert packages.packages_missing(["nginx", "redis-server"], INSTALLED) == ["redis-server"]


@pytest.mark.parametrize(("pin", "missing"), [
    ("nvidia-container-toolkit=1.17.8-1", False),
    ("nvidia-container-toolkit=1.17.8", False),
    ("nvidia-container-toolkit=1.18.0-1", True),
])
def test_a_pinned_package_counts_only_in_its_version(pin: str, missing: bool) -> None:
    assert packages.packages_missing([pin], INSTALLED) == ([pin] if missing else [])


def test_without_package_facts_every_package_goes_to_apt() -> None:
    assert packages.packages_missing(["nginx", "ufw"], None) == ["nginx", "ufw"]


def test_the_dpkg_listing_keeps_the_installed_packages_with_their_versions() -> None:
    listing = ("ii  nginx 1.22.1-9+deb12u2\n"
               "rc  redis-server 5:7.0.15-1~deb12u1\n"
               "iU  docker-ce 5:27.3.1-1~debian.12~bookworm\n"
               "hi  nvidia-container-toolkit 1.17.8-1\n"
               "un  apparmor <none>\n")
    installed = packages.dpkg_packages(listing)
    assert installed == {"nginx": [{"version": "1.22.1-9+deb12u2"}],
                         "nvidia-container-toolkit": [{"version": "1.17.8-1"}]}
    assert packages.packages_missing(["nginx", "redis-server", "nvidia-container-toolkit=1.17"], installed) \
        == ["redis-server"]


def test_an_empty_listing_leaves_every_package_missing() -> None:
    assert packages.packages_missing(["nginx"], packages.dpkg_packages("")) == ["nginx"]
