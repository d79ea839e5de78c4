"""The Release files preflight asks each apt repository of the host for
(plugins/filter/apt_sources.py), from sources as Debian 12 (.list) and 13 (.sources) write them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "apt_sources.py"
_spec = importlib.util.spec_from_file_location("apt_sources", _PLUGIN)
apt_sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(apt_sources)

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb http://deb.debian.org/debian bookworm main non-free-firmware
deb-src http://deb.debian.org/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian/ bookworm stable
deb http://security.debian.org/debian-security bookworm-security main
deb file:/srv/local-repo ./
deb http://deb.debian.org/debian bookworm main contrib
"""

DEB822 = """\
Types: deb deb-src
URIs: http://deb.debian.org/debian https://mirror.example/debian/
Suites: trixie trixie-updates
Components: main

Types: deb-src
URIs: http://sources-only.example/debian
Suites: trixie
Components: main

Types: deb
URIs: https://nvidia.github.io/libnvidia-container/stable/deb/amd64
Suites: /
Signed-By: /etc/apt/keyrings/nvidia.gpg
"""


def test_one_line_sources_give_each_repository_s_inrelease_once():
    """Options in brackets, a trailing slash, deb-src, comments, file: and a repeated repository."""
    assert apt_sources.apt_release_urls(ONE_LINE) == [
        "http://deb.debian.org/debian/dists/bookworm/InRelease",
        "https://download.docker.com/linux/debian/dists/bookworm/InRelease",
        "http://security.debian.org/debian-security/dists/bookworm-security/InRelease",
    ]


def test_deb822_sources_give_every_uri_and_suite_and_a_flat_repository_beside_its_packages():
    assert apt_sources.apt_release_urls(DEB822) == [
        "http://deb.debian.org/debian/dists/trixie/InRelease",
        "http://deb.debian.org/debian/dists/trixie-updates/InRelease",
        "https://mirror.example/debian/dists/trixie/InRelease",
        "https://mirror.example/debian/dists/trixie-updates/InRelease",
        "https://nvidia.github.io/libnvidia-container/stable/deb/amd64/InRelease",
    ]


def test_both_kinds_in_one_read_as_preflight_concatenates_them():
    urls = apt_sources.apt_release_urls(ONE_LINE + DEB822)
    assert len(urls) == len(set(urls)) == 8
