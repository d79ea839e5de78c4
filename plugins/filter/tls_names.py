"""The names a server certificate of the platform CA holds, and whether the key and the
certificate on a host are still the ones wanted (roles/common, tasks/tls_certificate.yml):
judged on the controller from one read of the host, so a rerun signs nothing and runs no
crypto module on the host. Tested by tests/unit/test_tls_names.py."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def tls_subject_names(name: str) -> list[str]:
    """subjectAltName entries for a host name or address. An IPv4 address is named as IP and
    as DNS too: pgBackRest before 2.46 (Debian 12 has 2.45) matches a host it dials against DNS
    names only (pgbackrest/pgbackrest#1977); other clients match an address against the IP
    name. An IPv6 address is an IP name only."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return [f"DNS:{name}"]
    return [f"IP:{name}", f"DNS:{name}"] if address.version == 4 else [f"IP:{name}"]


def tls_read(stdout: str) -> dict:
    """The read of tls_certificate.yml: whether the folder exists, the key's owner, group and
    mode ("postgres postgres 600", empty without a key), its public key and the certificate
    (PEM, empty when absent or unreadable)."""
    found: dict = {"folder": False, "key": "", "public_key": "", "certificate": ""}
    section = None
    lines: dict[str, list[str]] = {"public_key": [], "certificate": []}
    for line in stdout.splitlines():
        if line == "## folder":
            found["folder"], section = True, None
        elif line.startswith("## key "):
            found["key"], section = line.removeprefix("## key ").strip(), "public_key"
        elif line == "## certificate":
            section = "certificate"
        elif section and line.strip():
            lines[section].append(line)
    for name, text in lines.items():
        found[name] = "".join(f"{line}\n" for line in text)
    return found


def tls_key_in_place(found: dict, owner: str | None = None) -> bool:
    """Whether the key is there and an ECC secp256r1 key, as the role makes it, and (with
    `owner`) the owner's, user and group, with mode 0600. Without `owner`: whether the key
    can be kept (a wrong owner or mode is set right without making a new key)."""
    if (owner is not None and found.get("key") != f"{owner} {owner} 600") or not found.get("public_key"):
        return False
    try:
        public_key = serialization.load_pem_public_key(found["public_key"].encode())
    except ValueError:
        return False
    return isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"


def tls_certificate_in_place(found: dict, common_name: str, names: list[str], ca_pem: str) -> bool:
    """Whether the certificate read is for the key read, with `common_name` and exactly the
    subjectAltName entries `names` ("DNS:..." or "IP:..."), and signed by the CA `ca_pem`."""
    try:
        certificate = x509.load_pem_x509_certificate(found.get("certificate", "").encode())
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        return False
    public_key = certificate.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    if public_key.decode().strip() != found.get("public_key", "").strip():
        return False
    subject = [attribute.value for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    held = {f"DNS:{value}" for value in extension.get_values_for_type(x509.DNSName)} | \
        {f"IP:{value}" for value in extension.get_values_for_type(x509.IPAddress)}
    if subject != [common_name] or held != set(names):
        return False
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class FilterModule:
    def filters(self):
        return {"tls_subject_names": tls_subject_names, "tls_read": tls_read, "tls_key_in_place": tls_key_in_place,
                "tls_certificate_in_place": tls_certificate_in_place}
