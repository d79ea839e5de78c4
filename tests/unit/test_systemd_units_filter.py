"""The filters that spare a rerun one systemd module run per unit
(plugins/filter/systemd_units.py), on systemctl's own output."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "systemd_units.py"
_spec = importlib.util.spec_from_file_location("systemd_units", _PLUGIN)
units = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(units)

LISTING = """\
Id=apt-daily.timer
ActiveState=active
UnitFileState=enabled

Id=nginx.service
ActiveState=active
UnitFileState=enabled

Id=ollama.service
ActiveState=failed
UnitFileState=enabled

Id=postgresql@15-main.service
ActiveState=active
UnitFileState=enabled

Id=redis-server.service
ActiveState=inactive
UnitFileState=disabled

Id=nvidia-persistenced.service
ActiveState=active
UnitFileState=static
"""
STATES = units.systemd_unit_states(LISTING)


def test_the_listing_gives_each_unit_its_active_and_enabled_state() -> None:
    assert STATES["apt-daily.timer"] == {"active": "active", "enabled": "enabled"}
    assert STATES["ollama.service"] == {"active": "failed", "enabled": "enabled"}
    assert STATES["redis-server.service"] == {"active": "inactive", "enabled": "disabled"}
    assert len(STATES) == 6


def test_only_units_not_both_active_and_enabled_are_left_to_start() -> None:
    wanted = ["apt-daily.timer", "nginx.service", "ollama.service", "redis-server.service"]
    assert units.units_to_start(wanted, STATES) == ["ollama.service", "redis-server.service"]
    assert units.units_to_start(["nginx", "ollama", "postgresql@15-main"], STATES) == ["ollama"]


def test_units_not_loaded_or_not_enabled_as_wanted_are_left_to_the_systemd_module() -> None:
    assert units.units_to_start(["nvidia-persistenced", "docker.service"], STATES) == [
        "nvidia-persistenced", "docker.service"]


def test_without_a_read_or_with_changed_unit_files_every_unit_goes_to_the_systemd_module() -> None:
    assert units.units_to_start(["nginx.service"], None) == ["nginx.service"]
    assert units.units_to_start(["nginx.service"], STATES, unit_files_changed=True) == ["nginx.service"]


def test_verify_reads_units_from_site_yml_and_asks_the_module_only_without_it() -> None:
    assert units.units_to_read(["nginx"], STATES) == []
    assert units.units_to_read(["nginx"], None) == ["nginx"]
    assert units.unit_status(["nginx", "ollama.service", "docker"], STATES) == [
        {"unit": "nginx", "active": "active", "enabled": "enabled"},
        {"unit": "ollama.service", "active": "failed", "enabled": "enabled"},
        {"unit": "docker", "active": "inactive", "enabled": "not-found"}]


def test_verify_without_the_read_takes_the_systemd_modules_results() -> None:
    results = {"results": [{"item": "nginx", "status": {"ActiveState": "active", "UnitFileState": "enabled"}},
                           {"item": "ollama", "skipped": True}]}
    assert units.unit_status(["nginx", "ollama"], None, results) == [
        {"unit": "nginx", "active": "active", "enabled": "enabled"},
        {"unit": "ollama", "active": "unknown", "enabled": "unknown"}]
