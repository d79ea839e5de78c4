"""The offline_bundle role with a STAND-IN bundle (standin/build_bundle.py): the package only
the bundle's repository has was installed from it, and after the run apt has the host's own
sources back, the bundle's key trusted for the bundle's source only."""

from __future__ import annotations

import os
from pathlib import Path

import testinfra.utils.ansible_runner

INVENTORY = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
BUNDLE = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "standin-bundle" / "bundle"
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")
assert testinfra_hosts, f"no host in {INVENTORY}: every test would be skipped"


def test_the_package_only_the_bundle_has_came_from_it(host):
    assert host.package("platform-bundle-standin").is_installed
    assert host.check_output("platform-bundle-standin") == "from the bundle"


def test_the_release_repository_is_unpacked_and_its_source_trusts_the_bundle_key_only(host):
    assert host.file("/var/lib/platform/bundle/repository/InRelease").is_file
    source = host.file("/var/lib/platform/bundle/sources/platform-bundle.sources").content_string
    assert "URIs: file:/var/lib/platform/bundle/repository\n" in source
    assert "Signed-By: /etc/apt/keyrings/platform-bundle.asc\n" in source and "trusted" not in source
    fingerprint = (BUNDLE / "bundle-key.fingerprint").read_text().strip()
    assert f"fpr:::::::::{fingerprint}:" in host.check_output(
        "gpg --batch --show-keys --with-colons /etc/apt/keyrings/platform-bundle.asc")


def test_apt_has_the_hosts_own_sources_back_after_the_run(host):
    assert not host.file("/etc/apt/apt.conf.d/00platform-bundle").exists
    unchanged = host.run("sha256sum --check --quiet /root/apt-sources.sha256")
    assert unchanged.rc == 0, unchanged.stdout + unchanged.stderr
    # The bundle's source is not among apt's own: with them back, apt no longer knows it.
    assert "/var/lib/platform/bundle" not in host.check_output("apt-cache policy platform-bundle-standin")
    assert not host.file("/etc/apt/trusted.gpg.d/platform-bundle.asc").exists
