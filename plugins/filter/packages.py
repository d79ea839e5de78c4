"""Which of a role's apt packages a host lacks, from the package facts site.yml reads once per
run: a role calls apt only for those, so a rerun with every package in place costs no apt run
per role. Without package facts (a role run on its own) every package counts as missing and apt
decides, as before."""

from __future__ import annotations


def packages_missing(wanted: list[str], installed: dict | None) -> list[str]:
    """The entries of `wanted` ("name" or "name=version", apt's own pin) that `installed`
    (ansible_facts.packages: name -> list of {"version": ...}) does not hold; a pinned entry
    counts as present only in that version (apt's `=` also matches a version prefix)."""
    if installed is None:
        return list(wanted)
    missing = []
    for entry in wanted:
        name, _, version = entry.partition("=")
        versions = [package.get("version", "") for package in installed.get(name, [])]
        if not versions or (version and not any(found.startswith(version) for found in versions)):
            missing.append(entry)
    return missing


class FilterModule:
    def filters(self):
        return {"packages_missing": packages_missing}
