"""Role manifests: roles/<role>/meta/platform.yml, one per role, the one place that says which
inventory groups get the role, its secrets, ports, host minimums, downloads and entry points.
The installer, the site playbook's dispatch, the firewall and preflight all read them from
here (docs/design.md, "Role manifests")."""

from __future__ import annotations

import base64
import fnmatch
import functools
import re
import secrets as random
import string
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from platformctl import paths

MANIFEST = Path("meta") / "platform.yml"
# Entry points: the action and the role's tasks file that carries it out.
ACTIONS = {"install": "main", "verify": "verify", "backup": "backup", "restore": "restore", "drift": "drift"}
# The actions site.yml dispatches; restore is orchestrated by playbooks/restore.yml instead.
DISPATCHED = ("install", "verify", "backup", "drift")
MINIMUM_KEYS = ("cpus", "memory_mb", "disk_free_gb")
PROTOCOLS = ("tcp", "udp")
ALNUM = string.ascii_letters + string.digits
# A secret's format: how installer.py generates it, and the form a value set by hand must have.
SECRET_FORMATS: dict[str, Callable[[], str]] = {
    "alnum40": lambda: "".join(random.choice(ALNUM) for _ in range(40)),
    "hex32": lambda: random.token_hex(32),
    "base64-32": lambda: base64.b64encode(random.token_bytes(32)).decode(),
    "uuid": lambda: str(uuid.uuid4()),
    "ca": lambda: platform_ca(),  # noqa: PLW0108 (defined below)
}
SECRET_FORMS: dict[str, tuple[re.Pattern, str]] = {
    "alnum40": (re.compile(r"^[A-Za-z0-9]{40}$"), "40 letters and digits"),
    "hex32": (re.compile(r"^[0-9a-f]{64}$"), "32 bytes in hex (64 digits 0-9, a-f)"),
    "base64-32": (re.compile(r"^[A-Za-z0-9+/]{43}=$"), "32 bytes in base64 (44 characters)"),
    "uuid": (re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), "a UUID"),
    "ca": (re.compile(r"^-----BEGIN PRIVATE KEY-----\n[^-]+-----END PRIVATE KEY-----\n"
                      r"-----BEGIN CERTIFICATE-----\n[^-]+-----END CERTIFICATE-----\n$"),
           "a private key and its CA certificate, PEM"),
}
# Formats only the roles' own secrets take (not an app's secret_formats).
PLATFORM_ONLY_FORMATS = ("ca",)
# How long the platform CA is valid: the hosts' certificates it signs are renewed by each install.
CA_DAYS = 3650


def platform_ca() -> str:
    """The platform's own certificate authority, which signs the TLS certificates of its
    services (PostgreSQL): a P-256 key and a self-signed CA certificate, as PEM text."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Platform CA {uuid.uuid4().hex[:8]}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return (pem_key + certificate.public_bytes(serialization.Encoding.PEM)).decode()
# A secret the operator was given (a third-party API key): never generated, set with
# `installer.py secrets --set NAME`.
GIVEN = "given"


class ManifestError(ValueError):
    """A manifest that does not follow the schema: names the file, the key and the expectation."""


@dataclass(frozen=True)
class Secret:
    name: str
    format: str = "alnum40"
    # What the secret encrypts that is kept (backups): a new value could not read it, so
    # installer.py secrets --rotate refuses it.
    encrypts: str = ""


@dataclass(frozen=True)
class Port:
    port: int
    comment: str
    setting: str = ""
    proto: str = "tcp"
    on_groups: tuple[str, ...] = ()
    from_groups: tuple[str, ...] = ()
    from_app_containers: bool = False
    public: bool = False
    units: tuple[str, ...] = ()
    # A condition on the host's settings (as packages' `when`): the port is opened only where
    # it holds (a replicated set's ports, not a single host's).
    when: str = ""

    def number(self, settings: Mapping[str, Any]) -> int:
        """The port on a host: its setting's value where the inventory moves it."""
        value = settings.get(self.setting) if self.setting else None
        try:
            return int(value) if value not in (None, "") else self.port
        except (TypeError, ValueError):
            return self.port

    def held_by_own_unit(self, unit: str) -> bool:
        return any(fnmatch.fnmatchcase(unit, pattern) for pattern in self.units)


@dataclass(frozen=True)
class Download:
    name: str
    what: str
    url: str
    local_source: str
    when: str = ""
    checksum: str = ""
    signing_key_fingerprint: str = ""


