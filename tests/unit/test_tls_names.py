"""The names of a server certificate (plugins/filter/tls_names.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
