"""The role manifests (roles/*/meta/platform.yml): each follows the schema, and what the
installer and the playbooks derive from them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from platformctl import manifests, paths
from platformctl.manifests import ManifestError, parse

GOOD = {"description": "A store", "groups": ["store"], "order": 50,
        "ports": [{"port": 7000, "comment": "store", "from_groups": ["app"], "units": ["store.service"]}],
        "secrets": [{"name": "store_key", "format": "hex32"}],
        "downloads": [{"name": "release", "what": "the release", "url": "https://example.test/r.tgz",
                       "local_source": "store_archive_src"}],
        "minimums": {"store": {"memory_mb": 1024}}}


def test_every_role_has_a_manifest_that_follows_the_schema():
    roles = sorted(p.name for p in paths.ROLES.iterdir() if p.is_dir())
    assert sorted(m.role for m in manifests.load_all()) == roles


def test_every_declared_action_has_its_tasks_file():
    for manifest in manifests.load_all():
        for action in manifest.actions:
            assert (paths.ROLES / manifest.role / "tasks" / f"{manifests.ACTIONS[action]}.yml").is_file(), \
                f"{manifest.role}: action {action} without its tasks file"


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "blue"}, "colour: unknown key; expected one of description, groups"),
    ({"order": "first"}, "order: expected an integer, got str 'first'"),
    ({"order": True}, "order: expected an integer, got bool True"),
    ({"groups": None}, "groups: expected a list, got NoneType None"),
    ({"actions": ["deploy"]}, "actions: deploy: expected one of install, verify, backup, restore, drift"),
    ({"secrets": [{"name": "k", "format": "hex"}]}, "secrets[0]: format: expected one of alnum40, hex32, base64-32"),
    ({"secrets": [{"name": "k", "length": 9}]}, "secrets[0]: length: unknown key"),
    ({"ports": [{"port": 1, "comment": "x", "proto": "sctp"}]}, "ports[0]: proto: expected one of tcp, udp"),
    ({"ports": [{"port": 1, "comment": "x", "from_group": "app"}]}, "ports[0]: from_group: unknown key"),
    ({"ports": [{"comment": "x"}]}, "ports[0]: port: missing; expected an integer"),
    ({"minimums": {"store": {"ram": 1}}}, "minimums: store: expected a mapping of cpus, memory_mb, disk_free_gb"),
    ({"downloads": [{"name": "r", "what": "w", "url": "u"}]}, "downloads[0]: local_source: missing; expected a string"),
    ({"packages": [{"names": "{{ p }}", "source": {"uri": "u", "suite": "/", "key_url": "k", "key_fingerprint": "f"}}]},
     "packages[0]: source: Debian's own packages take no source"),
    ({"packages": [{"names": "{{ p }}", "repository": "v", "source": {"uri": "u", "suite": "/", "key_url": "k"}}]},
     "packages[0]: source: key_fingerprint: missing; expected a string"),
    ({"packages": [{"names": "{{ p }}", "repository": "v", "source": "https://v.example"}]},
     "packages[0]: source: expected a mapping, got str"),
])
def test_a_manifest_off_the_schema_names_the_file_and_key(change, message):
    with pytest.raises(ManifestError) as caught:
        parse("store", {**GOOD, **change}, "roles/store/meta/platform.yml")
    assert str(caught.value).startswith("roles/store/meta/platform.yml: ")
    assert message in str(caught.value)


def test_load_all_names_the_file_of_a_bad_manifest(tmp_path):
    (tmp_path / "store" / "meta").mkdir(parents=True)
    (tmp_path / "store" / "meta" / "platform.yml").write_text(yaml.safe_dump({**GOOD, "hosts": "all"}))
    with pytest.raises(ManifestError, match=r"store/meta/platform\.yml: hosts: unknown key"):
        manifests.load_all(tmp_path)


INVENTORY = {"all": ["gpu-app", "gpu-only", "db", "edge"], "gpu": ["gpu-app", "gpu-only"], "app": ["gpu-app"],
             "postgres": ["db"], "edge": ["edge"], "monitoring": []}


def plan(action: str, groups: dict | None = None) -> dict[str, list[str]]:
    return {r["name"]: r["hosts"] for r in manifests.dispatch(manifests.load_all(), groups or INVENTORY, action)}


def test_the_dispatch_gives_each_role_the_hosts_of_its_groups_in_order():
    install = plan("install")
    # The offline bundle's repository first: every other role's packages come from it.
    assert list(install)[:3] == ["offline_bundle", "common", "firewall"]
    assert install["common"] == INVENTORY["all"]
    assert install["nvidia_driver"] == ["gpu-app", "gpu-only"]
    assert install["nvidia_container_toolkit"] == ["gpu-app"]  # GPU hosts that run Docker only
    assert install["postgresql"] == ["db"]
    assert install["monitoring"] == []  # exporters only while the monitoring group has hosts
    assert plan("install", {**INVENTORY, "monitoring": ["db"]})["monitoring"] == INVENTORY["all"]
    # The files last, after the Redis snapshot they hold.
    assert list(plan("backup")) == ["postgresql", "redis", "backup"]
    assert plan("backup")["backup"] == INVENTORY["all"]
    assert "platform" not in install  # defaults only


def test_ports_follow_the_hosts_settings_and_go_to_the_groups_the_manifest_names():
    group_ports = manifests.firewall_group_ports(manifests.load_all(), {"postgresql_port": "6543"}, "172.31.0.0/24")
    postgres = {(e["port"], e.get("from_group"), e.get("from")) for e in group_ports["postgres"]}
    assert (6543, "app", None) in postgres and (6543, None, "172.31.0.0/24") in postgres
    assert (9187, "monitoring", None) in postgres
    assert {(e["port"], e.get("from_group")) for e in group_ports["edge"]} >= {(80, None), (443, None)}
    assert all(e["port"] not in (9090, 9093) for entries in group_ports.values() for e in entries)


def test_a_ports_condition_opens_it_only_where_it_holds():
    """A replicated Redis set's ports (Sentinel, replication between the Redis hosts, HAProxy's
    frontends) are opened only where the inventory has one."""
    def opened(holds):
        plan = manifests.firewall_group_ports(manifests.load_all(), {}, "172.31.0.0/24", holds=holds)
        return {(group, e["port"], e.get("from_group")) for group, entries in plan.items() for e in entries}

    single, replicated = opened(lambda condition: False), opened(lambda condition: True)
    cluster_ports = {("redis", 26379, "redis"), ("redis", 6380, "redis"), ("app", 16379, None), ("app", 21434, None)}
    assert not cluster_ports & single
    assert cluster_ports <= replicated
    assert ("redis", 6380, "app") in single


def test_secrets_of_the_applied_roles_only():
    loaded = manifests.load_all()
    assert set(manifests.secrets_of(loaded, ["redis"])) == {"redis_password", "redis_app_password", "platform_ca",
                                                            "redis_cluster_password", "redis_probe_password"}
    assert "grafana_admin_password" not in manifests.secrets_of(loaded, ["postgresql", "redis", "app"])


@pytest.mark.parametrize("secret_format", sorted(manifests.SECRET_FORMATS))
def test_each_secret_format_makes_a_fresh_value(secret_format):
    first, second = manifests.SECRET_FORMATS[secret_format](), manifests.SECRET_FORMATS[secret_format]()
    assert first != second and len(first) >= 36
    assert manifests.SECRET_FORMS[secret_format][0].match(first), "a generated value must have its own form"


EVERY_DOWNLOAD_ON = {"docker_source": "docker-ce", "postgresql_repository": "pgdg", "monitoring_grafana_enabled": True,
                     "nvidia_container_toolkit_force": True, "ollama_models": ["llama3.2:1b"]}
LOCAL_SOURCES = {"docker_ce_repository_url": "http://mirror.internal/docker", "docker_ce_key_file": "/srv/docker.gpg",
                 "nvidia_container_toolkit_repo_src": "/srv/nvidia", "ollama_archive_src": "/srv/ollama.tgz",
                 "ollama_archive_sha256": "0" * 64, "ollama_models_src": "/srv/models",
                 "monitoring_grafana_apt_url": "", "postgresql_pgdg_url": "http://mirror.internal/pgdg"}


def downloads_of_a_host_in_every_group(tmp_path, settings: dict) -> list[dict]:
    """playbooks/preflight.yml's lookup, as a host in every group with these settings sees it
    (only this machine's facts are read)."""
    groups = {group: {"hosts": {"node": None}} for group in ("gpu", "app", "postgres", "redis", "ollama", "edge",
                                                               "monitoring")}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **settings},
        "hosts": {"node": None}, "children": groups}}))
    out = tmp_path / "downloads.json"
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "node", "gather_facts": True, "gather_subset": ["min"], "tasks": [{
            "ansible.builtin.copy": {"dest": str(out), "mode": "0600",
                                     "content": "{{ query('platform_downloads') | to_json }}"}}]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_ROLES_PATH=str(paths.ROLES))
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
               str(tmp_path / "play.yml")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(out.read_text())