@dataclass(frozen=True)
class Packages:
    """Packages a role installs with apt: `names` renders to their list with the host's
    settings and its release's role vars, `when` (a condition) says whether the role installs
    them there, and `repository` renders to the apt repository they come from (`debian`, the
    release's own archive, or the name of the one the role adds). `source` says where a
    bundle fetches a repository other than Debian's (SOURCE_KEYS, each rendered like `names`):
    its apt URI and suite, its signing key's URL and pinned fingerprint, and the setting of a
    local copy (a folder with `gpgkey` beside the repository) that replaces both."""

    names: str
    when: str = ""
    repository: str = "debian"
    source: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Manifest:
    role: str
    description: str
    groups: tuple[str, ...]
    order: int
    actions: tuple[str, ...] = ("install", "verify")
    only_with: tuple[str, ...] = ()
    needs_hosts_in: str = ""
    tags: tuple[str, ...] = ()
    secrets: tuple[Secret, ...] = ()
    ports: tuple[Port, ...] = ()
    minimums: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()
    downloads: tuple[Download, ...] = ()
    packages: tuple[Packages, ...] = ()

    def applies(self, host_groups: Iterable[str], groups: Mapping[str, list[str]]) -> bool:
        """Whether a host in `host_groups` gets this role, in an inventory of `groups`."""
        mine = set(host_groups) | {"all"}
        if self.needs_hosts_in and not groups.get(self.needs_hosts_in):
            return False
        return bool(mine & set(self.groups)) and all(g in mine for g in self.only_with)

    def hosts(self, groups: Mapping[str, list[str]]) -> list[str]:
        """The hosts of an inventory (group name -> its hosts) that get this role."""
        member_of: dict[str, set[str]] = {}
        for group, members in groups.items():
            for host in members:
                member_of.setdefault(host, set()).add(group)
        return [h for h in groups.get("all", []) if self.applies(member_of.get(h, set()), groups)]

    def ports_on(self, host_groups: Iterable[str]) -> list[Port]:
        """The ports a host in `host_groups` listens on for this role."""
        mine = set(host_groups) | {"all"}
        return [p for p in self.ports if mine & set(p.on_groups or self.groups)]

    def tasks_for(self, action: str) -> str | None:
        return ACTIONS[action] if action in self.actions else None


# --- the schema: every key, its type, and whether it must be there --------------------------

Schema = dict[str, tuple[type | tuple[type, ...], bool]]
MANIFEST_KEYS: Schema = {
    "description": (str, True), "groups": (list, True), "order": (int, True), "actions": (list, False),
    "only_with": (list, False), "needs_hosts_in": (str, False), "tags": (list, False), "secrets": (list, False),
    "ports": (list, False), "minimums": (dict, False), "downloads": (list, False), "packages": (list, False),
}
SECRET_KEYS: Schema = {"name": (str, True), "format": (str, False), "encrypts": (str, False)}
PORT_KEYS: Schema = {
    "port": (int, True), "comment": (str, True), "setting": (str, False), "proto": (str, False),
    "on_groups": (list, False), "from_groups": (list, False), "from_app_containers": (bool, False),
    "public": (bool, False), "units": (list, False), "when": (str, False),
}
DOWNLOAD_KEYS: Schema = {
    "name": (str, True), "what": (str, True), "url": (str, True), "local_source": (str, True), "when": (str, False),
    "checksum": (str, False), "signing_key_fingerprint": (str, False),
}
PACKAGES_KEYS: Schema = {"names": (str, True), "when": (str, False), "repository": (str, False),
                         "source": (dict, False)}
SOURCE_KEYS: Schema = {"uri": (str, True), "suite": (str, True), "components": (str, False), "key_url": (str, True),
                       "key_fingerprint": (str, True), "local": (str, False)}
TYPE_NAMES = {str: "a string", list: "a list", int: "an integer", bool: "a boolean", dict: "a mapping"}


