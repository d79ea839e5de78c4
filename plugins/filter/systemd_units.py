"""Which systemd units a role still has to start or enable, from one read of every loaded unit's
state per run (site.yml): a rerun with every service up runs no systemd module per unit. Without
that read (a role run on its own) every unit goes to the systemd module, as before."""

from __future__ import annotations

UNIT_TYPES = {"service", "socket", "timer", "path", "target", "mount", "automount", "swap", "slice", "scope", "device"}


def systemd_unit_states(show: str) -> dict[str, dict[str, str]]:
    """Parse `systemctl show --property=Id,ActiveState,UnitFileState PATTERN...` (blocks of
    KEY=VALUE lines, one block per unit) into unit -> {"active", "enabled"}."""
    states: dict[str, dict[str, str]] = {}
    for block in show.split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Id"):
            states[fields["Id"]] = {"active": fields.get("ActiveState", ""), "enabled": fields.get("UnitFileState", "")}
    return states


def units_to_start(units: list[str], states: dict | None, unit_files_changed: bool = False) -> list[str]:
    """The units (`nginx` or `nginx.service`, as the systemd module takes them) that are not
    both active and enabled (units the read does not name included). All of them when there is
    no read or when their unit files changed in this run: the systemd module then reloads
    systemd's view of them."""
    if states is None or unit_files_changed:
        return list(units)
    return [unit for unit in units if states.get(_full_name(unit)) != {"active": "active", "enabled": "enabled"}]


def units_to_read(units: list[str], states: dict | None) -> list[str]:
    """The units verify must still ask the systemd module about: none when site.yml's read is
    there, every one when a role's probes run on their own."""
    return [] if states is not None else list(units)


def unit_status(units: list[str], states: dict | None, module_results: dict | None = None) -> list[dict[str, str]]:
    """Each unit's name, ActiveState and UnitFileState, from site.yml's read, or else from a
    looped systemd module's registered results. A unit the read does not list is not loaded."""
    if states is not None:
        return [{"unit": unit, **states.get(_full_name(unit), {"active": "inactive", "enabled": "not-found"})}
                for unit in units]
    found = {result["item"]: result.get("status", {}) for result in (module_results or {}).get("results", [])}
    return [{"unit": unit, "active": found.get(unit, {}).get("ActiveState", "unknown"),
             "enabled": found.get(unit, {}).get("UnitFileState", "unknown")} for unit in units]


def _full_name(unit: str) -> str:
    """systemctl's own name of a unit: `nginx` is nginx.service."""
    return unit if unit.rpartition(".")[2] in UNIT_TYPES else f"{unit}.service"


class FilterModule:
    def filters(self):
        return {"systemd_unit_states": systemd_unit_states, "units_to_start": units_to_start,
                "units_to_read": units_to_read, "unit_status": unit_status}
