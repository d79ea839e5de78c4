"""The role manifests (roles/*/meta/platform.yml): each follows the schema, and what the
installer and the playbooks derive from them."""

from __future__ import annotations

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
    assert list(install)[:2] == ["common", "firewall"]
    assert install["common"] == INVENTORY["all"]
    assert install["nvidia_driver"] == ["gpu-app", "gpu-only"]
    assert install["nvidia_container_toolkit"] == ["gpu-app"]  # GPU hosts that run Docker only
    assert install["postgresql"] == ["db"]
    assert install["monitoring"] == []  # exporters only while the monitoring group has hosts
    assert plan("install", {**INVENTORY, "monitoring": ["db"]})["monitoring"] == INVENTORY["all"]
    assert list(plan("backup")) == ["postgresql", "redis"]
    assert "platform" not in install  # defaults only


def test_ports_follow_the_hosts_settings_and_go_to_the_groups_the_manifest_names():
    group_ports = manifests.firewall_group_ports(manifests.load_all(), {"postgresql_port": "6543"}, "172.31.0.0/24")
    postgres = {(e["port"], e.get("from_group"), e.get("from")) for e in group_ports["postgres"]}
    assert (6543, "app", None) in postgres and (6543, None, "172.31.0.0/24") in postgres
    assert (9187, "monitoring", None) in postgres
    assert {(e["port"], e.get("from_group")) for e in group_ports["edge"]} >= {(80, None), (443, None)}
    assert all(e["port"] not in (9090, 9093) for entries in group_ports.values() for e in entries)


def test_secrets_of_the_applied_roles_only():
    loaded = manifests.load_all()
    assert set(manifests.secrets_of(loaded, ["redis"])) == {"redis_password", "redis_app_password"}
    assert "grafana_admin_password" not in manifests.secrets_of(loaded, ["postgresql", "redis", "app"])


@pytest.mark.parametrize("secret_format", sorted(manifests.SECRET_FORMATS))
def test_each_secret_format_makes_a_fresh_value(secret_format):
    first, second = manifests.SECRET_FORMATS[secret_format](), manifests.SECRET_FORMATS[secret_format]()
    assert first != second and len(first) >= 40