def _checked(data: Any, schema: Schema, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in schema:
            raise ManifestError(f"{where}: {key}: unknown key; expected one of {', '.join(schema)}")
    for key, (kind, required) in schema.items():
        if key not in data:
            if required:
                raise ManifestError(f"{where}: {key}: missing; expected {TYPE_NAMES[kind]}")
            continue
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ManifestError(f"{where}: {key}: expected {TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}")
        if kind is list and not all(isinstance(item, (str, dict)) for item in value):
            raise ManifestError(f"{where}: {key}: expected a list of strings or mappings")
    return data


def _strings(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    items = data.get(key) or []
    if not all(isinstance(item, str) for item in items):
        raise ManifestError(f"{where}: {key}: expected a list of strings")
    return tuple(items)


def parse(role: str, data: Any, where: str) -> Manifest:
    """One manifest from its YAML data; ManifestError names the first key that is wrong."""
    data = _checked(data, MANIFEST_KEYS, where)
    actions = _strings(data, "actions", where) if "actions" in data else ("install", "verify")
    for action in actions:
        if action not in ACTIONS:
            raise ManifestError(f"{where}: actions: {action}: expected one of {', '.join(ACTIONS)}")
    secrets = []
    for n, item in enumerate(data.get("secrets") or []):
        entry = _checked(item, SECRET_KEYS, f"{where}: secrets[{n}]")
        if entry.get("format", "alnum40") not in SECRET_FORMATS:
            raise ManifestError(f"{where}: secrets[{n}]: format: expected one of {', '.join(SECRET_FORMATS)}")
        secrets.append(Secret(**entry))
    ports = []
    for n, item in enumerate(data.get("ports") or []):
        entry = _checked(item, PORT_KEYS, f"{where}: ports[{n}]")
        if entry.get("proto", "tcp") not in PROTOCOLS:
            raise ManifestError(f"{where}: ports[{n}]: proto: expected one of {', '.join(PROTOCOLS)}")
        lists = {k: _strings(entry, k, f"{where}: ports[{n}]") for k in ("on_groups", "from_groups", "units")}
        ports.append(Port(**{**entry, **lists}))
    minimums = []
    for group, values in (data.get("minimums") or {}).items():
        if not isinstance(values, dict) or not all(k in MINIMUM_KEYS and isinstance(v, int) for k, v in values.items()):
            raise ManifestError(f"{where}: minimums: {group}: expected a mapping of {', '.join(MINIMUM_KEYS)} "
                                "to integers")
        minimums.append((str(group), tuple(sorted(values.items()))))
    downloads = [Download(**_checked(item, DOWNLOAD_KEYS, f"{where}: downloads[{n}]"))
                 for n, item in enumerate(data.get("downloads") or [])]
    packages = []
    for n, item in enumerate(data.get("packages") or []):
        entry = _checked(item, PACKAGES_KEYS, f"{where}: packages[{n}]")
        if "source" in entry:
            if entry.get("repository", "debian") == "debian":
                raise ManifestError(f"{where}: packages[{n}]: source: Debian's own packages take no source; "
                                    "name the repository it describes")
            entry = {**entry, "source": tuple(sorted(
                _checked(entry["source"], SOURCE_KEYS, f"{where}: packages[{n}]: source").items()))}
        packages.append(Packages(**entry))
    return Manifest(
        role=role, description=data["description"], groups=_strings(data, "groups", where), order=data["order"],
        actions=actions, only_with=_strings(data, "only_with", where), needs_hosts_in=data.get("needs_hosts_in", ""),
        tags=_strings(data, "tags", where), secrets=tuple(secrets), ports=tuple(ports), minimums=tuple(minimums),
        downloads=tuple(downloads), packages=tuple(packages),
    )


def role_dependencies(role: str, roles_dir: Path | None = None) -> list[str]:
    """The roles `role` lists as dependencies in its meta/main.yml (the platform role, whose
    defaults it reads)."""
    meta = (roles_dir or paths.ROLES) / role / "meta" / "main.yml"
    if not meta.is_file():
        return []
    deps = (yaml.safe_load(meta.read_text(encoding="utf-8")) or {}).get("dependencies") or []
    return [d if isinstance(d, str) else d.get("role") or d.get("name") for d in deps]


def ansible_roles_dir() -> Path:
    """The roles folder Ansible runs from (its roles_path, which installer.py and molecule set):
    inside a playbook the manifests are read where the roles are."""
    from ansible import constants

    for entry in constants.DEFAULT_ROLES_PATH:
        if any(Path(entry).expanduser().glob(f"*/{MANIFEST}")):
            return Path(entry).expanduser()
    return paths.ROLES


def role_default(role: str, key: str) -> Any:
    """A role's default value of `key` (roles/ROLE/defaults/main.yml), as the checks before a
    run need it where the inventory does not set the key."""
    return _defaults(paths.ROLES / role / "defaults" / "main.yml")[key]


@functools.cache
def _defaults(file: Path) -> dict[str, Any]:
    return yaml.safe_load(file.read_text()) or {}


def load_all(roles_dir: Path | None = None) -> list[Manifest]:
    """Every role's manifest, in run order."""
    roles_dir = roles_dir or paths.ROLES
    found = []
    for file in sorted(roles_dir.glob(f"*/{MANIFEST}")):
        role = file.parents[1].name
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ManifestError(f"{file}: invalid YAML: {err}") from None
        found.append(parse(role, data, str(file)))
    return sorted(found, key=lambda m: (m.order, m.role))


# --- what an inventory gets ----------------------------------------------------------------


def roles_of_host(manifests: Iterable[Manifest], host_groups: Iterable[str],
                  groups: Mapping[str, list[str]]) -> list[str]:
    host_groups = set(host_groups)
    return [m.role for m in manifests if m.applies(host_groups, groups)]


def dispatch(manifests: Iterable[Manifest], groups: Mapping[str, list[str]], action: str) -> list[dict[str, Any]]:
    """The site playbook's plan for an action: each role that has it, in order, with its hosts."""
    if action not in DISPATCHED:
        raise ValueError(f"platform_action: {action}: expected one of {', '.join(DISPATCHED)} "
                         "(a restore runs through playbooks/restore.yml, which checks the target first)")
    return [{"name": m.role, "tasks": m.tasks_for(action), "hosts": m.hosts(groups),
             "tags": sorted({m.role, *m.tags})}
            for m in manifests if m.tasks_for(action)]


def secrets_of(manifests: Iterable[Manifest], roles: Iterable[str]) -> dict[str, str]:
    """Name -> format of every secret the given roles need."""
    wanted = set(roles)
    return {s.name: s.format for m in manifests if m.role in wanted for s in m.secrets}


def kept_encrypted_by(manifests: Iterable[Manifest]) -> dict[str, str]:
    """Name -> what it encrypts, of every secret that encrypts data kept over time."""
    return {s.name: s.encrypts for m in manifests for s in m.secrets if s.encrypts}


def minimums_of(manifests: Iterable[Manifest], host_groups: Iterable[str],
                overrides: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, int]:
    """What a host in `host_groups` needs at least: the largest of its groups' minimums."""
    table: dict[str, dict[str, int]] = {}
    for manifest in manifests:
        for group, values in manifest.minimums:
            for key, value in values:
                table.setdefault(group, {})[key] = max(table.get(group, {}).get(key, 0), value)
    for group, values in (overrides or {}).items():
        table[group] = {**table.get(group, {}), **{k: int(v) for k, v in (values or {}).items()}}
    needed: dict[str, int] = {}
    for group in ["all", *host_groups]:
        for key, value in table.get(group, {}).items():
            needed[key] = max(needed.get(key, 0), value)
    return needed


def ports_of(manifests: Iterable[Manifest], host_groups: Iterable[str],
             groups: Mapping[str, list[str]]) -> list[tuple[str, Port]]:
    """(role, port) for every port a host in `host_groups` listens on."""
    host_groups = set(host_groups)
    return [(m.role, p) for m in manifests if m.applies(host_groups, groups) for p in m.ports_on(host_groups)]


def firewall_group_ports(manifests: Iterable[Manifest], settings: Mapping[str, Any], app_containers_from: str,
                         holds: Callable[[str], bool] = lambda condition: True) -> dict[str, list[dict[str, Any]]]:
    """The firewall role's group ports ({group: [rule entries]}) the manifests declare, each port
    as the host's `settings` place it: open to everyone, to the hosts of other groups, and to
    the app containers of the platform network where the host also runs apps. A port with a
    `when` is left out where `holds` says its condition does not hold."""
    plan: dict[str, list[dict[str, Any]]] = {}
    for manifest in manifests:
        for port in manifest.ports:
            if port.when and not holds(port.when):
                continue
            number = port.number(settings)
            entries: list[dict[str, Any]] = []
            if port.public:
                entries.append({"port": number, "proto": port.proto, "comment": port.comment})
            entries += [{"port": number, "proto": port.proto, "from_group": group,
                         "comment": f"{port.comment} from the {group} hosts"} for group in port.from_groups]
            if port.from_app_containers:
                entries.append({"port": number, "proto": port.proto, "from": app_containers_from, "if_member_of": "app",
                                "comment": f"{port.comment} from the app containers on this host"})
            for group in port.on_groups or manifest.groups:
                plan.setdefault(group, []).extend(entries)
    return plan
