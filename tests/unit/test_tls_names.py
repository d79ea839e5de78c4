"""The names of a server certificate, and whether a host's key and certificate still hold
(plugins/filter/tls_names.py)."""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "tls_names.py"
_spec = importlib.util.spec_from_file_location("tls_names", _PLUGIN)
names = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(names)


def test_a_host_name_is_a_dns_name():
    assert names.tls_subject_names("db-1.example.com") == ["DNS:db-1.example.com"]


def test_an_ipv4_address_is_named_as_ip_and_as_dns_for_pgbackrest():
    assert names.tls_subject_names("10.0.0.5") == ["IP:10.0.0.5", "DNS:10.0.0.5"]


def test_an_ipv6_address_is_an_ip_name_only():
    assert names.tls_subject_names("fd00::1") == ["IP:fd00::1"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(public_key) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _certificate(key, issuer_key, issuer_name: str, subject: str, alt_names: list[x509.GeneralName]) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


CA_KEY = _key()
CA = _certificate(CA_KEY, CA_KEY, "Platform CA", "Platform CA", [])
KEY = _key()
NAMES = ["DNS:db-1", "IP:10.0.0.5", "DNS:10.0.0.5"]
SANS = [x509.DNSName("db-1"), x509.IPAddress(ipaddress.ip_address("10.0.0.5")), x509.DNSName("10.0.0.5")]


def _read(certificate: str, key=KEY, key_line: str = "postgres postgres 600") -> str:
    return f"## folder\n## key {key_line}\n{_pem(key.public_key())}## certificate\n{certificate}"


def test_the_read_splits_folder_key_and_certificate() -> None:
    certificate = _certificate(KEY, CA_KEY, "Platform CA", "db-1", SANS)
    found = names.tls_read(_read(certificate))
    assert found == {"folder": True, "key": "postgres postgres 600", "public_key": _pem(KEY.public_key()),
                     "certificate": certificate}
    assert names.tls_read("") == {"folder": False, "key": "", "public_key": "", "certificate": ""}
    assert names.tls_read("## folder\n## certificate\n")["folder"] is True


def test_a_certificate_for_the_key_names_and_ca_is_kept() -> None:
    found = names.tls_read(_read(_certificate(KEY, CA_KEY, "Platform CA", "db-1", SANS)))
    assert names.tls_certificate_in_place(found, "db-1", NAMES, CA)
    assert names.tls_key_in_place(found, "postgres")


@pytest.mark.parametrize("certificate", [
    pytest.param(lambda: _certificate(_key(), CA_KEY, "Platform CA", "db-1", SANS), id="another key"),
    pytest.param(lambda: _certificate(KEY, CA_KEY, "Platform CA", "db-2", SANS), id="another name"),
    pytest.param(lambda: _certificate(KEY, CA_KEY, "Platform CA", "db-1", SANS[:1]), id="fewer addresses"),
    pytest.param(lambda: _certificate(KEY, _key(), "Platform CA", "db-1", SANS), id="another CA's key"),
    pytest.param(lambda: _certificate(KEY, CA_KEY, "Platform CA", "db-1", []), id="no subjectAltName"),
    pytest.param(lambda: "", id="none"),
    pytest.param(lambda: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", id="unreadable"),
])
def test_a_certificate_that_no_longer_holds_is_signed_again(certificate) -> None:
    assert not names.tls_certificate_in_place(names.tls_read(_read(certificate())), "db-1", NAMES, CA)


@pytest.mark.parametrize(("key_line", "key"), [
    pytest.param("postgres postgres 644", KEY, id="readable by others"),
    pytest.param("root root 600", KEY, id="another owner"),
    pytest.param("postgres postgres 600", ec.generate_private_key(ec.SECP384R1()), id="another curve"),
])
def test_a_key_not_as_the_role_makes_it_is_set_right(key_line: str, key) -> None:
    found = names.tls_read(_read("", key=key, key_line=key_line))
    assert not names.tls_key_in_place(found, "postgres")
    assert names.tls_key_in_place(found) is (key is KEY), "only a key of another type is made again"


def test_a_missing_key_is_made() -> None:
    assert not names.tls_key_in_place(names.tls_read("## folder\n## certificate\n"), "postgres")
