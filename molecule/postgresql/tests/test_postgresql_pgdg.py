"""The postgresql role's pgdg path (postgresql_repository: pgdg), on the hosts that take it.

STAND-IN: the PostgreSQL project's repository (apt.postgresql.org) cannot be reached on the
CI machine, so no other major version than the distribution's own can be fetched here.
prepare.yml republishes the release's own postgresql-15 and postgresql-client-15 under a
pgdg version (15.x-1.pgdg120+1, higher than Debian's) as a signed stand-in of the
repository (standin/build_repo.py), served over HTTP inside the host at postgresql_pgdg_url.
The role installs from it through its real pgdg path: the key of postgresql_pgdg_key_file
pinned by postgresql_pgdg_key_fingerprint, the deb822 source, apt's signature check. What
runs is Debian's build of PostgreSQL 15 under the stand-in's version.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
from apt_probe import apt_update_through, check_that_a_wrong_pinned_key_stops_the_run, refused

INVENTORY = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
testinfra_hosts = [name for name in RUNNER.get_hosts("postgres")
                   if RUNNER.get_variables(name).get("postgresql_repository") == "pgdg"]
assert testinfra_hosts, f"no host of group postgres with postgresql_repository pgdg in {INVENTORY}"

# What prepare.yml built, on the controller.
STANDIN = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pgdg-standin-repo"
KEYRING = "/etc/apt/keyrings/pgdg.asc"
SOURCE = "/etc/apt/sources.list.d/pgdg.sources"


def setting(host, name: str) -> str:
    return RUNNER.get_variables(host.backend.host)[name]


def suite(host) -> str:
    return f"{host.system_info.codename}-pgdg"


def packages(host) -> list[str]:
    major = setting(host, "postgresql_pgdg_version")
    return [f"postgresql-{major}", f"postgresql-client-{major}"]


def standin_versions(host) -> dict[str, str]:
    """Package: version, from the stand-in's own index."""
    index = (STANDIN / "dists" / suite(host) / "main" / "binary-amd64" / "Packages").read_text()
    stanzas = [dict(re.findall(r"^(Package|Version): (\S+)$", stanza, re.MULTILINE)) for stanza in index.split("\n\n")]
    return {stanza["Package"]: stanza["Version"] for stanza in stanzas if stanza}


def test_packages_installed_at_the_standins_pgdg_version_from_its_url(host):
    versions = standin_versions(host)
    url = setting(host, "postgresql_pgdg_url")
    for name in packages(host):
        version = versions[name]
        assert re.fullmatch(r"[0-9.]+-1\.pgdg[0-9]+\+1", version), version
        assert host.package(name).version == version, name
        policy = host.check_output(f"apt-cache policy {name}").splitlines()
        installed = policy.index(next(line for line in policy if line.startswith(f" *** {version} ")))
        assert policy[installed + 1].split()[1:3] == [url, f"{suite(host)}/main"], "\n".join(policy)


def test_source_and_key(host):
    lines = host.file(SOURCE).content_string.splitlines()
    for line in ("Types: deb", f"URIs: {setting(host, 'postgresql_pgdg_url')}", f"Suites: {suite(host)}",
                 "Components: main", f"Signed-By: {KEYRING}"):
        assert line in lines
    key = host.file(KEYRING)
    assert (key.user, key.group, key.mode) == ("root", "root", 0o644)
    assert key.content_string == (STANDIN / "gpgkey").read_text()


@pytest.mark.parametrize(("keyring", "trusted"), [
    (KEYRING, True),
    ("/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc", False),
])
def test_apt_trusts_the_repository_only_through_its_key(host, keyring, trusted):
    """The repository's signature is checked: with another key (here the real pgdg key,
    which did not sign the stand-in) apt refuses its index."""
    update, indexes = apt_update_through(host, uri=setting(host, "postgresql_pgdg_url"), suite=suite(host),
                                         component="main", keyring=keyring)
    assert refused(update) != trusted, update.stderr
    assert (update.rc == 0) == trusted, update.stderr
    assert any(name.endswith("_main_binary-amd64_Packages") for name in indexes) == trusted, indexes


def test_the_server_of_the_standin_package_runs_and_answers(host):
    major = setting(host, "postgresql_pgdg_version")
    service = host.service(f"postgresql@{major}-main")
    assert service.is_running
    assert service.is_enabled
    pid = host.check_output(f"head -1 /var/lib/postgresql/{major}/main/postmaster.pid")
    binary = host.check_output(f"readlink /proc/{pid}/exe")
    assert binary == f"/usr/lib/postgresql/{major}/bin/postgres"
    assert host.check_output(f"dpkg -S {binary}").startswith(f"postgresql-{major}:")
    answer = host.check_output(f"runuser -u postgres -- psql -Atc {shlex.quote('SHOW server_version_num')}")
    assert answer.startswith(major), answer


# Last: it removes the key, and puts it back with another converge.
def test_a_signing_key_that_is_not_the_pinned_one_stops_the_run(host):
    """The repository's key is trusted only with its pinned fingerprint: another key is
    removed and the run stops, naming the key it wanted."""
    check_that_a_wrong_pinned_key_stops_the_run(host, "postgresql_pgdg_key_fingerprint", KEYRING)
