"""Role READMEs, argument specs and defaults agree (tools/role_readme.py generates the variable tables)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.role_readme import (
    BEGIN_MARKER,
    END_MARKER,
    ROLES_DIR,
    load_yaml,
    role_defaults,
    roles_with_specs,
    spec_options,
    stale_readmes,
    update_readmes,
)

ROLES = roles_with_specs(ROLES_DIR)


def options_of(options: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every option and sub-option, named as the README names it."""
    for name, option in options.items():
        yield prefix + name, option
        yield from options_of(option.get("options") or {}, f"{prefix}{name}.")


def test_every_role_has_specs():
    assert len(ROLES) >= 12


def test_every_readme_is_current():
    assert stale_readmes() == [], "run python3 tools/role_readme.py"


@pytest.mark.parametrize("role_dir", ROLES, ids=lambda path: path.name)
def test_every_option_has_a_description(role_dir: Path):
    entry_points = load_yaml(role_dir / "meta" / "argument_specs.yml")["argument_specs"]
    undescribed = [
        f"{entry_point}: {name}"
        for entry_point, spec in entry_points.items()
        for name, option in options_of((spec or {}).get("options") or {})
        if not str(option.get("description") or "").strip()
    ]
    assert undescribed == []


@pytest.mark.parametrize("role_dir", ROLES, ids=lambda path: path.name)
def test_defaults_and_specs_name_the_same_variables(role_dir: Path):
    defaults = {name for name in role_defaults(role_dir) if not name.startswith("__")}
    options = spec_options(role_dir)
    # A required option has no default by definition.
    optional = {name for name, (option, _) in options.items() if not option.get("required")}
    assert sorted(defaults - set(options)) == [], "set in defaults/main.yml, missing from meta/argument_specs.yml"
    assert sorted(optional - defaults) == [], "in meta/argument_specs.yml, without a value in defaults/main.yml"


def write_role(roles_dir: Path, description: str, readme: str) -> Path:
    role_dir = roles_dir / "demo"
    (role_dir / "meta").mkdir(parents=True, exist_ok=True)
    (role_dir / "defaults").mkdir(exist_ok=True)
    spec = {"argument_specs": {"main": {"options": {"demo_port": {"type": "int", "description": description}}}}}
    (role_dir / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(spec))
    (role_dir / "defaults" / "main.yml").write_text("demo_port: 8080\n")
    (role_dir / "README.md").write_text(readme)
    return role_dir


def test_a_spec_change_makes_the_readme_stale(tmp_path: Path):
    readme = f"# demo\n\n## Variables\n\n{BEGIN_MARKER}\n{END_MARKER}\n\nProse after the table.\n"
    role_dir = write_role(tmp_path, "Port of the demo | service.", readme)
    assert len(stale_readmes(tmp_path)) == 1

    assert update_readmes(tmp_path, write=True) == []
    written = (role_dir / "README.md").read_text()
    assert "| `demo_port` | int | `8080` | Port of the demo \\| service. |" in written
    assert written.startswith("# demo\n") and written.endswith(f"{END_MARKER}\n\nProse after the table.\n")
    assert stale_readmes(tmp_path) == []

    spec_path = role_dir / "meta" / "argument_specs.yml"
    spec_path.write_text(spec_path.read_text().replace("Port of the demo", "Port of the example"))
    assert stale_readmes(tmp_path) == [f"{role_dir / 'README.md'}: stale, run python3 tools/role_readme.py"]
    assert (role_dir / "README.md").read_text() == written, "the check changes nothing"


def test_a_readme_without_markers_is_named(tmp_path: Path):
    role_dir = write_role(tmp_path, "Port.", "# demo\n")
    assert update_readmes(tmp_path, write=True) == [
        f"{role_dir / 'README.md'}: lacks the lines {BEGIN_MARKER} and {END_MARKER}"
    ]
    assert (role_dir / "README.md").read_text() == "# demo\n"