def test_every_download_condition_evaluates_and_local_sources_take_their_place(tmp_path):
    declared = {d.name for m in manifests.load_all() for d in m.downloads}
    found = downloads_of_a_host_in_every_group(tmp_path, EVERY_DOWNLOAD_ON)
    assert {d["name"] for d in found} == declared
    assert all(d["url"].startswith("https://") and "{{" not in d["url"] for d in found)
    local = downloads_of_a_host_in_every_group(tmp_path, {**EVERY_DOWNLOAD_ON, **LOCAL_SOURCES})
    # What stays is the repositories the settings point elsewhere: preflight checks those.
    assert {d["name"]: d["url"].split("/dists/")[0] for d in local} == {
        "docker-ce-repository": "http://mirror.internal/docker", "pgdg-repository": "http://mirror.internal/pgdg"}
    # From an offline bundle, nothing: the bundle carries it all (NVIDIA's repository among it).
    assert downloads_of_a_host_in_every_group(tmp_path, {**EVERY_DOWNLOAD_ON, "docker_source": "docker.io",
                                                         "postgresql_repository": "distribution",
                                                         "platform_bundle_dir": "/srv/bundle"}) == []


def test_restore_is_not_dispatched_and_other_entry_points_options_are_known():
    with pytest.raises(ValueError, match=r"playbooks/restore\.yml"):
        manifests.dispatch(manifests.load_all(), INVENTORY, "restore")
    from platformctl import validation

    assert "postgresql_backup_type" in validation.role_options("postgresql")  # the backup entry point's


