"""The names a server certificate of the platform CA holds (roles/common,
tasks/tls_certificate.yml). Tested by tests/unit/test_tls_names.py."""

from __future__ import annotations

import ipaddress


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


class FilterModule:
    def filters(self):
        return {"tls_subject_names": tls_subject_names}
