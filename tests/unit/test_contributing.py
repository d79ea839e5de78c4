"""CONTRIBUTING.md's promise: a new component is a role, its manifest, its argument specs and
its scenario, nothing else. A throwaway role beside a copy of the platform's roles gets its
port into the firewall's rules and preflight's port check, its download into preflight's
sources, its verify entry point into the verify plan, and its secret generated, through the
same lookups, filters and installer code that the real roles go through."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from platformctl import cli, inventory, manifests, paths, validation
from platformctl.hostchecks import Context, judge_host
from platformctl.secrets import SecretStore

ROLE = "vectorstore"
FILES = {
    "meta/platform.yml": """---
description: A vector database for the apps (a throwaway role of the unit tests)
groups: [vectorstore]
order: 65
secrets:
  - {name: vectorstore_api_key, format: hex32}
ports:
  - port: 6333
    setting: vectorstore_port
    comment: vectorstore
    from_groups: [app]
    units: [vectorstore.service]
downloads:
  - name: vectorstore-release
    what: the vector store release
    url: "https://releases.vectorstore.test/v{{ vectorstore_version }}/vectorstore.tgz"
    when: not vectorstore_archive_src
    local_source: vectorstore_archive_src
""",
    "meta/main.yml": "---\ngalaxy_info: {role_name: vectorstore, author: tests, description: t, license: MIT,\n"
                     "  min_ansible_version: '2.17'}\ndependencies: []\n",
    "meta/argument_specs.yml": """---
argument_specs:
  main:
    short_description: A vector store
    options:
      vectorstore_version: {type: str, description: The release.}
      vectorstore_port: {type: int, description: Its port.}
      vectorstore_archive_src: {type: str, description: A local copy of the release.}
""",
    "defaults/main.yml": "---\nvectorstore_version: '1.2.3'\nvectorstore_port: 6333\nvectorstore_archive_src: ''\n",
    "tasks/main.yml": "---\n- name: Install\n  ansible.builtin.debug:\n    msg: install\n",
    "tasks/verify.yml": "---\n- name: Verify\n  ansible.builtin.debug:\n    msg: verify\n",
}
HOSTS = """all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: {python}
  hosts:
    app-1: {{firewall_host_address: 10.0.0.5}}
    vec-1:
  children:
    app: {{hosts: {{app-1: }}}}
    vectorstore: {{hosts: {{vec-1: }}}}
"""
# Reads the role's plans for vec-1 through the playbooks' own lookups and the firewall role's
# own variables, and writes them out: nothing else runs.
PLAYBOOK = """---
- name: What the playbooks derive for the new role
  hosts: vec-1
  gather_facts: false
  vars_files:
    - {roles}/platform/defaults/main.yml
    - {roles}/firewall/defaults/main.yml
    - {roles}/firewall/vars/main.yml
  tasks:
    - name: Write the plans
      ansible.builtin.copy:
        dest: {out}
        mode: "0600"
        content: "{{{{ {{'rules': __firewall_requested_rules, 'verify': query('platform_roles', action='verify'),
                     'downloads': query('platform_downloads')}} | to_json }}}}"
"""


@pytest.fixture
def roles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The platform's roles and the new one, in a folder of their own."""
    copy = tmp_path / "roles"
    shutil.copytree(paths.ROLES, copy)
    for name, text in FILES.items():
        (copy / ROLE / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / ROLE / name).write_text(text)
    monkeypatch.setattr(paths, "ROLES", copy)
    monkeypatch.setenv("PLATFORMCTL_SECRETS_DIR", str(tmp_path / "secrets"))
    return copy


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    folder = tmp_path / "inventory"
    (folder / "group_vars" / "all").mkdir(parents=True)
    (folder / "hosts.yml").write_text(HOSTS.format(python=sys.executable))
    return folder


def test_the_playbooks_plan_the_new_role_from_its_manifest(roles, hosts, tmp_path):
    out, playbook = tmp_path / "plans.json", tmp_path / "plans.yml"
    playbook.write_text(PLAYBOOK.format(roles=roles, out=out))
    env = dict(os.environ, ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_ROLES_PATH=str(roles), ANSIBLE_NOCOLOR="1")
    # The SSH port would be read from the host's sshd; this plan reads nothing from the host.
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(hosts / "hosts.yml"),
                          "-e", "firewall_ssh_port=22", str(playbook)],
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    plans = json.loads(out.read_text())
    assert {"rule": "allow", "port": "6333", "proto": "tcp", "from": "10.0.0.5",
            "comment": "vectorstore from the app hosts"} in plans["rules"]
    assert {"name": ROLE, "tasks": "verify", "hosts": ["vec-1"], "tags": [ROLE]} in plans["verify"]
    assert plans["downloads"] == [{"role": ROLE, "name": "vectorstore-release", "what": "the vector store release",
                                   "url": "https://releases.vectorstore.test/v1.2.3/vectorstore.tgz",
                                   "local_source": "vectorstore_archive_src"}]


def test_the_installer_generates_its_secret_and_checks_its_port_and_download(roles, hosts):
    loaded = inventory.load(inventory.resolve(str(hosts)), [])
    session = cli.Session(args=None, console=None, inventory=loaded.inventory, documents={}, loaded=loaded,
                          roles=validation.applied_roles(loaded), store=SecretStore(loaded.inventory))
    assert session.wanted_secrets()["vectorstore_api_key"] == "hex32"
    session.store.ensure(session.wanted_secrets())
    assert len(session.store.load()["vectorstore_api_key"]) == 64

    context = Context({}, manifests.load_all(), loaded.groups())
    probe = {"os": "Debian 12", "python": "3.11", "uid": "0", "cpus": 8, "memory_mb": 32000, "groups": [ROLE],
             "virtualization": "docker/guest", "listening": ["6333 docker.service dockerd"],
             "downloads": [{"role": ROLE, "url": "https://releases.vectorstore.test/v1.2.3/vectorstore.tgz",
                            "what": "the vector store release", "local_source": "vectorstore_archive_src",
                            "status": -1}]}
    problems = {p.check: p for p in judge_host("vec-1", probe, context)}
    assert problems["port"].found == "6333/tcp held by dockerd (docker.service)"
    assert "role vectorstore" in problems["port"].fix
    assert "vectorstore_archive_src (role vectorstore)" in problems["download source"].fix
    assert "port" not in {p.check for p in judge_host(
        "vec-1", {**probe, "listening": ["6333 vectorstore.service vectorstore"]}, context)}
