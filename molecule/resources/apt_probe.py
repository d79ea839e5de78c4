"""Checks the scenarios' tests make of a role's signed apt repository (a STAND-IN built with
apt_repo.py): whether apt trusts it through a given key, and a converge of the scenario
with other variables (a wrong pinned fingerprint must stop the run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def apt_update_through(host, *, uri: str, suite: str, component: str, keyring: str) -> tuple:
    """`apt-get update` of the repository alone with Signed-By `keyring` (component "" for a flat
    repository), read into a list folder of its own so the host's lists are not touched: (the
    run, the index files read)."""
    work = host.check_output("mktemp -d")
    try:
        components = f"Components: {component}\\n" if component else ""  # none for a flat repository
        host.run_expect([0], f"mkdir -p {work}/parts {work}/lists/partial && printf 'Types: deb\\nURIs: {uri}\\n"
                             f"Suites: {suite}\\n{components}Signed-By: {keyring}\\n'"
                             f" > {work}/parts/probe.sources")
        update = host.run(f"apt-get update -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts={work}/parts "
                          f"-o Dir::State::Lists={work}/lists")
        indexes = host.check_output(f"ls {work}/lists").split()
    finally:
        host.run(f"rm -rf {work}")
    return update, indexes


def refused(update) -> bool:
    """Whether apt refused the repository's signature."""
    return "NO_PUBKEY" in update.stderr or "not signed" in update.stderr


def converge(host, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """The scenario's converge.yml on this host alone, with `extra` ansible-playbook arguments."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"),
                           "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
                           "--limit", host.backend.host, *extra,
                           str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml")],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def check_that_a_wrong_pinned_key_stops_the_run(host, fingerprint_variable: str, keyring: str,
                                                *converge_args: str) -> None:
    """A converge with another pinned fingerprint in `fingerprint_variable` must stop, naming
    the key it wanted, and remove `keyring`; a converge with the inventory's puts it back.
    `converge_args` go to both converges (`--tags ROLE` for the role under test alone)."""
    wrong = "0000 1111 2222 3333 4444  5555 6666 7777 8888 9999"
    try:
        run = converge(host, *converge_args, "-e", f"{fingerprint_variable}='{wrong}'")
        printed = " ".join(run.stdout.split())
        assert run.returncode != 0, printed[-2000:]
        assert "not the pinned key 0000111122223333444455556666777788889999" in printed, printed[-2000:]
        assert not host.file(keyring).exists
    finally:
        restored = converge(host, *converge_args)
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert host.file(keyring).exists
