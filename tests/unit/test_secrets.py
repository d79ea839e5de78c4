"""Generated secrets: encrypted at rest, created once, rotated on request, masked everywhere."""

from __future__ import annotations

import io
import re
import stat

import pytest

from platformctl import cli, inventory, validation
from platformctl.errors import BadInput
from platformctl.secrets import MASK, SecretStore


@pytest.fixture
def store(write_inventory, monkeypatch, tmp_path) -> SecretStore:
    monkeypatch.setenv("PLATFORMCTL_SECRETS_DIR", str(tmp_path / "keys"))
    folder = write_inventory("all:\n  hosts:\n    web-1:\n")
    return SecretStore(inventory.resolve(str(folder)))


def test_created_once_and_never_overwritten(store):
    wanted = dict.fromkeys(["redis_password", "JWT_SECRET"], "alnum40")
    assert store.ensure(wanted) == ["JWT_SECRET", "redis_password"]
    first = store.load()
    assert store.ensure({**wanted, "SESSION_SECRET": "alnum40"}) == ["SESSION_SECRET"]
    second = store.load()
    assert {k: second[k] for k in first} == first
    assert len(set(second.values())) == 3 and all(len(v) == 40 for v in second.values())


def test_encrypted_at_rest_with_a_private_password_file(store):
    store.ensure(dict.fromkeys(["postgresql_app_password"], "alnum40"))
    value = store.load()["postgresql_app_password"]
    raw = store.file.read_text()
    assert raw.startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert value not in raw
    assert stat.S_IMODE(store.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.file.stat().st_mode) == 0o600
    assert store.password_file.parent != store.inventory.path
    assert not store.password_file.is_relative_to(store.inventory.path)


def test_rotate_replaces_only_that_secret(store):
    store.ensure(dict.fromkeys(["a_password", "b_password"], "alnum40"))
    before = store.load()
    assert store.ensure(dict.fromkeys(["a_password", "b_password"], "alnum40"), rotate="a_password") == ["a_password"]
    after = store.load()
    assert after["a_password"] != before["a_password"]
    assert after["b_password"] == before["b_password"]


def test_rotating_an_unknown_secret_is_bad_input(store):
    store.ensure(dict.fromkeys(["a_password"], "alnum40"))
    with pytest.raises(BadInput, match="--rotate nosuch: no such secret"):
        store.ensure(dict.fromkeys(["a_password"], "alnum40"), rotate="nosuch")


def test_wrong_password_file_is_one_clear_message(store):
    store.ensure(dict.fromkeys(["a_password"], "alnum40"))
    store.password_file.write_text("not the password\n")
    with pytest.raises(BadInput, match="cannot be decrypted"):
        store.load()


def test_mask_hides_every_secret_value(store):
    store.ensure(dict.fromkeys(["a_password", "b_password"], "alnum40"))
    values = store.load()
    text = f"url=postgres://platform:{values['a_password']}@db/platform token={values['b_password']}"
    masked = store.mask()(text)
    assert values["a_password"] not in masked and values["b_password"] not in masked
    assert masked == f"url=postgres://platform:{MASK}@db/platform token={MASK}"


def test_the_platform_ca_is_a_ca_certificate_and_its_key_and_the_key_alone_is_masked(store):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    store.ensure({"platform_ca": "ca"})
    value = store.load()["platform_ca"]
    key_pem, _, rest = value.partition("-----END PRIVATE KEY-----\n")
    certificate = x509.load_pem_x509_certificate(rest.encode())
    key = serialization.load_pem_private_key((key_pem + "-----END PRIVATE KEY-----\n").encode(), None)
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
    masked = store.mask()(f"ownca_privatekey_content: {key_pem}-----END PRIVATE KEY-----\n")
    assert "PRIVATE KEY" not in masked and masked == f"ownca_privatekey_content: {MASK}"
    assert rest in store.mask()(rest), "the certificate is public"


def test_each_secret_is_generated_in_the_format_its_manifest_gives(store):
    store.ensure({"token": "hex32", "key": "base64-32", "password": "alnum40"})
    values = store.load()
    assert len(values["token"]) == 64 and int(values["token"], 16) >= 0
    assert len(values["key"]) == 44 and values["key"].endswith("=")
    assert len(values["password"]) == 40 and values["password"].isalnum()


MONITORING_SECRETS = {"postgresql_monitoring_password", "redis_monitoring_password", "grafana_admin_password"}


@pytest.mark.parametrize("monitoring_group, wanted", [
    ("", set()),
    ("    monitoring:\n      hosts:\n        db-1:\n", MONITORING_SECRETS),
])
def test_monitoring_secrets_only_when_the_inventory_has_monitoring_hosts(write_inventory, monitoring_group, wanted):
    """The manifests as they are: the monitoring secrets exist only where monitoring runs."""
    folder = write_inventory("all:\n  children:\n    postgres:\n      hosts:\n        db-1:\n"
                             "    redis:\n      hosts:\n        db-1:\n" + monitoring_group)
    loaded = inventory.load(inventory.resolve(str(folder)), [])
    session = cli.Session(args=None, console=None, inventory=None, documents={}, store=None, loaded=loaded,
                          roles=validation.applied_roles(loaded))
    names = set(session.wanted_secrets())
    assert {"postgresql_app_password", "redis_password", "redis_app_password"} <= names
    assert names & MONITORING_SECRETS == wanted



