"""Finds an inventory, checks that its YAML parses, and loads its hosts and variables."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from platformctl import paths
from platformctl.errors import BadInput, located

HOSTS_FILES = ("hosts.yml", "hosts.yaml")
VAULT_HEADER = "$ANSIBLE_VAULT"


@dataclass
class Inventory:
    """An inventory folder: hosts.yml plus group_vars/ and host_vars/."""

    name: str
    path: Path
    hosts_file: Path
    variable_files: list[Path] = field(default_factory=list)

    @property
    def tag(self) -> str:
        """Tells inventory folders of the same name apart (the vault password, the run lock)."""
        return hashlib.sha256(str(self.path).encode()).hexdigest()[:10]

    def display_path(self, file: Path) -> str:
        try:
            return str(file.relative_to(Path.cwd()))
        except ValueError:
            return str(file)


def known_environments() -> list[str]:
    if not paths.INVENTORIES.is_dir():
        return []
    return sorted(p.name for p in paths.INVENTORIES.iterdir() if _hosts_file(p))


def _hosts_file(folder: Path) -> Path | None:
    for name in HOSTS_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def resolve(value: str) -> Inventory:
    """`ENV` means inventories/ENV/; anything else is a path to an inventory folder."""
    candidates = []
    if "/" not in value and value not in (".", ".."):
        candidates.append(paths.INVENTORIES / value)
    candidates.append(Path(value).expanduser())
    for folder in candidates:
        if folder.is_dir():
            hosts_file = _hosts_file(folder)
            if hosts_file is None:
                raise BadInput(
                    located(str(folder), None, f"no {' or '.join(HOSTS_FILES)} in this inventory folder")
                )
            return Inventory(
                name=value,
                path=folder.resolve(),
                hosts_file=hosts_file.resolve(),
                variable_files=_variable_files(folder.resolve()),
            )
    if Path(value).is_file():
        raise BadInput(f"--inventory {value}: is a file; expected an environment name or an inventory folder")
    known = ", ".join(known_environments()) or "none"
    raise BadInput(
        f"--inventory {value}: unknown inventory; expected an environment in inventories/ "
        f"({known}) or the path of an inventory folder"
    )


def _variable_files(folder: Path) -> list[Path]:
    files: list[Path] = []
    for sub in ("group_vars", "host_vars"):
        base = folder / sub
        if base.is_dir():
            files += sorted(
                p for p in base.rglob("*") if p.is_file() and p.suffix in (".yml", ".yaml", "")
            )
    return files


def is_vault_encrypted(file: Path) -> bool:
    with file.open("rb") as handle:
        return handle.read(len(VAULT_HEADER)).decode("ascii", "replace") == VAULT_HEADER


def parse_yaml(file: Path, shown_as: str) -> Any:
    """Parse one YAML file; a syntax error becomes one line naming the file, line and problem."""
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{shown_as}:{mark.line + 1}:{mark.column + 1}" if mark else shown_as
        problem = err.problem or str(err)
        raise BadInput(f"{where}: invalid YAML: {problem}; expected a valid YAML document") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BadInput(f"{shown_as}: invalid YAML: {err}") from None


def check_yaml(inventory: Inventory) -> dict[Path, dict]:
    """Every plain YAML file of the inventory parses to a mapping. Returns them by path."""
    documents: dict[Path, dict] = {}
    for file in [inventory.hosts_file, *inventory.variable_files]:
        shown = inventory.display_path(file)
        if is_vault_encrypted(file):
            continue
        data = parse_yaml(file, shown)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BadInput(f"{shown}: expected a mapping at the top level, got {type(data).__name__}")
        documents[file] = data
    return documents


def where_defined(documents: dict[Path, dict], inventory: Inventory, key: str) -> str | None:
    """The inventory file that sets `key` (as a host, group or file variable), for messages."""
    for file, data in documents.items():
        if _mentions(data, key, depth=0 if file != inventory.hosts_file else 6):
            return inventory.display_path(file)
    return None


def _mentions(data: Any, key: str, depth: int) -> bool:
    if not isinstance(data, dict):
        return False
    if key in data:
        return True
    return depth > 0 and any(_mentions(v, key, depth - 1) for v in data.values())


@dataclass
class LoadedInventory:
    """The inventory as Ansible sees it: hosts, groups and each host's variables."""

    inventory: Inventory
    manager: Any
    variables: Any
    loader: Any

    def hosts(self, pattern: str = "all", limit: str | None = None) -> list[str]:
        if limit:
            self.manager.subset(limit)
        try:
            return [h.name for h in self.manager.get_hosts(pattern)]
        finally:
            self.manager.subset(None)

    def groups(self) -> dict[str, list[str]]:
        """Group name -> its hosts, `all` included."""
        return {name: list(hosts) for name, hosts in self.manager.get_groups_dict().items()}

    def groups_of(self, host: str) -> list[str]:
        return [g.name for g in self.manager.get_host(host).get_groups() if g.name != "all"]

    def host_vars(self, host: str) -> dict:
        return self.variables.get_vars(host=self.manager.get_host(host), include_hostvars=False)


def load(inventory: Inventory, extra_vars: list[str], vault_password_file: Path | None = None) -> LoadedInventory:
    """Load hosts and variables through Ansible itself, so what we check is what Ansible runs."""
    from ansible import context
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.module_utils.common.collections import ImmutableDict
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultSecret
    from ansible.utils.vars import load_extra_vars
    from ansible.vars.manager import VariableManager

    context.CLIARGS = ImmutableDict(extra_vars=tuple(extra_vars))
    load_extra_vars.extra_vars = None  # ansible caches the first parse for the process
    loader = DataLoader()
    if vault_password_file and vault_password_file.is_file():
        secret = VaultSecret(vault_password_file.read_bytes().strip())
        loader.set_vault_secrets([("default", secret)])
    try:
        manager = InventoryManager(loader=loader, sources=[str(inventory.hosts_file)])
    except AnsibleError as err:
        raise BadInput(f"{inventory.display_path(inventory.hosts_file)}: {_first_line(err)}") from None
    try:
        variables = VariableManager(loader=loader, inventory=manager)
    except AnsibleError as err:
        raise BadInput(f"-e/--extra-vars: {_first_line(err)}") from None
    if not manager.list_hosts("all"):
        raise BadInput(
            f"{inventory.display_path(inventory.hosts_file)}: defines no hosts; "
            "expected at least one host under all.hosts or in a group"
        )
    return LoadedInventory(inventory=inventory, manager=manager, variables=variables, loader=loader)


def _first_line(err: Exception) -> str:
    text = getattr(err, "message", None) or str(err)
    return str(text).strip().splitlines()[0]