def test_the_pinned_ollama_release_has_its_sums_in_the_defaults():
    """The archive is checked against a sum kept with the role, not one read from the
    release it comes with."""
    defaults = yaml.safe_load((paths.ROLES / "ollama" / "defaults" / "main.yml").read_text())
    sums = defaults["ollama_release_sha256"][defaults["ollama_version"]]
    assert set(sums) == {"amd64", "arm64"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in sums.values())
    assert "ollama_release_sha256[ollama_version]" in defaults["ollama_archive_sha256"]


def test_no_tags_on_the_blocks_around_the_role_dispatch():
    """Tags on a block reach the tasks of the roles its includes bring in: a block tagged
    `always` around site.yml's dispatch made `--tags redis` run every role."""
    site = yaml.safe_load((paths.PLAYBOOKS / "site.yml").read_text())

    def enclosing_blocks(tasks: list, outer: list) -> list | None:
        for task in tasks:
            if str(task.get("ansible.builtin.include_tasks", "")).endswith("role_action.yml"):
                return outer
            for section in ("block", "rescue", "always"):
                found = enclosing_blocks(task.get(section) or [], [*outer, task]) if section in task else None
                if found is not None:
                    return found
        return None

    blocks = enclosing_blocks(site[0]["tasks"], [])
    assert blocks is not None, "site.yml no longer includes tasks/role_action.yml"
    assert [block["name"] for block in blocks if "tags" in block] == []