GIVEN_APP = """\
platform_domain: ai.example.com
platform_apps:
  - name: billing
    image: registry.example.com/acme/billing:2
    secret_env: [STRIPE_SECRET_KEY, WEBHOOK_KEY, SESSION_ID_SALT]
    secret_formats: {STRIPE_SECRET_KEY: given, WEBHOOK_KEY: hex32, SESSION_ID_SALT: uuid}
"""
APP_HOSTS = "all:\n  hosts:\n    node-1: {ansible_connection: community.docker.docker}\n  children:\n" \
            "    app: {hosts: {node-1: }}\n"


@pytest.fixture
def given_inventory(write_inventory, monkeypatch, tmp_path):
    monkeypatch.setenv("PLATFORMCTL_SECRETS_DIR", str(tmp_path / "keys"))
    monkeypatch.setattr(cli, "run_playbook", lambda *a, **k: pytest.fail("no playbook may run"))
    return write_inventory(APP_HOSTS, main=GIVEN_APP)


def set_secret(monkeypatch, capsys, folder, name: str, stdin: str) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["secrets", "--inventory", str(folder), "--set", name])
    return code, capsys.readouterr().err


def test_a_given_secret_stops_every_run_until_it_is_set(given_inventory, monkeypatch, capsys):
    for command in ("validate", "install", "check"):
        assert cli.main([command, "--inventory", str(given_inventory)]) == 4
        err = capsys.readouterr().err
        assert "platform_apps[billing].secret_formats.STRIPE_SECRET_KEY: given, and not in" in err
        assert f"installer.py secrets --set STRIPE_SECRET_KEY --inventory {given_inventory}" in err
    code, err = set_secret(monkeypatch, capsys, given_inventory, "STRIPE_SECRET_KEY", "sk_live_51Habc\n")
    assert (code, err) == (0, "")
    assert cli.main(["validate", "--inventory", str(given_inventory)]) == 0
    store = SecretStore(inventory.resolve(str(given_inventory)))
    given = "sk_live_51Habc"
    assert store.load()["STRIPE_SECRET_KEY"] == given, "the line break ends the value"
    assert given not in capsys.readouterr().out


def test_generated_secrets_take_their_declared_format(given_inventory, monkeypatch, capsys):
    set_secret(monkeypatch, capsys, given_inventory, "STRIPE_SECRET_KEY", "sk_test_1")
    assert cli.main(["secrets", "--inventory", str(given_inventory)]) == 0
    values = SecretStore(inventory.resolve(str(given_inventory))).load()
    assert re.fullmatch(r"[0-9a-f]{64}", values["WEBHOOK_KEY"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        values["SESSION_ID_SALT"])
    given = "sk_test_1"
    assert values["STRIPE_SECRET_KEY"] == given, "a given secret is never generated over"
    code = cli.main(["secrets", "--inventory", str(given_inventory), "--rotate", "STRIPE_SECRET_KEY", "--yes"])
    assert code == 4 and "a given secret is not generated" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("WEBHOOK_KEY", "not-hex",
     "--set WEBHOOK_KEY: expected 32 bytes in hex (64 digits 0-9, a-f) (its format is hex32)"),
    ("STRIPE_SECRET_KEY", "\n", "--set STRIPE_SECRET_KEY: the value is empty"),
    ("STRIPE_SECRET_KEY", "two\nlines\n", "holds a line break"),
    ("STRIPE_SECRET", "x",
     "--set STRIPE_SECRET: no secret of that name in this inventory; did you mean STRIPE_SECRET_KEY?"),
])
def test_a_value_that_does_not_fit_is_not_stored(given_inventory, monkeypatch, capsys, name, value, expected):  # noqa: PLR0917
    code, err = set_secret(monkeypatch, capsys, given_inventory, name, value)
    assert code == 4
    assert expected in err
    assert not SecretStore(inventory.resolve(str(given_inventory))).file.exists()


def test_set_is_only_a_secrets_option(capsys):
    assert cli.main(["install", "--inventory", "local", "--set", "X"]) == 4
    assert "--set goes with the secrets command" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "encrypts"), [
    ("backup_repository_password", "the backups of the files"),
    ("pgbackrest_cipher_pass", "the off-site PostgreSQL backups"),
])
def test_a_secret_that_encrypts_kept_backups_is_not_replaced(given_inventory, capsys, monkeypatch, name, encrypts):
    """A new value, generated or given, could not read the backups the old one encrypted."""
    assert cli.main(["secrets", "--inventory", str(given_inventory)]) == 0
    store = SecretStore(inventory.resolve(str(given_inventory)))
    before = store.load()
    capsys.readouterr()
    code = cli.main(["secrets", "--inventory", str(given_inventory), "--rotate", name, "--yes"])
    assert code == 4
    assert f"--rotate {name}: it encrypts {encrypts}, which a new value could not read" in capsys.readouterr().err
    code, err = set_secret(monkeypatch, capsys, given_inventory, name, "A" * 40 + "\n")
    assert code == 4
    assert f"--set {name}: it encrypts {encrypts}, which a new value could not read" in err
    assert store.load() == before
