"""Generated secrets: encrypted at rest, created once, rotated on request, masked everywhere."""

from __future__ import annotations

import stat

import pytest

from platformctl import cli, inventory, paths, preflight
from platformctl.errors import BadInput
from platformctl.secrets import MASK, SecretStore, referenced_names


@pytest.fixture
def store(write_inventory, monkeypatch, tmp_path) -> SecretStore:
    monkeypatch.setenv("PLATFORMCTL_SECRETS_DIR", str(tmp_path / "keys"))
    folder = write_inventory("all:\n  hosts:\n    web-1:\n")
    return SecretStore(inventory.resolve(str(folder)))


def test_created_once_and_never_overwritten(store):
    assert store.ensure({"redis_password", "JWT_SECRET"}) == ["JWT_SECRET", "redis_password"]
    first = store.load()
    assert store.ensure({"redis_password", "JWT_SECRET", "SESSION_SECRET"}) == ["SESSION_SECRET"]
    second = store.load()
    assert {k: second[k] for k in first} == first
    assert len(set(second.values())) == 3 and all(len(v) == 40 for v in second.values())


def test_encrypted_at_rest_with_a_private_password_file(store):
    store.ensure({"postgresql_app_password"})
    value = store.load()["postgresql_app_password"]
    raw = store.file.read_text()
    assert raw.startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert value not in raw
    assert stat.S_IMODE(store.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.file.stat().st_mode) == 0o600
    assert store.password_file.parent != store.inventory.path
    assert not store.password_file.is_relative_to(store.inventory.path)


def test_rotate_replaces_only_that_secret(store):
    store.ensure({"a_password", "b_password"})
    before = store.load()
    assert store.ensure({"a_password", "b_password"}, rotate="a_password") == ["a_password"]
    after = store.load()
    assert after["a_password"] != before["a_password"]
    assert after["b_password"] == before["b_password"]


def test_rotating_an_unknown_secret_is_bad_input(store):
    store.ensure({"a_password"})
    with pytest.raises(BadInput, match="--rotate nosuch: no such secret"):
        store.ensure({"a_password"}, rotate="nosuch")


def test_wrong_password_file_is_one_clear_message(store):
    store.ensure({"a_password"})
    store.password_file.write_text("not the password\n")
    with pytest.raises(BadInput, match="cannot be decrypted"):
        store.load()


def test_mask_hides_every_secret_value(store):
    store.ensure({"a_password", "b_password"})
    values = store.load()
    text = f"url=postgres://platform:{values['a_password']}@db/platform token={values['b_password']}"
    masked = store.mask()(text)
    assert values["a_password"] not in masked and values["b_password"] not in masked
    assert masked == f"url=postgres://platform:{MASK}@db/platform token={MASK}"


def test_names_come_from_the_role_defaults_that_reference_them(monkeypatch, tmp_path):
    for role, text in {
        "cache": "# for example \"{{ platform_secrets.cache_key }}\"\n"
                 "cache_password: \"{{ platform_secrets.cache_password }}\"\n",
        "db": "db_users:\n  - password: \"{{ platform_secrets['db_app_password'] }}\"\n",
        "unused": "unused_token: \"{{ platform_secrets.unused_token }}\"\n",
    }.items():
        (tmp_path / role / "defaults").mkdir(parents=True)
        (tmp_path / role / "defaults" / "main.yml").write_text(text)
    monkeypatch.setattr(paths, "ROLES", tmp_path)
    assert referenced_names(["cache", "db"]) == {"cache_password", "db_app_password"}


MONITORING_SECRETS = {"postgresql_monitoring_password", "redis_monitoring_password", "grafana_admin_password"}


@pytest.mark.parametrize("monitoring_group, wanted", [
    ("", set()),
    ("    monitoring:\n      hosts:\n        db-1:\n", MONITORING_SECRETS),
])
def test_monitoring_secrets_only_when_the_inventory_has_monitoring_hosts(write_inventory, monitoring_group, wanted):
    """site.yml as it is: the data roles need these passwords only where monitoring runs."""
    folder = write_inventory("all:\n  children:\n    postgres:\n      hosts:\n        db-1:\n"
                             "    redis:\n      hosts:\n        db-1:\n" + monitoring_group)
    session = cli.Session(args=None, console=None, inventory=None, documents={}, store=None,
                          loaded=inventory.load(inventory.resolve(str(folder)), []),
                          plays=preflight.site_plays(paths.PLAYBOOKS / "site.yml"))
    names = session.wanted_secrets()
    assert {"postgresql_app_password", "redis_password", "redis_app_password"} <= names
    assert names & MONITORING_SECRETS == wanted

